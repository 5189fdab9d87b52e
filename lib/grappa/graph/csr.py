"""Compressed sparse rows by destination: ``indices[indptr[v]:indptr[v+1]]``
are the in-neighbours (sources) of node v. Everything here is vectorised."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grappa.id_sets import unique


def index_dtype(limit: int, smallest=np.int32):
    """The narrowest signed integer type, no narrower than ``smallest``, that
    holds 0 .. ``limit`` (torch's sparse indices want int32 or int64)."""
    return next(t for t in (np.int16, np.int32, np.int64)
                if np.iinfo(t).bits >= np.iinfo(smallest).bits and limit < np.iinfo(t).max)


@dataclass
class CSR:
    indptr: np.ndarray  # int64[N+1]
    indices: np.ndarray  # int64[E], sources sorted by destination

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_edges(self) -> int:
        return len(self.indices)

    def in_degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def from_edges(cls, src, dst, num_nodes: int) -> CSR:
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        order = np.argsort(dst, kind="stable")
        counts = np.bincount(dst, minlength=num_nodes)
        indptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, src[order])

    def dst_of_edges(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_nodes, dtype=np.int64), self.in_degree())

    def edge_index(self):
        """[2, E] torch tensor (row 0 source, row 1 destination), PyG convention."""
        import torch  # lazy: the partitioner uses CSR without torch

        return torch.from_numpy(np.stack([self.indices, self.dst_of_edges()]))

    def in_edge_positions(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``indices`` of all in-edges of ``nodes``, and for each
        edge the index of its destination within ``nodes``."""
        return segment_positions(self.indptr, nodes)

    def in_edge_ranges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the in-edges of ``nodes`` start in ``indices``, and how many there are."""
        return row_ranges(self.indptr, nodes)

    def sources(self, pos: np.ndarray) -> np.ndarray:
        """Source node of the edges at ``pos`` (the samplers' one access to edges)."""
        return self.indices[pos]

    def in_edges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All in-edges of ``nodes``: (sources, index of the destination in ``nodes``)."""
        pos, seg = self.in_edge_positions(nodes)
        return self.indices[pos], seg


def segment_positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every position in ``indptr[r]:indptr[r+1]`` for the rows ``rows``, and
    for each position the index of its row within ``rows``."""
    return expand_ranges(*row_ranges(indptr, rows))


def row_ranges(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of each of ``rows`` in a CSR with row pointers ``indptr``."""
    starts = indptr[rows]
    return starts, indptr[rows + 1] - starts


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every position in ``starts[i]:starts[i] + counts[i]``, and for each position its i."""
    seg = np.repeat(np.arange(len(starts), dtype=np.int64), counts)
    offsets = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets, seg


def to_undirected(src, dst) -> tuple[np.ndarray, np.ndarray]:
    """Add reverse edges and drop duplicates (self-loops kept once)."""
    s = np.concatenate([src, dst]).astype(np.int64)
    d = np.concatenate([dst, src]).astype(np.int64)
    return dedup_edges(s, d)


def dedup_edges(src, dst) -> tuple[np.ndarray, np.ndarray]:
    """Unique (src, dst) pairs, sorted by (dst, src)."""
    n = int(max(src.max(initial=0), dst.max(initial=0))) + 1
    key = unique(np.asarray(dst, np.int64) * n + np.asarray(src, np.int64))
    return key % n, key // n

