"""Halo exchange: the rows a rank needs from other ranks, layer by layer.

A rank owns the nodes of its chunk set and has *every* in-edge of them (the
shards store all edges by destination). The sources of those edges that
other ranks own form its 1-hop halo. ``HaloPlan`` works out, once, which of
its own rows every other rank needs and in which order the halo rows arrive;
then each exchange is one alltoallv:

    h_full = plan.fetch(h_own, "eval")                 # no gradient
    h_full = plan.exchange(h_own, "train_feat", "train_act_grad")

``exchange`` is differentiable: its backward sends the gradients of the halo
rows back to their owners (a second alltoallv, the transposed plan), which
add them to the gradients of their own rows. Layer inputs are laid out as
[own rows; halo rows], and ``edge_index`` indexes that layout, so a model's
layer applied to it computes the exact full-neighbour output of the owned
nodes (the first ``num_owned`` rows).

Rows travel in full precision unless a ``Link`` puts a codec on the wire
(AdaQP: ``grappa.comm.codec``), one for the forward rows and one for the
backward gradient rows; ``start_fetch`` + ``attach`` split the exchange so
that a method can compute while the rows are in flight.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from grappa.comm import Comm
from grappa.comm.base import Pending
from grappa.comm.codec import Codec
from grappa.graph.csr import index_dtype
from grappa.id_sets import unique
from grappa.shards.assemble import EDGE_BLOCK, LocalGraph, ShardRows, chunk_mask, in_edge_blocks


@dataclass
class Link:
    """A codec on one direction of an exchange: ``bits_out`` holds a bit-width
    per row this rank sends (send order), ``bits_in`` per row it receives;
    ``out_splits`` / ``in_splits`` are the rows to / from each rank;
    ``on_send(rows)`` sees the rows before they are encoded (AdaQP traces them).
    Rows travel sorted by bit-width within each destination, so the codec
    quantizes each width in one pass."""

    codec: Codec
    bits_out: np.ndarray
    bits_in: np.ndarray
    out_splits: list[int]
    in_splits: list[int]
    on_send: Callable[[torch.Tensor], None] | None = None

    def __post_init__(self):
        def order(bits, splits):
            return np.lexsort((bits, np.repeat(np.arange(len(splits)), splits)))

        self.out_order, self.in_order = order(self.bits_out, self.out_splits), order(self.bits_in, self.in_splits)

    def send(self, comm: Comm, rows: torch.Tensor, category: str) -> Pending:
        if self.on_send is not None:
            self.on_send(rows)
        dim, codec = rows.shape[1], self.codec
        bits_out, bits_in = self.bits_out[self.out_order], self.bits_in[self.in_order]
        pending = comm.ialltoallv(codec.encode(rows[torch.from_numpy(self.out_order)], bits_out),
                                  _segment_sums(codec.row_bytes(bits_out, dim), self.out_splits),
                                  _segment_sums(codec.row_bytes(bits_in, dim), self.in_splits), category)

        def wait():
            out = torch.empty(len(bits_in), dim)
            out[torch.from_numpy(self.in_order)] = codec.decode(pending.wait(), bits_in, dim)
            return out

        return Pending(None, pending.test, wait)


def _segment_sums(values: np.ndarray, splits: list[int]) -> list[int]:
    ends = np.cumsum(splits)
    total = np.concatenate([[0], np.cumsum(values)])
    return (total[ends] - total[ends - np.asarray(splits)]).astype(np.int64).tolist()


class HaloPlan:
    def __init__(self, comm: Comm, local: LocalGraph, chunk_owner: np.ndarray, category: str):
        """``chunk_owner[c]`` is the rank that owns chunk c; the setup messages
        (ids wanted, their global in-degrees) are counted as ``category``."""
        n = local.num_owned
        # One source chunk at a time, so the temporaries are a chunk's edges, not all of them.
        src_c, src_g = local.full_src_chunk, local.full_src_global
        present = np.flatnonzero(np.bincount(src_c, minlength=len(chunk_owner)))
        mine = set(local.chunks)
        remote = [int(c) for c in present if c not in mine]
        # Remote sources, grouped by owner rank and sorted within (the order their rows arrive in).
        uniq = {c: unique(src_g[src_c == c]) for c in remote}
        none = [np.zeros(0, np.int64)]
        groups = [np.sort(np.concatenate([uniq.pop(c) for c in remote if chunk_owner[c] == q] or none))
                  for q in range(comm.size)]
        order, own_sorted = self._connect(comm, local, groups, category)
        # Each in-edge's source row in [own; halo], int32 where it fits (4 B per edge, not 8).
        self.src_pos = np.empty(len(src_g), index_dtype(self.num_nodes))
        starts = n + np.concatenate([[0], np.cumsum(self.recv_splits)])
        for c in present:
            sel = np.flatnonzero(src_c == c)
            if c in mine:
                self.src_pos[sel] = order[np.searchsorted(own_sorted, src_g[sel])]
            else:
                q = chunk_owner[c]
                self.src_pos[sel] = starts[q] + np.searchsorted(groups[q], src_g[sel])
        self.dst = local.full_dst_local  # destinations (owned rows), shared with the local graph
        self._streamed = None

    def _connect(self, comm: Comm, local: LocalGraph, groups: list[np.ndarray], category: str):
        """Given the halo ``groups`` (global ids by owner rank, sorted within):
        tell the owners which of their rows we need and get the rows' global
        in-degrees back (GCN normalisation needs them). Returns the owned
        ids' sort (order, sorted ids)."""
        n = local.num_owned
        own_gid = local.global_id[:n]
        order = np.argsort(own_gid)
        own_sorted = own_gid[order]
        self.comm, self.num_owned = comm, n
        self.recv_splits = [len(g) for g in groups]
        self.halo_gid = np.concatenate(groups)
        self.num_halo = len(self.halo_gid)
        req, self.send_splits = comm.alltoallv(torch.from_numpy(self.halo_gid), self.recv_splits, category)
        self.send_idx = torch.from_numpy(order[np.searchsorted(own_sorted, req.numpy())])
        deg_rows, _ = comm.alltoallv(torch.from_numpy(local.global_in_degree[:n][self.send_idx.numpy()]),
                                     self.send_splits, category)
        self.in_degree = torch.from_numpy(np.concatenate([local.global_in_degree[:n], deg_rows.numpy()]))
        self._edge_index = None
        return order, own_sorted

    @classmethod
    def from_shards(cls, comm: Comm, local: LocalGraph, chunk_owner: np.ndarray, category: str,
                    reader: ShardRows) -> HaloPlan:
        """The same plan for a local graph that does not hold its in-edges
        (``load_chunk_set(..., hold_in_edges=False)``): one pass over the set's
        shards finds the remote sources; ``edge_chunks`` streams the in-edges
        again when the evaluator builds its blocks. Held: a flag and a row
        position per node of the graph (5 B x N), never the edges."""
        self = cls.__new__(cls)
        member = chunk_mask(len(chunk_owner), local.chunks)
        need = np.zeros(reader.m["num_nodes"], bool)
        for src_g, src_c in in_edge_blocks(reader, local.chunks, ("src_global", "src_chunk")):
            need[src_g[~member[src_c]]] = True
        halo = np.flatnonzero(need)
        del need
        owner = chunk_owner[np.asarray(reader.node_chunk[halo])]
        by_owner = np.argsort(owner, kind="stable")  # sorted ids stay sorted within each owner
        bounds = np.searchsorted(owner[by_owner], np.arange(comm.size + 1))
        self._connect(comm, local, [halo[by_owner[bounds[q]:bounds[q + 1]]] for q in range(comm.size)], category)
        self.src_pos = self.dst = None
        self._streamed = (reader, list(local.chunks), local.global_id[:local.num_owned])
        return self

    def edge_chunks(self):
        """(source row in [own; halo], owned destination row) arrays, in
        destination order: the plan's arrays, or the shards streamed."""
        if self._streamed is None:
            if self.src_pos is None:
                raise RuntimeError("HaloPlan.edge_chunks after drop_edges(): the per-edge arrays are freed")
            by_dst = bool(np.all(self.dst[1:] >= self.dst[:-1]))  # the shards store in-edges by destination
            src, dst = (self.src_pos, self.dst) if by_dst else _by_destination(self.src_pos, self.dst)
            for lo in range(0, len(dst), EDGE_BLOCK):  # chunks: the consumer's temporaries stay chunk-sized
                yield src[lo:lo + EDGE_BLOCK], dst[lo:lo + EDGE_BLOCK]
            return
        reader, chunks, own_gid = self._streamed
        pos = np.zeros(reader.m["num_nodes"], index_dtype(self.num_nodes))  # global id -> row in [own; halo]
        pos[own_gid] = np.arange(self.num_owned)
        pos[self.halo_gid] = self.num_owned + np.arange(self.num_halo)
        for dst, src_g in in_edge_blocks(reader, chunks, ("dst_local", "src_global")):
            yield pos[src_g], dst

    def drop_edges(self) -> None:
        """Free the per-edge arrays (a streamed evaluation's blocks hold what it needs)."""
        self.src_pos = self.dst = self._edge_index = None

    @property
    def edge_index(self) -> torch.Tensor:
        """[2, E] int64 (source row in [own; halo], owned destination); built
        on first use: the streamed evaluation never needs it."""
        if self._edge_index is None:
            if self.src_pos is None:
                raise RuntimeError("HaloPlan.edge_index after drop_edges(): the per-edge arrays are freed")
            self._edge_index = torch.from_numpy(np.stack([self.src_pos.astype(np.int64), self.dst]))
        return self._edge_index

    @property
    def num_nodes(self) -> int:
        return self.num_owned + self.num_halo

    @property
    def rows_sent(self) -> int:
        """Rows this rank sends to other ranks per exchange."""
        return int(sum(self.send_splits) - self.send_splits[self.comm.rank])

    def fetch(self, h_own: torch.Tensor, category: str) -> torch.Tensor:
        """[h_own; halo rows], without gradient."""
        return torch.cat([h_own, self.start_fetch(h_own, category).wait()])

    def exchange(self, h_own: torch.Tensor, category: str, grad_category: str,
                 link: Link | None = None, grad_link: Link | None = None) -> torch.Tensor:
        """[h_own; halo rows]; if ``h_own`` needs a gradient, the backward pass
        returns the halo rows' gradients to their owners (``grad_category``)."""
        return self.attach(h_own, self.start_fetch(h_own.detach(), category, link), grad_category, grad_link)

    def start_fetch(self, h_own: torch.Tensor, category: str, link: Link | None = None) -> Pending:
        """Send the rows other ranks need; ``wait()`` gives the halo rows."""
        return self._send(h_own[self.send_idx], self.send_splits, self.recv_splits, category, link)

    def attach(self, h_own: torch.Tensor, halo: Pending, grad_category: str, grad_link: Link | None = None):
        """[h_own; halo.wait()], differentiable like ``exchange``."""
        return _Exchange.apply(h_own, self, halo, grad_category, grad_link)

    def _send(self, rows, out_splits, in_splits, category, link: Link | None) -> Pending:
        if link is None:
            return self.comm.ialltoallv(rows, out_splits, in_splits, category)
        return link.send(self.comm, rows, category)


def _by_destination(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(dst, kind="stable")
    return src[order], dst[order]


class _Exchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_own, plan: HaloPlan, halo: Pending, grad_category: str, grad_link: Link | None):
        ctx.plan, ctx.grad_category, ctx.grad_link = plan, grad_category, grad_link
        return torch.cat([h_own.detach(), halo.wait()])

    @staticmethod
    def backward(ctx, grad):
        plan = ctx.plan
        n = plan.num_owned
        back = plan._send(grad[n:].contiguous(), plan.recv_splits, plan.send_splits, ctx.grad_category,
                          ctx.grad_link).wait()
        g_own = grad[:n].clone()
        g_own.index_add_(0, plan.send_idx, back)
        return g_own, None, None, None, None
