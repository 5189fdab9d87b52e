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
from dataclasses import dataclass, field

import numpy as np
import torch

from grappa.errors import check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import LayerwiseGNN, graph_args, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.shards.assemble import ShardRows, load_chunk_set
from grappa.shards.schedule import SCHEDULES, chunk_sets, owner_of_chunks
from grappa.train.batches import batch_seeds, epoch_order, seed_torch
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.gradients import GradientStep
from grappa.train.halo_exchange import HaloPlan
from grappa.train.loop import StopRequested
from grappa.train.method import Method

WEIGHTINGS = ("uniform", "coverage", "shrinkage", "node")


@dataclass
class GrappaOptions:
    """Grappa: chunk-set schedule, repartition period, gradient weighting."""

    schedule: str = field(default="sweep", metadata={"help": "chunk sets per super-epoch", "choices": SCHEDULES})
    repartition_every: int = field(default=50, metadata={"help": "epochs per super-epoch (0 = never repartition)"})
    # node: measured best in every case (docs/BENCHMARKS.md)
    weighting: str = field(default="node", metadata={"help": "gradient aggregation weights", "choices": WEIGHTINGS})
    shrinkage_lambda: float = field(default=0.5, metadata={"help": "shrinkage weighting: pull toward equal, in [0, 1]"})
    # -1 = --layers: every training node's output exact (docs/BENCHMARKS.md, issue 13 item 2)
    halo_hops: int = field(default=-1, metadata={"help": "read the training nodes' h-hop halo from the shards at "
                                                         "repartition (file I/O, no network); -1: --layers (exact), "
                                                         "0: isolated chunk sets"})
    # off: --batch-size is the global batch, so the ranks take centralized's step count (BENCHMARKS.md)
    per_rank_batch: bool = field(default=False, metadata={
        "help": "--batch-size seeds per rank per step; default: per step across all ranks, each rank taking "
                "its share, so an epoch has the steps of a one-process run"})
    halo_budget_mb: float = field(default=512.0, metadata={"help": "per rank: a halo hop that would hold more is "
                                                                   "not read (large graphs fall back to isolation)"})

    def __post_init__(self):
        check_options(self, (("--repartition-every", self.repartition_every >= 0, "0 (never) or more"),
                             ("--halo-hops", self.halo_hops >= -1, "-1 (--layers), 0 or more"),
                             ("--halo-budget-mb", self.halo_budget_mb >= 0, "0 or more"),
                             ("--shrinkage-lambda", 0.0 <= self.shrinkage_lambda <= 1.0, "in [0, 1]")))


class GrappaMethod(Method):
    """Gradient-only training on random chunk sets, repartitioned at checkpoint barriers.

    Args (``GrappaOptions``):
        schedule (str): ``sweep`` | ``shuffle`` | ``fixed`` (default ``sweep``).
        repartition_every (int): epochs per super-epoch; 0 = never (default 50).
        weighting (str): ``uniform`` | ``coverage`` | ``shrinkage`` | ``node`` (default ``node``).
        shrinkage_lambda (float): for ``shrinkage`` (default 0.5).
        halo_hops (int): h >= 1 reads the training nodes' h-hop halo from the
            shards: in-edges up to hop h - 1, features up to hop h; -1 = the
            model's layers, which makes every training node's output exact;
            0 = isolated chunk sets (default -1).
        per_rank_batch (bool): ``--batch-size`` per rank; otherwise it is the
            global batch, split over the ranks by their training nodes (default False).
        halo_budget_mb (float): per rank, the most the halo may hold; a hop
            past it is not read (default 512).
    """

    name, label, Options = "grappa", "grappa", GrappaOptions
    # the benchmark runs its defaults (a method is compared as users run it): node weights, the sweep
    # schedule repartitioned every 50 epochs, the --layers-hop halo within --halo-budget-mb ("--halo-hops 0"
    # isolates the chunk sets as the Grappa paper does, docs/BENCHMARKS.md). The ablations change one of them.
    bench_family = "grappa"
    fault_flags = ("--repartition-every", "4")  # a boundary within the campaign's short runs
    has_repartition_phase = True
    partition = "random"
    categories = ("train_grad",)

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        self.dir, self.manifest = data.directory, data.manifest
        manifest = self.manifest
        self.k, self.task = manifest["num_chunks"], manifest["task"]
        if self.k < comm.size:
            raise ValueError(f"{self.k} chunks cannot feed {comm.size} ranks: re-partition with K >= P")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = GradientStep(comm, optimizer, self.params, stop_flag)
        self.super_epoch = None
        self.switch_times: list[float] = []
        self.halo_hops_read: list[float] = []  # per load: the mean over ranks of the hops within the budget
        self.shard_bytes_read = 0.0  # mean over ranks, all loads

    # ------------------------------------------------------------ super-epochs
    @property
    def repartitions(self) -> bool:
        return self.opts.repartition_every > 0 and self.opts.schedule != "fixed"

    def super_epoch_of(self, epoch: int) -> int:
        return epoch // self.opts.repartition_every if self.repartitions else 0

    def is_boundary(self, epoch: int) -> bool:
        """True when ``epoch`` starts a new super-epoch (checkpoint, then repartition)."""
        return epoch > 0 and self.super_epoch_of(epoch) != self.super_epoch_of(epoch - 1)

    # Hooks a configuration fills (grappa_authors.py): sets, halo, seeds, coverage, batches.
    def chunk_sets_of(self, super_epoch: int) -> list[list[int]]:
        return chunk_sets(self.opts.schedule, self.k, self.comm.size, super_epoch, self.cfg.seed)

    @property
    def halo_hops(self) -> int:
        return self.cfg.layers if self.opts.halo_hops < 0 else self.opts.halo_hops

    @property
    def per_rank_batch(self) -> bool:
        return self.opts.per_rank_batch

    @property
    def halo_budget_bytes(self) -> float:
        return self.opts.halo_budget_mb * 2**20

    def seed_nodes(self, lg) -> np.ndarray:
        return np.flatnonzero(lg.split == SPLIT_TRAIN)

    def coverage_of(self, lg) -> np.ndarray:
        return lg.coverage

    def load_super_epoch(self, epoch: int) -> None:
        s = self.super_epoch_of(epoch)
        if s == self.super_epoch:
            return
        with self.phases.phase("repartition"):
            self._load_sets(s)

    def _load_sets(self, s: int) -> None:
        t0 = time.perf_counter()
        self.comm.barrier()
        self.sets = self.chunk_sets_of(s)
        # A streaming evaluator re-reads the in-edges from the shards: an isolated set need not hold them.
        self.local = lg = load_chunk_set(self.dir, self.sets[self.comm.rank], self.halo_hops, self.halo_budget_bytes,
                                         hold_in_edges=not getattr(self.model, "streams", False))
        self.train_nodes, self.coverage = self.seed_nodes(lg), self.coverage_of(lg)
        self.comm.fault_point("repartition")
        cov = self.coverage[self.train_nodes]
        # Scalars, once per super-epoch: mean coverage over ranks (shrinkage) and steps per epoch.
        stats = torch.tensor([cov.mean() if len(cov) else 0.0, float(len(cov) > 0), lg.halo_hops, lg.bytes_read,
                              len(cov)], dtype=torch.float64)
        tot = self.comm.allreduce(stats, category="control")
        self.mean_c = float(tot[0] / max(float(tot[1]), 1.0))
        self.halo_hops_read.append(float(tot[2]) / self.comm.size)
        self.shard_bytes_read += float(tot[3]) / self.comm.size
        self.steps, self.rank_batch = self.steps_and_batch(int(tot[4]))
        bs = self.cfg.batch_size
        self.sampler = NeighborSampler(lg.csr, self.cfg.fanouts[: self.cfg.layers], 0) if bs else None
        self.graph = None
        if not bs and lg.halo_hops and isinstance(self.model, LayerwiseGNN):
            # The first num_complete nodes have all their in-edges: normalise with the true (global) degrees.
            self.graph = self.model.graph_global(lg.edge_index, len(lg.global_id),
                                                 torch.from_numpy(lg.global_in_degree), lg.num_complete)
        elif not bs:
            self.graph = graph_args(self.model, lg.edge_index, len(lg.global_id))
        self.evaluator = None  # rebuilt lazily: ownership changed
        self.super_epoch = s
        self.switch_times.append(time.perf_counter() - t0)

    # ------------------------------------------------------------ steps
    def steps_and_batch(self, total_seeds: int) -> tuple[int, int]:
        """Steps per epoch (equal on every rank) and this rank's seeds per step."""
        bs, mine = self.cfg.batch_size, len(self.train_nodes)
        if not bs:
            return 1, mine
        if self.per_rank_batch:
            return max(int(self.comm.allreduce_object_max(-(-mine // bs))), 1), bs
        steps = max(-(-total_seeds // bs), 1)  # a one-process run's steps; each rank its share of every batch
        return steps, max(-(-mine // steps), 1)

    def _batch_weight(self, seeds: np.ndarray) -> float:
        if len(seeds) == 0:
            return 0.0
        c = float(self.coverage[seeds].mean())
        w = self.opts.weighting
        if w == "uniform":
            return 1.0
        if w == "coverage":
            return c
        if w == "shrinkage":
            lam = self.opts.shrinkage_lambda
            return (1 - lam) * c + lam * self.mean_c
        return float(self.coverage[seeds].sum())  # node: sum of a_v, loss is the a_v-weighted mean

    def node_weights(self, seeds: np.ndarray) -> torch.Tensor | None:
        """Per-seed loss weights (``node`` weighting: a_v), or None for the plain mean."""
        return torch.from_numpy(self.coverage[seeds]).float() if self.opts.weighting == "node" else None

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
            out = sampled_forward(self.model, lg.x.index_select(0, nodes), sub)  # index_select: 4x x[nodes]
            y = lg.y[nodes[: sub.num_seeds]]
        loss = loss_fn(self.task, out, y, self.node_weights(seeds))
        loss.backward()
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return loss.item(), self._batch_weight(seeds)

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        return batch_seeds(order, self.rank_batch, step)  # ranks with fewer seeds wrap around

    def combine_gradients(self, w: float) -> bool:
        """One allreduce of [w * grad, w, stop]; G = sum w_p grad_p / sum w_p (zero when no rank had a weight)."""
        return self.step([w], scale=w, divide_by=lambda sums: sums[0])[1]

    def train_epoch(self, epoch: int) -> float:
        self.load_super_epoch(epoch)
        self.model.train()
        rank, seed = self.comm.rank, self.cfg.seed
        if self.sampler is None:
            order = self.train_nodes
        else:
            order = epoch_order(self.train_nodes, seed, epoch, rank)
        losses = []
        start, self.start_step = self.start_step, 0
        for step in range(start, self.steps):
            seed_torch(seed, epoch, rank, step)
            if self.sampler is not None:
                self.sampler.rng = np.random.default_rng([seed, epoch, rank, step, 2])
                seeds = self.batch(order, step)
            else:
                seeds = order
            loss, w = self._local_grad(seeds)
            losses.append(loss)
            if self.combine_gradients(w):
                if step + 1 < self.steps:
                    raise StopRequested(epoch, step + 1)
                self.stop_pending = True
        mean = torch.tensor([float(np.mean(losses)) if losses else 0.0], dtype=torch.float64)
        return float(self.comm.allreduce(mean, category="control")[0]) / self.comm.size

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> tuple[float, float]:
        if self.evaluator is None:
            self.evaluator = self._evaluator()
        lg = self.local
        return self.evaluator.metrics(self.model, lg.y[: lg.num_owned], lg.split, self.cfg.metric)

    def _evaluator(self) -> DistributedEvaluator:
        owner, lg = owner_of_chunks(self.sets, self.k), self.local
        if lg.full_src_global is None:  # the in-edges are not held: the plan streams them from the shards
            plan = HaloPlan.from_shards(self.comm, lg, owner, "eval", ShardRows(self.dir, self.manifest))
            return DistributedEvaluator(plan, lg.x[: lg.num_owned])
        plan = HaloPlan(self.comm, lg, owner, "eval")

        def release():  # training never reads the in-edges again while this ownership holds
            plan.drop_edges()
            lg.drop_in_edges()

        return DistributedEvaluator(plan, lg.x[: lg.num_owned], release=release)

    def result_extra(self) -> dict:
        o = self.opts
        return dict(weighting=o.weighting, schedule=o.schedule, repartition_every=o.repartition_every,
                    switch_time_s_total=sum(self.switch_times), halo_hops=self.halo_hops,
                    halo_hops_read=self.halo_hops_read, shard_bytes_read_per_rank=self.shard_bytes_read)


    @classmethod
    def bench_lines(cls, summary: dict, metric: str, predicted: dict) -> list[str]:
        """Grappa against the halo exchange: measured and predicted bytes, epoch times."""
        from grappa.train.methods.halo_method import HaloMethod

        if cls is not GrappaMethod or cls.label not in summary or HaloMethod.label not in summary:
            return []
        g, h = summary[cls.label], summary[HaloMethod.label]
        kb = lambda b: f"{b / 1e3:,.1f} kB"  # noqa: E731
        p = predicted
        lines = [f"- Training bytes per rank per epoch, halo / grappa: measured **"
                 f"{h['train_bytes_per_rank_per_epoch'] / g['train_bytes_per_rank_per_epoch']:,.0f}x** "
                 f"({kb(h['train_bytes_per_rank_per_epoch'])} vs {kb(g['train_bytes_per_rank_per_epoch'])}); "
                 f"analytical **{p['halo_over_grappa']:,.0f}x** ({kb(p['halo_bytes_per_rank_per_epoch'])} vs "
                 f"{kb(p['grappa_bytes_per_rank_per_epoch'])}): gradients of {p['params']:,} parameters against "
                 f"{p['boundary_rows_per_rank']:,.0f} boundary rows per rank x layer input widths "
                 f"{p['layer_input_dims']} (forward) and {p['layer_input_dims'][1:]} (backward).",
                 f"- Epoch time, grappa / halo: {g['epoch_time_s_median'] / h['epoch_time_s_median']:.2f} "
                 "(same invocation)."]
        if "centralized" in summary:
            lines.append(f"- Epoch time, grappa / centralized: "
                         f"{g['epoch_time_s_median'] / summary['centralized']['epoch_time_s_median']:.2f}.")
        return lines


class GrappaUW(GrappaMethod):
    """Ablation UW: uniform weights (no coverage correction)."""

    name, label, defaults = "grappa-uw", "UW (uniform weights)", {"weighting": "uniform"}


class GrappaFP(GrappaMethod):
    """Ablation FP: fixed partitions (never repartition)."""

    name, label, defaults = "grappa-fp", "FP (fixed partitions)", {"schedule": "fixed"}


__all__ = ["GrappaMethod", "GrappaUW", "GrappaFP", "GrappaOptions", "StopRequested", "WEIGHTINGS"]
