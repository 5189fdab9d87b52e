"""What every distributed method's step shares: seeding from the step's
coordinates, the epoch's seed order and its mini-batches, and the one
gradient allreduce that carries a few scalars."""
from __future__ import annotations

import numpy as np
import torch

from grappa.comm import Comm


def step_seed(*parts: int) -> int:
    """A seed derived from (seed, epoch, rank, step, ...): nothing to checkpoint,
    and a resumed run replays the same randomness."""
    return int(np.random.default_rng(list(parts)).integers(0, 2**62))


def allreduce_gradients(comm: Comm, params: list[torch.nn.Parameter], scalars: list[float],
                        scale: float = 1.0) -> torch.Tensor:
    """One allreduce (``train_grad``) of [scale * grads, scalars]: afterwards
    every ``p.grad`` holds the sum over ranks. Returns the summed scalars."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    tot = comm.allreduce(torch.cat([flat * scale, torch.tensor(scalars, dtype=flat.dtype)]), category="train_grad")
    off = 0
    for p in params:
        p.grad = tot[off:off + p.numel()].view_as(p).clone()
        off += p.numel()
    return tot[off:]


def batch_seeds(order: np.ndarray, batch_size: int, step: int) -> np.ndarray:
    """Seeds of local step ``step``: consecutive slices of the epoch's order,
    wrapping around (ranks with fewer seeds, and time-mode rounds, cycle)."""
    if not batch_size or not len(order):
        return order
    lo = (step * batch_size) % len(order)
    return np.take(order, np.arange(lo, lo + min(batch_size, len(order))), mode="wrap")


def epoch_order(train_nodes: np.ndarray, seed: int, epoch: int, rank: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, rank, 1]).permutation(train_nodes)
