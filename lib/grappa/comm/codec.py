"""Row codecs: how rows of a tensor travel on the wire (AdaQP's quantizer).

A codec is a tiny pluggable class, like Horovod's ``Compression``: the halo
exchange (``grappa.train.halo_exchange``) hands it the rows it sends and one
bit-width per row, sends the bytes, and the receiver, who knows the same
bit-widths, decodes them:

    buf = codec.encode(rows, bits)            # uint8, rows back to back
    rows_hat = codec.decode(buf, bits, dim)   # float32

``StochasticQuantizer`` (METHODS.md section 5): each row x of D values goes
as its minimum and scale and D values of b bits,

    s = (2^b - 1) / (max - min),  q_j = floor((x_j - min) * s + u_j),  u_j ~ U[0, 1)
    x_hat_j = q_j / s + min

which is unbiased: E[x_hat_j] = x_j, with variance frac (1 - frac) / s^2 per
value (frac the fractional part of (x_j - min) s), at most 1 / (4 s^2).
(min, s) travel as bfloat16 (the authors' choice); the sender rounds min
down and s towards zero *before* quantizing, so the receiver's decode uses
exactly the sender's values and the rounding stays unbiased. Values are
bit-packed, 8 / b per byte: a row costs ``4 + ceil(D b / 8)`` bytes.
"""
from __future__ import annotations

import numpy as np
import torch

PARAM_BYTES = 4  # (min, scale) as two bfloat16
_BF16_MAX = float(torch.finfo(torch.bfloat16).max)


def row_bytes(bits: np.ndarray, dim: int) -> np.ndarray:
    """Wire bytes of each row of ``dim`` values quantized to ``bits``."""
    bits = np.asarray(bits, np.int64)
    return PARAM_BYTES + (dim * bits + 7) // 8


def _bf16_toward_zero(x: torch.Tensor) -> torch.Tensor:
    """float32 -> the nearest bfloat16 value towards zero (drop the low 16 bits)."""
    return (x.contiguous().view(torch.int32) & -65536).view(torch.float32)


def _bf16_floor(x: torch.Tensor) -> torch.Tensor:
    """float32 -> the largest bfloat16 value <= x."""
    t = _bf16_toward_zero(x)
    up = t > x  # negative values truncated towards zero: one bfloat16 step down
    return torch.where(up, (t.view(torch.int32) + 65536).view(torch.float32), t)


def pack(q: torch.Tensor, b: int) -> torch.Tensor:
    """(n, D) integers in [0, 2^b) -> (n, ceil(D b / 8)) bytes, 8 / b values a byte."""
    q = q.to(torch.uint8)
    per = 8 // b
    if per == 1:
        return q
    n, d = q.shape
    if d % per:
        q = torch.nn.functional.pad(q, (0, per - d % per))
    v = q.view(n, -1, per)
    out = v[..., 0].clone()
    for k in range(1, per):
        out |= v[..., k] << (k * b)
    return out


def unpack(packed: torch.Tensor, b: int, dim: int) -> torch.Tensor:
    """Inverse of ``pack``: (n, ceil(dim b / 8)) bytes -> (n, dim) uint8."""
    per = 8 // b
    if per == 1:
        return packed
    shifts = torch.arange(0, 8, b, dtype=torch.uint8)
    vals = (packed.unsqueeze(-1) >> shifts) & ((1 << b) - 1)
    return vals.reshape(packed.shape[0], -1)[:, :dim]


class Codec:
    """Rows <-> bytes. Subclasses define ``row_bytes``, ``encode``, ``decode``."""

    def row_bytes(self, bits: np.ndarray, dim: int) -> np.ndarray:
        raise NotImplementedError

    def encode(self, rows: torch.Tensor, bits: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, buf: torch.Tensor, bits: np.ndarray, dim: int) -> torch.Tensor:
        raise NotImplementedError


def _runs(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every run of equal values."""
    cut = np.flatnonzero(np.diff(bits)) + 1
    return np.r_[0, cut], np.r_[cut, len(bits)]


class StochasticQuantizer(Codec):
    """Per-row stochastic quantization to 2, 4 or 8 bits, bit-packed (see module doc).

    Rows go in the order given, each as its (min, scale) and its packed values.
    Every width's rows are quantized in one vectorised pass, so rows sorted by
    width within each destination (what ``HaloPlan`` sends) cost a few passes,
    whatever their number.
    """

    widths = (2, 4, 8)

    def row_bytes(self, bits, dim):
        return row_bytes(bits, dim)

    def encode(self, rows, bits):
        bits = np.asarray(bits)
        rows = rows.detach().float()
        blocks = {}
        for b in self.widths:
            sel = np.flatnonzero(bits == b)
            if len(sel):
                blocks[b] = self._encode_block(rows[torch.from_numpy(sel)], b)
        rank_in_width = np.empty(len(bits), np.int64)  # row -> its row in its width's block
        for b in self.widths:
            sel = np.flatnonzero(bits == b)
            rank_in_width[sel] = np.arange(len(sel))
        pieces = []
        for a, e in zip(*_runs(bits)):  # runs, not rows
            first = int(rank_in_width[a])
            pieces.append(blocks[int(bits[a])][first:first + e - a].reshape(-1))
        return torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.uint8)

    def _encode_block(self, r: torch.Tensor, b: int) -> torch.Tensor:
        levels = 2 ** b - 1
        lo, hi = torch.aminmax(r, dim=1)
        lo = _bf16_floor(lo)
        span = hi - lo
        scale = torch.where(span > 0, levels / span, torch.ones_like(span))
        scale = _bf16_toward_zero(scale.clamp(max=_BF16_MAX))  # so that (x - lo) s <= 2^b - 1
        q = (r - lo[:, None]).mul_(scale[:, None]).add_(torch.rand_like(r)).floor_().clamp_(0, levels)
        head = torch.stack([lo, scale], 1).to(torch.bfloat16).view(torch.uint8)  # exact: already bfloat16
        return torch.cat([head, pack(q, b)], 1)

    def decode(self, buf, bits, dim):
        bits = np.asarray(bits)
        sizes = self.row_bytes(bits, dim)
        if buf.numel() != int(sizes.sum()):
            raise ValueError(f"decode: {buf.numel()} bytes received, {int(sizes.sum())} expected for these widths")
        offsets = np.r_[0, np.cumsum(sizes)]
        parts: dict[int, list] = {b: [] for b in self.widths}
        for a, e in zip(*_runs(bits)):
            parts[int(bits[a])].append(buf[offsets[a]:offsets[e]])
        out = torch.empty(len(bits), dim)
        for b, chunks in parts.items():
            if not chunks:
                continue
            body = torch.cat(chunks).view(-1, int(self.row_bytes(np.array([b]), dim)[0]))
            head = body[:, :PARAM_BYTES].reshape(-1).view(torch.bfloat16).float().view(-1, 2)
            q = unpack(body[:, PARAM_BYTES:], b, dim).float()
            out[torch.from_numpy(np.flatnonzero(bits == b))] = q.div_(head[:, 1:2]).add_(head[:, 0:1])
        return out
