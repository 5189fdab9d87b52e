"""Build a rank's local subgraph from its chunk set.

Nodes: the chunks' nodes, concatenated in chunk order (local ids 0..n-1).
Edges: only those whose source chunk is also in the set (isolation: edges
from other chunks are dropped). Coverage of node v:

    a_v = (local in-degree + 1) / (global in-degree + 1)

(the +1 is the self-loop every GNN layer adds; in-degree counts it once),
so a_v is in (0, 1] and equals 1 when no in-edge was dropped.

``halo_hops=1`` also keeps the dropped edges and reads the missing sources'
features from their shards (file I/O at repartition time, no network): the
extra nodes are appended after the owned ones and never used as seeds.
``halo_hops=h > 1`` also reads, from the shards, the in-edges of every node
within h - 1 hops upstream of the owned *training* nodes, and the features
of their sources: an h-layer model's outputs at the training nodes are then
exact (every node it reads at hop k < h has all its in-edges). Local ids:
owned nodes, then the halo nodes with all their in-edges (``num_complete``
counts both), then the feature-only halo.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import torch

from grappa.graph.csr import CSR, index_dtype
from grappa.graph.raw import SPLIT_TRAIN
from grappa.shards.format import load_manifest, read_shard


@dataclass
class LocalGraph:
    chunks: list[int]
    global_id: np.ndarray  # [n_total] owned nodes first, then halo nodes
    num_owned: int
    x: torch.Tensor
    y: torch.Tensor
    split: np.ndarray  # [num_owned]
    global_in_degree: np.ndarray  # [n_total]
    csr: CSR  # local, by destination (destinations are owned nodes)
    coverage: np.ndarray  # [num_owned]
    # every in-edge of the owned nodes (for exact evaluation): sources global ids;
    # None once ``drop_in_edges`` ran (an evaluator holds what it needs of them)
    full_src_global: np.ndarray | None
    full_dst_local: np.ndarray | None
    full_src_chunk: np.ndarray | None
    num_complete: int = -1  # the first num_complete nodes have all their in-edges (-1: num_owned)
    halo_hops: int = 0  # the hops of halo read (within the budget)
    bytes_read: int = 0  # from the shards, the set's own and the halo's

    def __post_init__(self):
        if self.num_complete < 0:
            self.num_complete = self.num_owned

    @property
    def edge_index(self) -> torch.Tensor:
        return self.csr.edge_index()

    def drop_in_edges(self) -> None:
        """Free the per-in-edge arrays (14 B per edge) once nothing reads them."""
        self.full_src_global = self.full_dst_local = self.full_src_chunk = None


def _global_to_local(sorted_gid: np.ndarray, order: np.ndarray, query: np.ndarray) -> np.ndarray:
    return order[np.searchsorted(sorted_gid, query)]


# What the halo holds, for its budget: a node's features, id and degree; an
# edge's two int64 ids while it is assembled, then its CSR entry.
HALO_EDGE_BYTES = 24


def halo_node_bytes(num_features: int) -> int:
    return 4 * num_features + 24


def load_chunk_set(dataset, chunks: list[int], halo_hops: int = 0, halo_budget_bytes: float = np.inf) -> LocalGraph:
    """The local graph of ``chunks``; ``halo_hops`` as in the module docstring,
    each hop added only while the halo stays within ``halo_budget_bytes``
    (``LocalGraph.halo_hops`` says how many were)."""
    d = Path(dataset)
    m = load_manifest(d)
    if not chunks:
        return empty_local_graph(m)
    parts = [read_shard(d / m["chunks"][c]["file"]) for c in chunks]
    reader = ShardRows(d, m)
    reader.bytes_read = sum(a.nbytes for p in parts for k, a in p.items() if k != "attrs")
    gid = np.concatenate([p["nodes/global_id"] for p in parts])
    offsets = np.cumsum([0] + [len(p["nodes/global_id"]) for p in parts])
    n = len(gid)
    # pop: each shard's array is freed once concatenated (peak ~1x the edges, not 2x)
    x, y, split, gdeg, src_g = (np.concatenate([p.pop(k) for p in parts]) for k in (
        "nodes/x", "nodes/y", "nodes/split", "nodes/in_degree", "edges/src_global"))
    # Held per in-edge for the whole ownership: the narrowest types that fit (14 B per edge, not 20).
    chunk_t = index_dtype(len(m["chunks"]), np.int16)
    src_c = np.concatenate([p.pop("edges/src_chunk").astype(chunk_t, copy=False) for p in parts])
    dst = np.concatenate([(p.pop("edges/dst_local") + off).astype(index_dtype(n, np.int16), copy=False)
                          for p, off in zip(parts, offsets)])
    inside = np.isin(src_c, np.asarray(chunks))
    order = np.argsort(gid, kind="stable")
    src_local, dst_in = _global_to_local(gid[order], order, src_g[inside]), dst[inside]
    all_gid, all_x, all_deg, complete, hops = gid, x, gdeg, n, 0
    if halo_hops and not inside.all():
        complete_gid, e_src, e_dst, hops = _upstream_halo(reader, gid, src_g, dst, split, inside, halo_hops,
                                                          halo_budget_bytes)
    if hops:
        missing = np.setdiff1d(np.concatenate([src_g[~inside], e_src]), np.concatenate([gid, complete_gid]))
        halo_gid = np.concatenate([complete_gid, missing])  # each part sorted: complete first
        hx, hdeg = reader.features(halo_gid)
        all_gid, all_x, all_deg = np.concatenate([gid, halo_gid]), np.concatenate([x, hx]), np.concatenate([gdeg, hdeg])
        complete = n + len(complete_gid)
        order = np.argsort(all_gid, kind="stable")
        to_local = lambda g: _global_to_local(all_gid[order], order, g)  # noqa: E731
        src_local = np.concatenate([src_local, to_local(src_g[~inside]), to_local(e_src)])
        dst_in = np.concatenate([dst_in, dst[~inside], to_local(e_dst)])
    csr = CSR.from_edges(src_local, dst_in, len(all_gid))
    coverage = (csr.in_degree()[:n] + 1) / (gdeg + 1)
    ydt = torch.float32 if y.dtype == np.float32 else torch.int64
    return LocalGraph(chunks=list(chunks), global_id=all_gid, num_owned=n, x=torch.from_numpy(all_x),
                      y=torch.from_numpy(y.astype(np.float32 if ydt == torch.float32 else np.int64)), split=split,
                      global_in_degree=all_deg, csr=csr, coverage=coverage,
                      full_src_global=src_g, full_dst_local=dst, full_src_chunk=src_c, num_complete=complete,
                      halo_hops=hops, bytes_read=reader.bytes_read)


def _upstream_halo(reader: ShardRows, gid, src_g, dst, split, inside, hops: int, budget: float):
    """(complete, e_src, e_dst, hops used): the halo nodes within hops - 1 hops
    upstream of the owned training nodes (sorted global ids) and their
    in-edges read from the shards (global source, global destination). A hop
    that would take the halo past ``budget`` bytes is not added."""
    owned, node_b = np.sort(gid), halo_node_bytes(reader.m["num_features"])
    complete, e_src, e_dst = (np.zeros(0, np.int64) for _ in range(3))
    # hop 1's cost before any of it is read; a mask, not a copy of the cut edges (a large set has millions)
    missing = np.zeros(reader.m["num_nodes"], bool)
    missing[src_g] = True
    missing[gid] = False
    cost = int(missing.sum()) * node_b + int((~inside).sum()) * HALO_EDGE_BYTES
    del missing
    if cost > budget:
        return complete, e_src, e_dst, 0
    frontier = gid[np.flatnonzero(split == SPLIT_TRAIN)]
    for hop in range(1, hops):
        # in-neighbours of the frontier: from the owned in-edges and from those read so far
        nbrs = np.union1d(src_g[np.isin(dst, np.flatnonzero(np.isin(gid, frontier)))],
                          e_src[np.isin(e_dst, frontier)])
        new = np.setdiff1d(np.setdiff1d(nbrs, owned, assume_unique=True), complete, assume_unique=True)
        if not len(new):
            return complete, e_src, e_dst, hops
        if cost + int(reader.degrees(new).sum()) * HALO_EDGE_BYTES > budget:
            return complete, e_src, e_dst, hop
        s, t = reader.in_edges(new)
        sources = np.setdiff1d(np.unique(s), np.concatenate([owned, complete, new]))
        cost += len(s) * HALO_EDGE_BYTES + len(sources) * node_b  # an upper bound: some were already there
        if cost > budget:
            return complete, e_src, e_dst, hop
        e_src, e_dst = np.concatenate([e_src, s]), np.concatenate([e_dst, t])
        complete, frontier = np.union1d(complete, new), nbrs
    return complete, e_src, e_dst, hops


def empty_local_graph(m: dict) -> LocalGraph:
    """No nodes (LLCG's dedicated server rank): every array empty, shapes kept."""
    none = np.zeros(0, np.int64)
    y = torch.zeros((0, m["num_classes"]), dtype=torch.float32) if m["task"] == "multilabel" else \
        torch.zeros(0, dtype=torch.int64)
    return LocalGraph(chunks=[], global_id=none, num_owned=0, x=torch.zeros((0, m["num_features"])), y=y,
                      split=np.zeros(0, np.uint8), global_in_degree=none, csr=CSR.from_edges(none, none, 0),
                      coverage=np.zeros(0), full_src_global=none, full_dst_local=none,
                      full_src_chunk=np.zeros(0, np.int32))


class ShardRows:
    """Reads the rows of given nodes (sorted global ids within each chunk) from
    their shards: in-degrees, in-edges, features. One shard open at a time, and
    of each dataset only the range between the first and last row wanted;
    ``bytes_read`` counts what was read."""

    def __init__(self, directory: Path, manifest: dict):
        self.dir, self.m = Path(directory), manifest
        self.bytes_read = 0

    @cached_property
    def node_chunk(self) -> np.ndarray:
        return np.load(self.dir / "node_chunk.npy", mmap_mode="r")

    def _by_chunk(self, nodes: np.ndarray):
        """(positions into ``nodes``, the open shard, rows within it) per chunk."""
        chunk = np.asarray(self.node_chunk[nodes])
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            with h5py.File(self.dir / self.m["chunks"][int(c)]["file"], "r") as f:
                ids = self._read(f["nodes/global_id"], 0, None)
                yield sel, f, np.searchsorted(ids, nodes[sel])

    def _read(self, dataset, lo: int, hi: int | None) -> np.ndarray:
        a = dataset[lo:hi]
        self.bytes_read += a.nbytes
        return a

    def degrees(self, nodes: np.ndarray) -> np.ndarray:
        deg = np.zeros(len(nodes), np.int64)
        for sel, f, pos in self._by_chunk(nodes):
            deg[sel] = self._read(f["nodes/in_degree"], 0, None)[pos]
        return deg

    def in_edges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every in-edge of ``nodes``: (source global ids, destination global ids)."""
        src, dst = [], []
        for sel, f, pos in self._by_chunk(nodes):
            deg = self._read(f["nodes/in_degree"], 0, None)
            start, count = np.concatenate([[0], np.cumsum(deg)])[pos], deg[pos]
            # the edges are sorted by destination: row v is start[v] .. start[v] + count[v]
            idx = np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())
            if len(idx):
                lo = int(idx.min())
                src.append(self._read(f["edges/src_global"], lo, int(idx.max()) + 1)[idx - lo])
                dst.append(np.repeat(nodes[sel], count))
        return (np.concatenate(src), np.concatenate(dst)) if src else (np.zeros(0, np.int64),) * 2

    def features(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and global in-degrees of ``nodes``."""
        x = np.zeros((len(nodes), self.m["num_features"]), np.float32)
        deg = np.zeros(len(nodes), np.int64)
        for sel, f, pos in self._by_chunk(nodes):
            lo, hi = int(pos.min()), int(pos.max()) + 1
            x[sel] = self._read(f["nodes/x"], lo, hi)[pos - lo]
            deg[sel] = self._read(f["nodes/in_degree"], lo, hi)[pos - lo]
        return x, deg
