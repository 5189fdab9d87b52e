"""Node -> chunk assignment.

- ``random``: a seeded pseudo-random *permutation* of [0, N) (a Feistel network
  with cycle walking) followed by ``chunk = pos * K // N``. Chunk sizes differ
  by at most one node, and any rank computes any node's chunk in O(1) memory
  without communication or an N-sized table.
- ``metis`` (K-way) and ``metis-super`` (C super-nodes dealt round-robin to K
  chunks after a seeded shuffle, SuperTMA) need the whole graph in one
  process; the partitioner computes them once and memory-maps the result.

Schemes are registered in ``SCHEMES`` (name -> table function, None for the
streamed ``random``); a scheme in a module of its own registers itself with
``@register_scheme("name")`` (loaded by GRAPPA_PLUGINS, grappa.plugins): a
function ``(src, dst, num_nodes, k, seed, super_nodes) -> node -> chunk``
over the whole edge list, which the partitioner calls on one rank.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grappa.errors import InputError
from grappa.plugins import register

SCHEMES: dict[str, Callable | None] = {"random": None}  # None: streamed, no table


def register_scheme(name: str):
    """Function decorator: make a whole-graph table function known as ``--method name``."""
    return lambda fn: register(SCHEMES, name, fn, "partition scheme")

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of (x ^ key): a fast, well-mixed round function."""
    z = x ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class FeistelPermutation:
    """Seeded bijection on [0, n), vectorised."""

    def __init__(self, n: int, seed: int, rounds: int = 4):
        self.n = int(n)
        bits = max(2, int(np.ceil(np.log2(max(self.n, 2)))))
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        rng = np.random.default_rng([seed, 0xFE157E1])
        self.keys = [np.uint64(int(k)) for k in rng.integers(0, 2**63, rounds)]

    def _once(self, v: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = v >> h, v & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right, k) & self.mask)
        return (left << h) | right

    def __call__(self, v) -> np.ndarray:
        with np.errstate(over="ignore"):
            out = self._once(np.asarray(v, dtype=np.uint64))
            bad = out >= np.uint64(self.n)
            while bad.any():  # cycle walking: re-apply until inside [0, n)
                out[bad] = self._once(out[bad])
                bad[bad] = out[bad] >= np.uint64(self.n)
        return out.astype(np.int64)


class RandomAssignment:
    def __init__(self, num_nodes: int, k: int, seed: int):
        self.n, self.k = int(num_nodes), int(k)
        self.perm = FeistelPermutation(num_nodes, seed)

    def __call__(self, nodes) -> np.ndarray:
        pos = self.perm(nodes)
        return (pos * self.k // self.n).astype(np.int32)


class TableAssignment:
    """Assignment read from a node->chunk array (METIS results), memory-mapped."""

    def __init__(self, table: np.ndarray):
        self.table = table

    def __call__(self, nodes) -> np.ndarray:
        return np.asarray(self.table[np.asarray(nodes)], dtype=np.int32)


def metis_parts(src: np.ndarray, dst: np.ndarray, n: int, parts: int, seed: int) -> np.ndarray:
    """METIS k-way on the symmetrised graph (self-loops dropped)."""
    import pymetis

    from grappa.graph.csr import CSR, to_undirected

    s, d = to_undirected(src, dst)
    keep = s != d
    csr = CSR.from_edges(s[keep], d[keep], n)
    opts = pymetis.Options(seed=seed)
    _, membership = pymetis.part_graph(parts, xadj=csr.indptr, adjncy=csr.indices, options=opts)
    return np.asarray(membership, dtype=np.int64)


@register_scheme("metis")
def metis_table(src, dst, n: int, k: int, seed: int, super_nodes: int | None = None) -> np.ndarray:
    """METIS k-way: chunk = part."""
    return metis_parts(src, dst, n, k, seed).astype(np.int32)


@register_scheme("metis-super")
def metis_super_table(src, dst, n: int, k: int, seed: int, super_nodes: int | None = None) -> np.ndarray:
    """C METIS parts (super-nodes) dealt to K chunks after a seeded shuffle (SuperTMA)."""
    c = super_nodes or min(n, max(16 * k, 1000))
    if c < k:
        raise InputError("--super-nodes", f"{c} super-nodes cannot fill {k} chunks", "use at least K super-nodes")
    parts = metis_parts(src, dst, n, c, seed)
    # Shuffle super-nodes, then deal them to chunks greedily by size so chunks
    # stay balanced even though METIS parts differ in size.
    rng = np.random.default_rng(seed)
    sizes = np.bincount(parts, minlength=c)
    order = rng.permutation(c)
    chunk_of_part = np.empty(c, np.int32)
    load = np.zeros(k, np.int64)
    for p in order[np.argsort(-sizes[order], kind="stable")]:  # C iterations, C << N
        j = int(np.argmin(load))
        chunk_of_part[p] = j
        load[j] += sizes[p]
    return chunk_of_part[parts]

