"""Sparse feature rows for a model's first projection.

Bag-of-words features (Cora's 1,433 columns hold 1.3% nonzeros) make the
first layer's dense ``x @ W^T`` and its weight gradient most of a small
graph's step, and input dropout writes a dense matrix of mostly zeros before
it. A built-in GCN or SAGE in training takes its dropped input as
``SparseRows`` instead (``LayerwiseGNN.input``): the nonzeros' values over a
CSR layout found once per input (``NonzeroCache``), multiplied by the weight
as a sparse product whose backward reuses the layout's transpose. Same draws,
same values as the dense path, summed in another order (float32 rounding).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def csr_matrix(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR tensor, without torch's "sparse CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


def csr_transpose(crow: torch.Tensor, col: torch.Tensor, rows: int, cols: int):
    """(crow, col, order) of a rows x cols CSR structure's transpose: the
    transpose's values are the matrix's ``values[order]``."""
    row = torch.repeat_interleave(torch.arange(rows, dtype=col.dtype), crow.diff())
    order = torch.argsort(col, stable=True)  # by column; rows stay ascending within one
    crow_t = torch.zeros(cols + 1, dtype=crow.dtype)
    crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=cols), 0)
    return crow_t, row[order], order


class SparseLayout:
    """Where a rows x cols matrix's nonzeros are (``flat``: row-major flat
    indices, ascending), as CSR; its transpose is built at the first backward
    and kept, like the leading-row layouts ``head`` cuts. ``values``: the
    matrix's own values there, when the layout was found in one (optional)."""

    def __init__(self, flat: torch.Tensor, rows: int, cols: int, values: torch.Tensor | None = None):
        self.flat, self.rows, self.cols, self.values = flat, rows, cols, values
        self.col = flat % cols
        self.crow = torch.zeros(rows + 1, dtype=torch.int64)
        self.crow[1:] = torch.cumsum(torch.bincount(flat // cols, minlength=rows), 0)
        self._transpose = None  # (crow_t, row_t, order)
        self._heads: dict[int, SparseLayout] = {}

    def transpose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(crow, col, order) of the cols x rows transpose: its values are ``values[order]``."""
        if self._transpose is None:
            self._transpose = csr_transpose(self.crow, self.col, self.rows, self.cols)
        return self._transpose

    def head(self, n: int) -> SparseLayout:
        """The layout of the first ``n`` rows (a sampled step's layers cut its
        input to the rows within reach): its values are the first ``crow[n]``."""
        if n == self.rows:
            return self
        if n not in self._heads:
            self._heads[n] = SparseLayout(self.flat[: int(self.crow[n])], n, self.cols)
        return self._heads[n]


class SparseRows:
    """A rows x cols feature matrix held as its nonzeros' ``values`` over ``layout``.

    Args:
        layout (SparseLayout): where the values sit.
        values (Tensor): float values in the layout's (row-major) order, no gradient.
    """

    def __init__(self, layout: SparseLayout, values: torch.Tensor):
        self.layout, self.values = layout, values

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.layout.rows, self.layout.cols))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, index):
        if not (isinstance(index, slice) and index.start in (None, 0) and index.step in (None, 1)):
            raise TypeError(f"SparseRows takes leading rows ([:n]) only, not {index!r}")
        n = min(self.layout.rows, self.layout.rows if index.stop is None else index.stop)
        head = self.layout.head(n)
        return SparseRows(head, self.values[: len(head.flat)])

    def csr(self) -> torch.Tensor:
        return csr_matrix(self.layout.crow, self.layout.col, self.values, tuple(self.shape))

    def csr_t(self) -> torch.Tensor:
        crow, row, order = self.layout.transpose()
        return csr_matrix(crow, row, self.values[order], (self.layout.cols, self.layout.rows))

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.layout.rows * self.layout.cols, dtype=self.values.dtype)
        out[self.layout.flat] = self.values
        return out.view(self.layout.rows, self.layout.cols)


class _SparseLinear(torch.autograd.Function):
    """``rows @ weight^T``; the weight's gradient is ``(rows^T @ grad)^T``, over the cached transpose."""

    @staticmethod
    def forward(ctx, weight, rows):
        ctx.rows = rows
        return torch.sparse.mm(rows.csr(), weight.t())

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.rows.csr_t(), grad.contiguous()).t(), None


def linear(x, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` that also takes ``SparseRows``."""
    if not isinstance(x, SparseRows):
        return F.linear(x, weight, bias)
    out = _SparseLinear.apply(weight, x)
    return out if bias is None else out + bias


def dense(x) -> torch.Tensor:
    """``x`` as a dense tensor (for a layer that aggregates its input before projecting it)."""
    return x.dense() if isinstance(x, SparseRows) else x
