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
"""
from __future__ import annotations

import numpy as np
import torch

from grappa.comm import Comm
from grappa.shards.assemble import LocalGraph


class HaloPlan:
    def __init__(self, comm: Comm, local: LocalGraph, chunk_owner: np.ndarray, category: str):
        """``chunk_owner[c]`` is the rank that owns chunk c; the setup messages
        (ids wanted, their global in-degrees) are counted as ``category``."""
        self.comm = comm
        n = local.num_owned
        own_gid = local.global_id[:n]
        order = np.argsort(own_gid)
        inside = np.isin(local.full_src_chunk, np.asarray(local.chunks))
        # Remote sources, grouped by owner rank (the order their rows arrive in).
        rsrc = local.full_src_global[~inside]
        uniq, first = np.unique(rsrc, return_index=True)
        uowner = chunk_owner[local.full_src_chunk[~inside][first]]
        by_owner = np.lexsort((uniq, uowner))
        self.halo_gid, halo_owner = uniq[by_owner], uowner[by_owner]
        self.recv_splits = np.bincount(halo_owner, minlength=comm.size).tolist()
        # Tell the owners which of their rows we need (ids as int64).
        req, self.send_splits = comm.alltoallv(torch.from_numpy(self.halo_gid), self.recv_splits, category)
        self.send_idx = torch.from_numpy(order[np.searchsorted(own_gid[order], req.numpy())])
        # Their global in-degrees come back once (GCN normalisation needs them).
        deg_rows, _ = comm.alltoallv(torch.from_numpy(local.global_in_degree[:n][self.send_idx.numpy()]),
                                     self.send_splits, category)
        # halo_gid is sorted only within each owner's group: look up through a full sort.
        by_gid = np.argsort(self.halo_gid)
        halo_pos = by_gid[np.searchsorted(self.halo_gid[by_gid], rsrc)]
        src = np.empty(len(local.full_src_global), np.int64)
        src[inside] = order[np.searchsorted(own_gid[order], local.full_src_global[inside])]
        src[~inside] = n + halo_pos
        self.num_owned = n
        self.num_halo = len(self.halo_gid)
        self.edge_index = torch.from_numpy(np.stack([src, local.full_dst_local]))
        self.in_degree = torch.from_numpy(np.concatenate([local.global_in_degree[:n], deg_rows.numpy()]))

    @property
    def num_nodes(self) -> int:
        return self.num_owned + self.num_halo

    @property
    def rows_sent(self) -> int:
        """Rows this rank sends to other ranks per exchange."""
        return int(sum(self.send_splits) - self.send_splits[self.comm.rank])

    def fetch(self, h_own: torch.Tensor, category: str) -> torch.Tensor:
        """[h_own; halo rows], without gradient."""
        rows, _ = self.comm.alltoallv(h_own[self.send_idx], self.send_splits, category)
        return torch.cat([h_own, rows])

    def exchange(self, h_own: torch.Tensor, category: str, grad_category: str) -> torch.Tensor:
        """[h_own; halo rows]; if ``h_own`` needs a gradient, the backward pass
        returns the halo rows' gradients to their owners (``grad_category``)."""
        return _Exchange.apply(h_own, self, category, grad_category)


class _Exchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_own, plan: HaloPlan, category: str, grad_category: str):
        ctx.plan, ctx.grad_category = plan, grad_category
        return plan.fetch(h_own.detach(), category)

    @staticmethod
    def backward(ctx, grad):
        plan = ctx.plan
        n = plan.num_owned
        back, _ = plan.comm.alltoallv(grad[n:].contiguous(), plan.recv_splits, ctx.grad_category)
        g_own = grad[:n].clone()
        g_own.index_add_(0, plan.send_idx, back)
        return g_own, None, None, None
