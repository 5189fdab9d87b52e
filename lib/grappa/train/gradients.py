"""A distributed gradient step, in the style of Horovod's
``DistributedOptimizer``: one allreduce of the gradients (and of the few
scalars the step needs summed: weights, losses, the stop flag), optionally
compressed, a normalisation, the optimizer's step. Every gradient-exchanging
method (Grappa and its variants, halo exchange, RETEXO, AdaQP) steps here.

    step = GradientStep(comm, optimizer)
    sums, stop = step([w], scale=w, divide_by=lambda sums: sums[0])   # G = sum w_p g_p / sum w_p
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from grappa.comm import Comm


class NoCompression:
    """The gradients travel as they are (float32)."""

    @staticmethod
    def compress(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def decompress(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t


class FP16Compression:
    """Horovod's ``Compression.fp16``: half the bytes, float16's 11-bit precision."""

    @staticmethod
    def compress(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float16)

    @staticmethod
    def decompress(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t.to(dtype)


def allreduce_gradients(comm: Comm, params: list[torch.nn.Parameter], scalars: list[float],
                        scale: float = 1.0, compression=NoCompression) -> torch.Tensor:
    """One allreduce (``train_grad``) of [scale * grads, scalars]: afterwards
    every ``p.grad`` holds the sum over ranks. Returns the summed scalars."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    sent = compression.compress(torch.cat([flat * scale, torch.tensor(scalars, dtype=flat.dtype)]))
    tot = compression.decompress(comm.allreduce(sent, category="train_grad"), flat.dtype)
    off = 0
    for p in params:
        p.grad = tot[off:off + p.numel()].view_as(p).clone()
        off += p.numel()
    return tot[off:]


class GradientStep:
    """Allreduce, normalise, step.

    Args:
        comm (Comm): the ranks' communicator.
        optimizer (torch.optim.Optimizer): steps the parameters.
        params (list, optional): the parameters whose gradients travel, in a
            fixed order. (default: the optimizer's first group)
        stop_flag (callable, optional): this rank was asked to stop; summed with
            the gradients, so every rank learns it in the same call. (default: never)
        compression (optional): ``NoCompression`` or ``FP16Compression``. (default: none)
    """

    def __init__(self, comm: Comm, optimizer: torch.optim.Optimizer, params: list | None = None,
                 stop_flag: Callable[[], bool] = lambda: False, compression=NoCompression):
        self.comm, self.opt, self.stop_flag, self.compression = comm, optimizer, stop_flag, compression
        self.params = params

    def __call__(self, scalars: list[float], scale: float = 1.0,
                 divide_by: Callable[[list[float]], float] | None = None) -> tuple[list[float], bool]:
        """Sum ``[scale * grads, scalars]`` over ranks; divide the gradients by
        ``divide_by(summed scalars)`` (zero them where it is not positive);
        step. Returns (summed scalars, whether any rank asked to stop)."""
        params = self.params if self.params is not None else self.opt.param_groups[0]["params"]
        *sums, stop = allreduce_gradients(self.comm, params, [*scalars, 1.0 if self.stop_flag() else 0.0], scale,
                                          self.compression).tolist()
        if divide_by is not None:
            d = divide_by(sums)
            for p in params:
                if d > 0:
                    p.grad.div_(d)
                else:
                    p.grad.zero_()
        self.opt.step()
        return sums, stop > 0
