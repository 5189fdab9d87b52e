"""Synthetic graphs streamed to the raw layout in blocks (memory independent
of the edge count): RMAT (Graph500) and a planted-partition SBM whose features
carry a weak class signal, so the graph structure matters for accuracy."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from grappa.errors import check_options
from grappa.graph.npy_stream import NpyAppender
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, GraphInfo

Progress = Callable[[int], None]


def _split_block(rng: np.random.Generator, n: int, fractions) -> np.ndarray:
    u = rng.random(n)
    tr, va, te = fractions
    out = np.zeros(n, np.uint8)
    out[u < tr] = SPLIT_TRAIN
    out[(u >= tr) & (u < tr + va)] = SPLIT_VAL
    out[(u >= tr + va) & (u < tr + va + te)] = SPLIT_TEST
    return out


# ---------------------------------------------------------------- RMAT
@dataclass
class RMATConfig:
    scale: int = 16
    edge_factor: int = 16
    a: float = 0.57
    b: float = 0.19
    c: float = 0.19
    noise: float = 0.1  # Graph500-style per-level perturbation of (a, b, c, d)
    num_features: int = 16
    num_classes: int = 2
    undirected: bool = False  # also store the reverse of every edge
    self_loops: bool = True
    seed: int = 0
    block_edges: int = 1 << 20
    split: tuple = (0.6, 0.2, 0.2)

    def __post_init__(self):  # at the boundary: a bad flag is one clear error, not a traceback later
        d = 1.0 - self.a - self.b - self.c
        check_options(self, (("--scale", 1 <= self.scale <= 40, "in [1, 40]"),
                             ("--edge-factor", self.edge_factor >= 1, "at least 1"),
                             ("--a/--b/--c", min(self.a, self.b, self.c, d) >= 0,
                              "non-negative probabilities that sum to at most 1"),
                             ("--noise", 0 <= self.noise < 1, "in [0, 1)"),
                             ("--num-features", self.num_features >= 0, "0 or more"),
                             ("--num-classes", self.num_classes >= 1, "at least 1"),
                             ("--block-edges", self.block_edges >= 1, "at least 1")))


def _scramble(v: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """A seeded bijection on [0, 2^scale): relabels vertices so the high-degree
    ones are not all small ids, with O(1) memory (no N-sized permutation)."""
    mask = np.uint64((1 << scale) - 1)
    rng = np.random.default_rng(seed ^ 0x5EED)
    v = v.astype(np.uint64)
    for _ in range(2):
        mul = np.uint64(int(rng.integers(1, 1 << 62)) | 1)  # odd => invertible mod 2^s
        add = np.uint64(int(rng.integers(0, 1 << 62)))
        v = (v * mul + add) & mask
        v ^= v >> np.uint64(max(scale // 2, 1))  # xorshift: invertible too
    return v.astype(np.int64)


def generate_rmat(cfg: RMATConfig, out, progress: Progress | None = None) -> GraphInfo:
    out = Path(out)
    d = 1.0 - cfg.a - cfg.b - cfg.c
    n = 1 << cfg.scale
    m = n * cfg.edge_factor
    rng = np.random.default_rng(cfg.seed)
    # Per-level noisy quadrant probabilities (fixed for the whole graph).
    levels = []
    for _ in range(cfg.scale):
        p = np.array([cfg.a, cfg.b, cfg.c, d]) * (1 + cfg.noise * (2 * rng.random(4) - 1))
        levels.append(np.cumsum(p / p.sum())[:3])
    with NpyAppender(out / "edges_src.npy", np.int64) as ws, NpyAppender(out / "edges_dst.npy", np.int64) as wd:
        for lo in range(0, m, cfg.block_edges):
            b = min(cfg.block_edges, m - lo)
            brng = np.random.default_rng([cfg.seed, 1, lo])
            src = np.zeros(b, np.int64)
            dst = np.zeros(b, np.int64)
            for lvl, (pa, pab, pabc) in enumerate(levels):
                u = brng.random(b)
                bit = np.int64(1) << np.int64(lvl)
                src |= np.where(u >= pab, bit, 0)  # quadrants c, d: lower half
                dst |= np.where(((u >= pa) & (u < pab)) | (u >= pabc), bit, 0)  # b, d: right half
            src = _scramble(src, cfg.scale, cfg.seed)
            dst = _scramble(dst, cfg.scale, cfg.seed)
            if not cfg.self_loops:
                keep = src != dst
                src, dst = src[keep], dst[keep]
            ws.append(src)
            wd.append(dst)
            if cfg.undirected:
                ws.append(dst)
                wd.append(src)
            if progress:
                progress(b)
        num_edges = ws.rows
    _write_node_blocks(out, n, cfg.num_features, cfg.seed, cfg.split, cfg.block_edges,
                       labels=lambda r, k: r.integers(0, cfg.num_classes, k),
                       feats=lambda r, k, y: r.standard_normal((k, cfg.num_features), dtype=np.float32))
    info = GraphInfo(name=f"rmat{cfg.scale}", num_nodes=n, num_edges=num_edges,
                     num_features=cfg.num_features, num_classes=cfg.num_classes,
                     undirected=cfg.undirected, provenance={"generator": "rmat", **asdict(cfg)})
    info.save(out)
    return info


def _write_node_blocks(out: Path, n: int, f: int, seed: int, split, block: int, labels, feats,
                       y_all: np.ndarray | None = None) -> None:
    """Stream x, y, split in node blocks."""
    with NpyAppender(out / "x.npy", np.float32, (f,)) as wx, NpyAppender(out / "y.npy", np.int64) as wy, \
            NpyAppender(out / "split.npy", np.uint8) as wsp:
        for lo in range(0, n, block):
            k = min(block, n - lo)
            r = np.random.default_rng([seed, 2, lo])
            y = y_all[lo:lo + k] if y_all is not None else labels(r, k)
            wy.append(y)
            wx.append(feats(r, k, y))
            wsp.append(_split_block(r, k, split))


# ---------------------------------------------------------------- SBM / planted partition
@dataclass
class SBMConfig:
    num_nodes: int = 100_000
    num_classes: int = 8
    avg_degree: float = 20.0  # directed edges per node (both directions stored)
    homophily: float = 0.8  # fraction of edges inside a class
    num_features: int = 32
    feature_signal: float = 0.25  # class-mean scale against unit noise: weak on purpose
    # class 1's share of the nodes (the positive class of an imbalanced two-class task, as in tolokers or
    # questions); the other classes share the rest equally. 0 = every class equally likely
    positive_fraction: float = 0.0
    seed: int = 0
    block_edges: int = 1 << 20
    split: tuple = (0.2, 0.2, 0.6)

    def __post_init__(self):
        check_options(self, (("--num-classes", self.num_classes >= 1, "at least 1"),
                             ("--num-nodes", self.num_nodes >= self.num_classes, "at least --num-classes"),
                             ("--avg-degree", self.avg_degree > 0, "positive"),
                             ("--homophily", 0 <= self.homophily <= 1, "in [0, 1]"),
                             ("--num-features", self.num_features >= 1, "at least 1"),
                             ("--feature-signal", self.feature_signal >= 0, "0 or more"),
                             ("--positive-fraction", 0 <= self.positive_fraction < 1 and (
                                 self.positive_fraction == 0 or self.num_classes >= 2),
                              "in [0, 1), with at least 2 classes"),
                             ("--block-edges", self.block_edges >= 1, "at least 1")))


def generate_sbm(cfg: SBMConfig, out, progress: Progress | None = None) -> GraphInfo:
    """Planted partition: each edge picks a uniform source, then a destination
    in the same class with probability ``homophily``, else in a random class.
    Features = signal * class mean + N(0, 1). Memory: O(N) for labels and the
    class-member index, O(block) for edges."""
    out = Path(out)
    n, k = cfg.num_nodes, cfg.num_classes
    rng = np.random.default_rng(cfg.seed)
    if cfg.positive_fraction:
        p = np.full(k, (1.0 - cfg.positive_fraction) / (k - 1))
        p[1] = cfg.positive_fraction
        y = rng.choice(k, n, p=p)
    else:
        y = rng.integers(0, k, n)
    members = np.argsort(y, kind="stable")
    sizes = np.bincount(y, minlength=k)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    means = rng.standard_normal((k, cfg.num_features)).astype(np.float32)
    pairs = int(n * cfg.avg_degree / 2)
    with NpyAppender(out / "edges_src.npy", np.int64) as ws, NpyAppender(out / "edges_dst.npy", np.int64) as wd:
        for lo in range(0, pairs, cfg.block_edges):
            b = min(cfg.block_edges, pairs - lo)
            r = np.random.default_rng([cfg.seed, 1, lo])
            src = r.integers(0, n, b)
            intra = r.random(b) < cfg.homophily
            cls = np.where(intra, y[src], r.integers(0, k, b))
            dst = members[offsets[cls] + (r.random(b) * sizes[cls]).astype(np.int64)]
            keep = src != dst
            src, dst = src[keep], dst[keep]
            ws.append(np.concatenate([src, dst]))
            wd.append(np.concatenate([dst, src]))
            if progress:
                progress(2 * b)
        num_edges = ws.rows
    _write_node_blocks(out, n, cfg.num_features, cfg.seed, cfg.split, cfg.block_edges, labels=None,
                       feats=lambda r, cnt, yb: cfg.feature_signal * means[yb]
                       + r.standard_normal((cnt, cfg.num_features), dtype=np.float32),
                       y_all=y)
    info = GraphInfo(name=f"sbm{n}", num_nodes=n, num_edges=num_edges, num_features=cfg.num_features,
                     num_classes=k, undirected=True, provenance={"generator": "sbm", **asdict(cfg)})
    info.save(out)
    return info
