"""An epoch's seed order, its mini-batches, and the seed of each step's
randomness: all derived from (seed, epoch, rank, step), so a resumed run
replays them with nothing checkpointed."""
from __future__ import annotations

import numpy as np
import torch


def step_seed(*parts: int) -> int:
    """A seed derived from (seed, epoch, rank, step, ...): nothing to checkpoint,
    and a resumed run replays the same randomness."""
    return int(np.random.default_rng(list(parts)).integers(0, 2**62))


def seed_torch(*parts: int) -> None:
    """Seed torch's generator with ``step_seed(*parts)``: the CPU generator only.
    ``torch.manual_seed`` also queues lazy seeding for CUDA, XPU and MTIA, each
    recording a stack trace (about 1 ms a call, a tenth of a small step)."""
    torch.default_generator.manual_seed(step_seed(*parts))


def batch_seeds(order: np.ndarray, batch_size: int, step: int) -> np.ndarray:
    """Seeds of local step ``step``: consecutive slices of the epoch's order,
    wrapping around (ranks with fewer seeds, and time-mode rounds, cycle)."""
    if not batch_size or not len(order):
        return order
    lo = (step * batch_size) % len(order)
    return np.take(order, np.arange(lo, lo + min(batch_size, len(order))), mode="wrap")


def epoch_order(train_nodes: np.ndarray, seed: int, epoch: int, rank: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, rank, 1]).permutation(train_nodes)
