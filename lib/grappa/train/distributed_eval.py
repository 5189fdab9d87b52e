"""Exact, distributed, layer-wise full-neighbour evaluation.

Each rank evaluates the nodes it currently owns. Per layer it fetches, from
their owners, the rows of in-neighbours that live on other ranks (a
``HaloPlan`` exchange, counted as ``eval`` bytes: never training bytes),
then applies the layer to [own rows; fetched rows]. GCN normalisation uses
the *global* in-degrees from the shards, so the result equals centralized
full-graph inference.
"""
from __future__ import annotations

import numpy as np
import torch

from grappa.graph.raw import SPLIT_TEST, SPLIT_VAL
from grappa.models import LayerwiseGNN
from grappa.train.evaluate import auc_inputs, roc_auc
from grappa.train.halo_exchange import HaloPlan


class DistributedEvaluator:
    def __init__(self, plan: HaloPlan, x_own: torch.Tensor, category: str = "eval"):
        self.plan, self.x, self.category = plan, x_own, category
        self._x_full = None
        self._graph = None  # the model's prepared structure over the plan's edges

    def input_rows(self) -> torch.Tensor:
        """Layer-0 input: the features never change while ownership holds, so
        the remote rows are fetched once, not at every evaluation."""
        if self._x_full is None:
            self._x_full = self.plan.fetch(self.x, self.category)
        return self._x_full

    @torch.no_grad()
    def logits(self, model) -> torch.Tensor:
        """Eval-mode outputs of the owned nodes."""
        model.eval()
        if not isinstance(model, LayerwiseGNN):
            raise TypeError("distributed evaluation needs a LayerwiseGNN (layer(i, x, edge_index, w))")
        p = self.plan
        # Only the owned rows are needed: models that can, compute those alone (not the halo's).
        kw = {"targets": p.num_owned} if model.computes_targets_only else {}
        if self._graph is None or self._graph[0] is not model:
            build = model.graph_targets if kw else model.graph_global
            self._graph = (model, build(p.edge_index, p.num_nodes, p.in_degree, p.num_owned))
        g = self._graph[1]
        h = model.layer(0, self.input_rows(), *g, **kw)[: p.num_owned]
        for i in range(1, model.num_layers):
            h = model.layer(i, p.fetch(h, self.category), *g, **kw)[: p.num_owned]
        return h

    def metrics(self, model, y_own: torch.Tensor, split_own: np.ndarray, metric: str) -> tuple[float, float]:
        """(validation, test) ``metric`` over the whole graph, every rank the same."""
        return self.scores(self.logits(model), y_own, split_own, metric)

    def scores(self, logits, y_own: torch.Tensor, split_own: np.ndarray, metric: str) -> tuple[float, float]:
        """(validation, test) ``metric`` of the owned nodes' ``logits``, combined over ranks."""
        comm = self.plan.comm
        if metric == "roc_auc":  # AUC is not a sum: gather the scores (one column for two classes)
            res = []
            for code in (SPLIT_VAL, SPLIT_TEST):
                idx = torch.from_numpy(np.flatnonzero(split_own == code))
                s, t = auc_inputs(logits[idx], y_own[idx])
                res.append(roc_auc(comm.allgather(s, self.category), comm.allgather(t, self.category)))
            return res[0], res[1]
        stats = []
        for code in (SPLIT_VAL, SPLIT_TEST):
            idx = torch.from_numpy(np.flatnonzero(split_own == code))
            stats += [float((logits[idx].argmax(1) == y_own[idx]).sum()), float(len(idx))]
        tot = comm.allreduce(torch.tensor(stats, dtype=torch.float64), category=self.category)
        return float(tot[0] / max(tot[1], 1)), float(tot[2] / max(tot[3], 1))
