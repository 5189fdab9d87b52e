"""Grappa: gradient-only distributed training (METHODS.md section 1).

Each rank trains on the subgraph induced by its chunk set (cross-set edges
dropped) and the ranks exchange only gradients: one allreduce per step of
[w_p * grad_p, w_p, stop_flag]. Every ``repartition_every`` epochs a new chunk
assignment is loaded (checkpoint and barrier happen in the loop).

Randomness (dropout, seed order, sampling) is derived from
(seed, epoch, rank, step), so a resumed run replays exactly.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from grappa.comm import Comm
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import LayerwiseGNN, graph_args
from grappa.partition.schedule import chunk_sets, owner_of_chunks
from grappa.sampling import NeighborSampler
from grappa.shards.assemble import load_chunk_set
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.halo_exchange import HaloPlan
from grappa.train.loop import StopRequested
from grappa.train.steps import allreduce_gradients, step_seed

WEIGHTINGS = ("uniform", "coverage", "shrinkage", "node")


class GrappaMethod:
    def __init__(self, cfg, comm: Comm, dataset_dir, manifest: dict, model, optimizer, stop_flag=lambda: False):
        if cfg.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {cfg.weighting!r}; choose one of {WEIGHTINGS}")
        self.cfg, self.comm, self.dir, self.model, self.opt = cfg, comm, dataset_dir, model, optimizer
        self.k, self.task = manifest["num_chunks"], manifest["task"]
        if self.k < comm.size:
            raise ValueError(f"{self.k} chunks cannot feed {comm.size} ranks: re-partition with K >= P")
        self.stop_flag = stop_flag
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.super_epoch = None
        self.switch_times: list[float] = []
        self.start_step = 0  # set by the loop when resuming mid-epoch
        self.stop_pending = False  # a stop arrived on an epoch's last step: finish the epoch first

    # ------------------------------------------------------------ super-epochs
    def super_epoch_of(self, epoch: int) -> int:
        r = self.cfg.repartition_every
        return 0 if r <= 0 or self.cfg.schedule == "fixed" else epoch // r

    def is_boundary(self, epoch: int) -> bool:
        """True when ``epoch`` starts a new super-epoch (a repartition follows)."""
        return epoch > 0 and self.super_epoch_of(epoch) != self.super_epoch_of(epoch - 1)

    def load_super_epoch(self, epoch: int) -> None:
        s = self.super_epoch_of(epoch)
        if s == self.super_epoch:
            return
        t0 = time.perf_counter()
        self.comm.barrier()
        self.sets = chunk_sets(self.cfg.schedule, self.k, self.comm.size, s, self.cfg.seed)
        self.local = load_chunk_set(self.dir, self.sets[self.comm.rank], halo=self.cfg.halo_hops > 0)
        lg = self.local
        self.train_nodes = np.flatnonzero(lg.split == SPLIT_TRAIN)
        cov = lg.coverage[self.train_nodes]
        # Scalars, once per super-epoch: mean coverage over ranks (shrinkage) and steps per epoch.
        stats = torch.tensor([cov.mean() if len(cov) else 0.0, float(len(cov) > 0)], dtype=torch.float64)
        tot = self.comm.allreduce(stats, category="control")
        self.mean_c = float(tot[0] / max(float(tot[1]), 1.0))
        bs = self.cfg.batch_size
        self.steps = 1 if not bs else int(self.comm.allreduce_object_max(-(-len(self.train_nodes) // bs)))
        self.steps = max(self.steps, 1)
        self.sampler = NeighborSampler(lg.csr, self.cfg.fanouts[: self.cfg.layers], 0) if bs else None
        self.graph = None
        if not bs and self.cfg.halo_hops and isinstance(self.model, LayerwiseGNN):
            # Owned nodes have all their in-edges: normalise with the true (global) degrees.
            self.graph = self.model.graph_global(lg.edge_index, len(lg.global_id),
                                                 torch.from_numpy(lg.global_in_degree), lg.num_owned)
        elif not bs:
            self.graph = graph_args(self.model, lg.edge_index, len(lg.global_id))
        self.evaluator = None  # rebuilt lazily: ownership changed
        self.super_epoch = s
        self.switch_times.append(time.perf_counter() - t0)

    # ------------------------------------------------------------ steps
    def _batch_weight(self, seeds: np.ndarray) -> float:
        if len(seeds) == 0:
            return 0.0
        c = float(self.local.coverage[seeds].mean())
        w = self.cfg.weighting
        if w == "uniform":
            return 1.0
        if w == "coverage":
            return c
        if w == "shrinkage":
            lam = self.cfg.shrinkage_lambda
            return (1 - lam) * c + lam * self.mean_c
        return float(self.local.coverage[seeds].sum())  # node: sum of a_v, loss is the a_v-weighted mean

    def _local_grad(self, seeds: np.ndarray) -> tuple[float, float]:
        lg = self.local
        self.opt.zero_grad(set_to_none=False)
        if len(seeds) == 0:
            for p in self.params:
                p.grad = torch.zeros_like(p)
            return 0.0, 0.0
        if self.sampler is None:
            out = self.model(lg.x, *self.graph)[torch.from_numpy(seeds)]
            y = lg.y[torch.from_numpy(seeds)]
        else:
            sub = self.sampler.sample(seeds)
            nodes = torch.from_numpy(sub.nodes)
            out = self.model(lg.x[nodes], sub.edge_index)[: sub.num_seeds]
            y = lg.y[nodes[: sub.num_seeds]]
        node_w = torch.from_numpy(lg.coverage[seeds]).float() if self.cfg.weighting == "node" else None
        loss = loss_fn(self.task, out, y, node_w)
        loss.backward()
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return loss.item(), self._batch_weight(seeds)

    def _combine(self, w: float) -> bool:
        """One allreduce of [w * grad, w, stop]; sets G = sum w_p grad_p / sum w_p."""
        total_w, stop = allreduce_gradients(self.comm, self.params, [w, 1.0 if self.stop_flag() else 0.0], w).tolist()
        for p in self.params:
            if total_w > 0:
                p.grad.div_(total_w)
            else:
                p.grad.zero_()
        self.opt.step()
        return stop > 0

    def train_epoch(self, epoch: int) -> float:
        self.load_super_epoch(epoch)
        self.model.train()
        rank, seed = self.comm.rank, self.cfg.seed
        if self.sampler is None:
            order = self.train_nodes
        else:
            order = np.random.default_rng([seed, epoch, rank, 1]).permutation(self.train_nodes)
        bs = self.cfg.batch_size or max(len(order), 1)
        losses = []
        start, self.start_step = self.start_step, 0
        for step in range(start, self.steps):
            torch.manual_seed(step_seed(seed, epoch, rank, step))
            if self.sampler is not None:
                self.sampler.rng = np.random.default_rng([seed, epoch, rank, step, 2])
                lo = (step * bs) % max(len(order), 1)  # ranks with fewer seeds wrap around
                seeds = np.take(order, np.arange(lo, lo + bs), mode="wrap") if len(order) else order
                seeds = seeds[: min(bs, len(order))]
            else:
                seeds = order
            loss, w = self._local_grad(seeds)
            losses.append(loss)
            if self._combine(w):
                if step + 1 < self.steps:
                    raise StopRequested(epoch, step + 1)
                self.stop_pending = True
        mean = torch.tensor([float(np.mean(losses)) if losses else 0.0], dtype=torch.float64)
        return float(self.comm.allreduce(mean, category="control")[0]) / self.comm.size

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> tuple[float, float]:
        if self.evaluator is None:
            owner = owner_of_chunks(self.sets, self.k)
            plan = HaloPlan(self.comm, self.local, owner, "eval")
            self.evaluator = DistributedEvaluator(plan, self.local.x[: self.local.num_owned])
        lg = self.local
        return self.evaluator.metrics(self.model, lg.y[: lg.num_owned], lg.split, self.task)


__all__ = ["GrappaMethod", "StopRequested", "WEIGHTINGS"]
