"""The whole partitioned graph, read from its shard files on demand.

LLCG's server samples mini-batches over *all* nodes; it must not hold the
whole graph. ``ShardGraph`` keeps only per-node arrays (16 bytes a node:
node -> row, and the in-edge row pointers, from each shard's ``global_id``
and ``in_degree``) and reads edges and node rows from the HDF5 shards when
asked. Rows are numbered chunk after chunk, so the edges of all shards form
one virtual CSR by destination: the edge at virtual position ``q`` lives in
the chunk whose edge range holds ``q``.

It quacks like ``grappa.graph.csr.CSR`` for ``NeighborSampler``
(``num_nodes``, ``in_edge_ranges``, ``sources``), and ``node_rows`` reads
features, labels and split codes of any nodes (``gather_rows``: a dense
span in one read, sparse rows one by one). ``bytes_read`` counts the bytes
read from the shards (file I/O, not network).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from grappa.errors import InputError
from grappa.graph.csr import row_ranges, segment_positions
from grappa.id_sets import unique
from grappa.shards.assemble import gather_rows
from grappa.shards.format import load_manifest, open_shard_file

# A shard's rows are read in one span, first wanted row to last, while at least one row in 16 is wanted:
# h5py's row-by-row selection costs as much a row as a span of about 17 rows (Cora's features: 47 us a
# row, 1.8 ms for all 677 of a shard; docs/BENCHMARKS.md). The server's batch covers much of a small
# graph (spans), and a few rows of a large one's shard (row by row: at most 16x the rows are read).
SPAN_PER_ROW = 16


class ShardGraph:
    """Args:
        directory (str | Path): a partitioned dataset (manifest.json + shards).
    """

    def __init__(self, directory):
        d = Path(directory)
        m = load_manifest(d)
        self.paths = [d / c["file"] for c in m["chunks"]]
        self._files: dict[int, h5py.File] = {}
        n = int(m["num_nodes"])
        sizes, degrees, self.row_of = [], [], np.full(n, -1, np.int64)
        for c in range(len(self.paths)):
            f = self._file(c)
            gid = f["nodes/global_id"][()]
            self.row_of[gid] = sum(sizes) + np.arange(len(gid))
            sizes.append(len(gid))
            degrees.append(f["nodes/in_degree"][()])
        if (self.row_of < 0).any():
            raise InputError(d, "the shards do not cover every node of the manifest", "re-run the partitioner")
        self.node_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # row range of each chunk
        self.indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.concatenate(degrees), out=self.indptr[1:])
        self.edge_start = self.indptr[self.node_start]  # virtual edge range of each chunk
        self.bytes_read = 0

    @property
    def num_nodes(self) -> int:
        return len(self.row_of)

    def _file(self, c: int) -> h5py.File:
        if c not in self._files:
            try:
                self._files[c] = open_shard_file(self.paths[c])
            except OSError as e:
                raise InputError(self.paths[c], f"cannot read shard ({e})", "re-run the partitioner") from e
        return self._files[c]

    def _take(self, name: str, where: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Rows ``where`` (virtual positions, any order) of dataset ``name``,
        where chunk c holds positions ``starts[c]:starts[c+1]``."""
        uniq, inverse = np.unique(where, return_inverse=True)
        chunk = np.searchsorted(starts, uniq, side="right") - 1
        out = None
        for c in unique(chunk):  # a loop over chunks, not nodes
            sel = np.flatnonzero(chunk == c)
            part, nbytes = gather_rows(self._file(int(c))[name], uniq[sel] - starts[c], SPAN_PER_ROW)
            if out is None:
                out = np.empty((len(uniq),) + part.shape[1:], part.dtype)
            out[sel] = part
            self.bytes_read += nbytes
        if out is None:
            dset = self._file(0)[name]
            out = np.empty((0,) + dset.shape[1:], dset.dtype)
        return out[inverse]

    # -------------------------------------------------- the sampler's interface
    def in_edge_positions(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return segment_positions(self.indptr, self.row_of[nodes])

    def in_edge_ranges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return row_ranges(self.indptr, self.row_of[nodes])

    def sources(self, pos: np.ndarray) -> np.ndarray:
        return self._take("edges/src_global", pos, self.edge_start)

    # -------------------------------------------------- node rows
    def node_rows(self, nodes: np.ndarray, name: str) -> np.ndarray:
        """``nodes/<name>`` (x, y, split, ...) of the global ids ``nodes``."""
        return self._take(f"nodes/{name}", self.row_of[nodes], self.node_start)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
