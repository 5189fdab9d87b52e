"""Exact, distributed, layer-wise full-neighbour evaluation.

Each rank evaluates the nodes it currently owns (its chunk set). Per layer it
fetches, from their owners, the rows of in-neighbours that live in other
chunk sets (alltoallv, counted as ``eval`` bytes: never training bytes),
then applies the layer to [own rows; fetched rows]. GCN normalisation uses
the *global* in-degrees from the shards, so the result equals centralized
full-graph inference.
"""
from __future__ import annotations

import numpy as np
import torch

from grappa.comm import Comm
from grappa.models import LayerwiseGNN
from grappa.partition.schedule import owner_of_chunks
from grappa.shards.assemble import LocalGraph


class DistributedEvaluator:
    def __init__(self, comm: Comm, local: LocalGraph, sets: list[list[int]], num_chunks: int):
        self.comm = comm
        n = local.num_owned
        own_gid = local.global_id[:n]
        order = np.argsort(own_gid)
        inside = np.isin(local.full_src_chunk, np.asarray(local.chunks))
        owner = owner_of_chunks(sets, num_chunks)
        # Remote sources, grouped by owner rank (the order rows will arrive in).
        rsrc = local.full_src_global[~inside]
        uniq, first = np.unique(rsrc, return_index=True)
        uowner = owner[local.full_src_chunk[~inside][first]]
        by_owner = np.lexsort((uniq, uowner))
        self.halo_gid, halo_owner = uniq[by_owner], uowner[by_owner]
        self.recv_splits = np.bincount(halo_owner, minlength=comm.size).tolist()
        # Tell owners which of their rows we need (ids as int64).
        req, self.send_splits = comm.alltoallv(torch.from_numpy(self.halo_gid), self.recv_splits, "eval")
        req = req.numpy()
        self.send_idx = torch.from_numpy(order[np.searchsorted(own_gid[order], req)])
        # Their global in-degrees come back once (GCN normalisation needs them).
        deg_rows, _ = comm.alltoallv(torch.from_numpy(local.global_in_degree[:n][self.send_idx.numpy()]),
                                     self.send_splits, "eval")
        # halo_gid is sorted only within each owner's group: look up through a full sort.
        by_gid = np.argsort(self.halo_gid)
        halo_pos = by_gid[np.searchsorted(self.halo_gid[by_gid], rsrc)]
        src = np.empty(len(local.full_src_global), np.int64)
        src[inside] = order[np.searchsorted(own_gid[order], local.full_src_global[inside])]
        src[~inside] = n + halo_pos
        self.n = n
        self.edge_index = torch.from_numpy(np.stack([src, local.full_dst_local]))
        self.in_degree = torch.from_numpy(np.concatenate([local.global_in_degree[:n], deg_rows.numpy()]))
        self.x = local.x[:n]
        self._x_full = None

    def fetch(self, h_own: torch.Tensor) -> torch.Tensor:
        rows, _ = self.comm.alltoallv(h_own[self.send_idx], self.send_splits, "eval")
        return torch.cat([h_own, rows])

    def input_rows(self) -> torch.Tensor:
        """Layer-0 input: the features never change within a super-epoch, so
        the remote rows are fetched once, not at every evaluation."""
        if self._x_full is None:
            self._x_full = self.fetch(self.x)
        return self._x_full

    @torch.no_grad()
    def logits(self, model) -> torch.Tensor:
        model.eval()
        if not isinstance(model, LayerwiseGNN):
            raise TypeError("distributed evaluation needs a LayerwiseGNN (layer(i, x, edge_index, w))")
        ei, w = model.prepare_global(self.edge_index, self.n + len(self.halo_gid), self.in_degree, self.n)
        h = model.layer(0, self.input_rows(), ei, w)[: self.n]
        for i in range(1, model.num_layers):
            h = model.layer(i, self.fetch(h), ei, w)[: self.n]
        return h
