"""The one gradient allreduce of a distributed step, which also carries the
few scalars the step needs summed (weights, losses, a stop flag)."""
from __future__ import annotations

import torch

from grappa.comm import Comm


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
