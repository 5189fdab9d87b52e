"""grappa.train.gradients.GradientStep: allreduce, normalise, step, on one process
(the multi-rank sum is the comm layer's, tested in test_comm_mpi and by every method)."""
from __future__ import annotations

import torch
from grappa.comm import SingleComm
from grappa.train.gradients import FP16Compression, GradientStep


def _layer(grad: torch.Tensor):
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2, bias=False)
    lin.weight.grad = grad.clone()
    return lin, torch.optim.SGD(lin.parameters(), lr=1.0)


def test_the_step_divides_by_the_summed_weight_and_returns_the_sums_and_the_stop_flag():
    g = torch.arange(6, dtype=torch.float32).view(2, 3) / 7
    lin, opt = _layer(g)
    w0 = lin.weight.detach().clone()
    sums, stop = GradientStep(SingleComm(), opt, stop_flag=lambda: True)([4.0, 2.5], scale=4.0,
                                                                          divide_by=lambda s: s[0])
    assert sums == [4.0, 2.5] and stop is True
    torch.testing.assert_close(lin.weight.grad, g)  # (4 g) / 4
    torch.testing.assert_close(lin.weight.detach(), w0 - g)


def test_no_weight_anywhere_means_no_update():
    lin, opt = _layer(torch.ones(2, 3))
    w0 = lin.weight.detach().clone()
    _, stop = GradientStep(SingleComm(), opt)([0.0], scale=0.0, divide_by=lambda s: s[0])
    assert stop is False and (lin.weight.grad == 0).all()
    torch.testing.assert_close(lin.weight.detach(), w0)


def test_fp16_compression_rounds_the_gradients_to_half_precision():
    g = torch.tensor([[1.0 + 2**-12, 3.14159265, -2.0e-3], [65504.0, 1e-8, 0.1]])
    lin, opt = _layer(g)
    GradientStep(SingleComm(), opt, compression=FP16Compression)([])
    torch.testing.assert_close(lin.weight.grad, g.half().float(), rtol=0, atol=0)
    assert not torch.equal(lin.weight.grad, g)  # the rounding happened
