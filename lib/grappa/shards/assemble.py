"""Build a rank's local subgraph from its chunk set.

Nodes: the chunks' nodes, concatenated in chunk order (local ids 0..n-1).
Edges: only those whose source chunk is also in the set (isolation: edges
from other chunks are dropped). Coverage of node v:

    a_v = (local in-degree + 1) / (global in-degree + 1)

(the +1 is the self-loop every GNN layer adds; in-degree counts it once),
so a_v is in (0, 1] and equals 1 when no in-edge was dropped.

``halo=True`` also keeps the dropped edges and reads the missing sources'
features from their shards (file I/O at repartition time, no network): the
extra nodes are appended after the owned ones and never used as seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from grappa.graph.csr import CSR, index_dtype
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

    @property
    def edge_index(self) -> torch.Tensor:
        return self.csr.edge_index()

    def drop_in_edges(self) -> None:
        """Free the per-in-edge arrays (14 B per edge) once nothing reads them."""
        self.full_src_global = self.full_dst_local = self.full_src_chunk = None


def _global_to_local(sorted_gid: np.ndarray, order: np.ndarray, query: np.ndarray) -> np.ndarray:
    return order[np.searchsorted(sorted_gid, query)]


def load_chunk_set(dataset, chunks: list[int], halo: bool = False) -> LocalGraph:
    d = Path(dataset)
    m = load_manifest(d)
    if not chunks:
        return empty_local_graph(m)
    parts = [read_shard(d / m["chunks"][c]["file"]) for c in chunks]
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
    sorted_gid = gid[order]
    src_local = _global_to_local(sorted_gid, order, src_g[inside])
    dst_in = dst[inside]
    all_gid, all_x, all_deg = gid, x, gdeg
    if halo and not inside.all():
        missing = np.unique(src_g[~inside])
        hx, hdeg = _read_rows(d, m, missing)
        all_gid = np.concatenate([gid, missing])
        all_x = np.concatenate([x, hx])
        all_deg = np.concatenate([gdeg, hdeg])
        src_local = np.concatenate([src_local, n + np.searchsorted(missing, src_g[~inside])])
        dst_in = np.concatenate([dst_in, dst[~inside]])
    csr = CSR.from_edges(src_local, dst_in, len(all_gid))
    local_deg = csr.in_degree()[:n]
    coverage = (local_deg + 1) / (gdeg + 1)
    ydt = torch.float32 if y.dtype == np.float32 else torch.int64
    return LocalGraph(chunks=list(chunks), global_id=all_gid, num_owned=n, x=torch.from_numpy(all_x),
                      y=torch.from_numpy(y.astype(np.float32 if ydt == torch.float32 else np.int64)), split=split,
                      global_in_degree=all_deg, csr=csr, coverage=coverage,
                      full_src_global=src_g, full_dst_local=dst, full_src_chunk=src_c)


def empty_local_graph(m: dict) -> LocalGraph:
    """No nodes (LLCG's dedicated server rank): every array empty, shapes kept."""
    none = np.zeros(0, np.int64)
    y = torch.zeros((0, m["num_classes"]), dtype=torch.float32) if m["task"] == "multilabel" else \
        torch.zeros(0, dtype=torch.int64)
    return LocalGraph(chunks=[], global_id=none, num_owned=0, x=torch.zeros((0, m["num_features"])), y=y,
                      split=np.zeros(0, np.uint8), global_in_degree=none, csr=CSR.from_edges(none, none, 0),
                      coverage=np.zeros(0), full_src_global=none, full_dst_local=none,
                      full_src_chunk=np.zeros(0, np.int32))


def _read_rows(d: Path, m: dict, nodes: np.ndarray):
    """Features and global in-degree of ``nodes`` (sorted) from their shards."""
    node_chunk = np.load(d / "node_chunk.npy", mmap_mode="r")
    chunk = np.asarray(node_chunk[nodes])
    x = np.zeros((len(nodes), m["num_features"]), np.float32)
    deg = np.zeros(len(nodes), np.int64)
    for c in np.unique(chunk):
        sel = np.flatnonzero(chunk == c)
        s = read_shard(d / m["chunks"][int(c)]["file"], with_edges=False)
        pos = np.searchsorted(s["nodes/global_id"], nodes[sel])
        x[sel] = s["nodes/x"][pos]
        deg[sel] = s["nodes/in_degree"][pos]
    return x, deg
