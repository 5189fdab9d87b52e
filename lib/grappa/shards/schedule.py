"""Chunk-set schedules: which chunks each rank loads in super-epoch s.

Computed identically on every rank from (schedule, K, P, s, seed), with no
communication. Every schedule gives each chunk to exactly one rank per
super-epoch (the chunk sets partition the graph), for any K >= P.

- ``fixed``: contiguous groups of K/P chunks, never changing (FP ablation).
- ``shuffle``: a fresh seeded permutation of the K chunks cut into P groups.
- ``sweep``: the chunks form 2P groups, P "base" and P "variable"; rank r
  keeps base group r and takes variable group (r + s) mod P, so every
  (base, variable) pair is co-located within P super-epochs (s = 0..P-1).
  With K < 2P there are no variable groups and sweep equals fixed.

``base_variable_sets`` is the authors' schedule (K = P, overlapping sets),
used only by ``--method grappa-authors``.
"""
from __future__ import annotations

import numpy as np

SCHEDULES = ("sweep", "shuffle", "fixed")


def chunk_sets(schedule: str, num_chunks: int, world_size: int, super_epoch: int, seed: int) -> list[list[int]]:
    k, p = num_chunks, world_size
    if k < p:
        raise ValueError(f"need at least one chunk per rank: K={k} < P={p}")
    if schedule == "fixed":
        groups = np.array_split(np.arange(k), p)
    elif schedule == "shuffle":
        perm = np.random.default_rng([seed, super_epoch, 0x5C4ED]).permutation(k)
        groups = np.array_split(perm, p)
    elif schedule == "sweep":
        if k < 2 * p:
            groups = np.array_split(np.arange(k), p)
        else:
            parts = np.array_split(np.arange(k), 2 * p)
            base, var = parts[:p], parts[p:]
            groups = [np.concatenate([base[r], var[(r + super_epoch) % p]]) for r in range(p)]
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    return [sorted(int(c) for c in g) for g in groups]


def base_variable_sets(world_size: int, super_epoch: int) -> list[list[int]]:
    """The authors' schedule (K = P): rank r loads its base chunk r, then the
    variable chunk (r + 1 + s mod (P - 1)) mod P. Sets overlap (each chunk is
    in two of them) and every pair of chunks meets within P - 1 super-epochs.
    The base chunk comes first, so its nodes get the first local ids."""
    p = world_size
    if p == 1:
        return [[0]]
    return [[r, (r + 1 + super_epoch % (p - 1)) % p] for r in range(p)]


def owner_of_chunks(sets: list[list[int]], num_chunks: int) -> np.ndarray:
    """chunk -> rank for a partitioning schedule."""
    owner = np.full(num_chunks, -1, np.int64)
    for r, s in enumerate(sets):
        owner[s] = r
    return owner
