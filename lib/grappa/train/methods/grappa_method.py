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

from grappa.comm.base import MIN
from grappa.errors import InputError, check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.memory import TRIM_AT_PHASE_EDGE, trim_heap
from grappa.models import LayerwiseGNN, graph_args, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.shards.assemble import ShardRows, load_chunk_set
from grappa.shards.halo_groups import HaloGroups
from grappa.shards.schedule import SCHEDULES, chunk_sets, owner_of_chunks
from grappa.train.batches import batch_seeds, epoch_order, seed_torch
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.gradients import GradientStep
from grappa.train.halo_exchange import HaloPlan
from grappa.train.loop import StopRequested, nonfinite
from grappa.train.method import Method

WEIGHTINGS = ("uniform", "coverage", "shrinkage", "node")
NO_GROUPS = 2**62  # a rank's steps per group when it reads no groups
# What a rank reads of its halo: every in-edge (exact); hop 1's and the later hops' drawn at the fan-outs for
# the whole super-epoch (hop1); every hop's drawn so (sampled); each group of steps' seeds' halo drawn at the
# fan-outs before the group (groups, grappa.shards.halo_groups); auto: exact if it fits, else groups.
HALO_MODES = ("auto", "exact", "groups", "hop1", "sampled")
HALO_READ = ("isolated", "exact", "hop1", "sampled", "groups")  # what a load ended with


def partial_halos(mode: str, fanouts: list[int]) -> tuple[tuple[int, ...], ...]:
    """The partial halos a super-epoch's load tries for ``mode``, as per-hop in-edge caps (-1: all)."""
    f = tuple(fanouts)
    return {"hop1": ((-1, *f[1:]),), "sampled": (f,)}.get(mode, ())


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
    halo_budget_mb: float = field(default=512.0, metadata={"help": "per rank: the most the halo may hold; past it, "
                                                                   "mini-batch training reads it a group of steps at "
                                                                   "a time (--halo-mode auto), full-graph training "
                                                                   "reads fewer hops"})
    # auto: groups keep the steps centralized's where the halo does not fit (isolation lost 8 to 14 points on a
    # sparse low-homophily graph); on the 96M-edge graph 2.3-2.5x the isolated epoch, 1.25 GB a rank, where the
    # exact halo would take 1.6x and 5.4 GB (docs/BENCHMARKS.md)
    halo_mode: str = field(default="auto", metadata={
        "help": "what of the halo to read: exact (every in-edge), groups (before each group of steps, its "
                "seeds' halo drawn at the fan-outs, the groups sized to the budget), hop1 (hop 1 exact, later "
                "hops drawn at the fan-outs, once a super-epoch), sampled (every hop drawn so); auto: exact if "
                "it fits, else groups (the default; full-graph training: exact). groups, hop1 and sampled need "
                "--batch-size; exact reads fewer hops past the budget, down to isolated chunk sets",
        "choices": HALO_MODES})

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
        halo_budget_mb (float): per rank, the most the halo may hold (a
            group's halo, with groups); past it ``exact`` reads fewer hops (default 512).
        halo_mode (str): ``exact`` | ``groups`` | ``hop1`` | ``sampled`` |
            ``auto``: in mini-batch mode, where the exact halo does not fit,
            each group of steps reads its seeds' halo drawn at the fan-outs
            (``auto``, ``groups``); ``exact`` reads fewer hops past the budget
            (default ``auto``: exact where it fits, else groups).
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
        self.halo_read: list[dict] = []  # per load: what the ranks read of their halos (``_halo_summary``)
        self.groups: HaloGroups | None = None  # a halo read per group of steps (halo_groups.py)
        self.group_steps = 0  # steps per group, the same on every rank (_agree_group_steps)
        self.group_held = self.group_held_max = 0.0  # the most a group's halo held (this epoch, the run's mean)
        self.groups_over_budget = 0
        self.shard_bytes_read = 0.0  # mean over ranks, all loads

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        mode = getattr(cfg.options, "halo_mode", "auto")
        if mode in ("groups", "hop1", "sampled") and not cfg.batch_size:
            raise InputError("--halo-mode", f"{mode} draws in-edges at the fan-outs, for mini-batch training",
                             "give --batch-size, or use --halo-mode exact")

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
    def halo_mode(self) -> str:
        return self.opts.halo_mode

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

    def halo_plan(self) -> tuple[bool, tuple[tuple[int, ...], ...]]:
        """(try the exact halo, the partial ones to fall back to in order: per-hop in-edge caps, -1 all)."""
        if not self.cfg.batch_size:  # full-graph layers read every in-edge: no partial halo
            return True, ()
        return self.halo_mode in ("auto", "exact"), partial_halos(self.halo_mode, self.cfg.fanouts[: self.cfg.layers])

    def _plan_groups(self, lg, s: int):
        """The isolated set and its ``HaloGroups`` where a mini-batch rank's exact halo does not fit
        (``auto``) or is not wanted (``groups``); else ``lg`` and None."""
        if self.halo_mode not in ("auto", "groups") or not self.cfg.batch_size or lg.halo_hops >= self.halo_hops \
                or np.all(lg.coverage >= 1):
            return lg, None
        if lg.halo_hops:  # part of the exact halo: start again from the isolated set
            del lg
            lg = load_chunk_set(self.dir, self.sets[self.comm.rank], 0, 0, hold_in_edges=not self._streams)
        rng = np.random.default_rng([self.cfg.seed, s, self.comm.rank, 6])
        return lg, HaloGroups.plan(self.dir, lg, self.cfg.fanouts[: self.cfg.layers], self.halo_budget_bytes,
                                   self.seed_nodes(lg), rng)

    @property
    def _streams(self) -> bool:
        # A streaming evaluator re-reads the in-edges from the shards: an isolated set need not hold them.
        return getattr(self.model, "streams", False)

    def _load_sets(self, s: int) -> None:
        t0 = time.perf_counter()
        self.comm.barrier()
        self.sets = self.chunk_sets_of(s)
        whole, partial = self.halo_plan()
        self.local = self.groups = self.evaluator = None  # the previous set goes before the next is read
        lg, self.groups = self._plan_groups(load_chunk_set(
            self.dir, self.sets[self.comm.rank], self.halo_hops, self.halo_budget_bytes,
            hold_in_edges=not self._streams, sampled=partial,
            rng=np.random.default_rng([self.cfg.seed, s, self.comm.rank, 5]), whole=whole), s)
        self.local = lg
        self.train_nodes, self.coverage = self.seed_nodes(lg), self.coverage_of(lg)
        self.comm.fault_point("repartition")
        cov = self.coverage[self.train_nodes]
        # Scalars, once per super-epoch: mean coverage over ranks (shrinkage), steps per epoch, what was read.
        hops = self.halo_hops if self.groups is not None else lg.halo_hops  # groups: each reads every hop
        stats = torch.tensor([cov.mean() if len(cov) else 0.0, float(len(cov) > 0), hops, lg.bytes_read,
                              len(cov), *self._halo_stats(lg)], dtype=torch.float64)
        tot = self.comm.allreduce(stats, category="control")
        self.mean_c = float(tot[0] / max(float(tot[1]), 1.0))
        self.halo_hops_read.append(float(tot[2]) / self.comm.size)
        self.shard_bytes_read += float(tot[3]) / self.comm.size
        self.halo_read.append(self._halo_summary(tot[5:].tolist()))
        self.steps, self.rank_batch = self.steps_and_batch(int(tot[4]))
        bs = self.cfg.batch_size
        if self.halo_mode in ("auto", "groups") and bs:
            self._agree_group_steps()
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

    def _halo_stats(self, lg) -> list[float]:
        """What this rank read: one-hot over HALO_READ, then (nodes, edges, bytes) for each of the halo's hops."""
        kind = 4 if self.groups is not None else 0 if not lg.halo_hops else 1 if lg.halo_caps is None else \
            2 if lg.halo_caps[0] < 0 else 3
        per_hop = (list(lg.halo_read) + [(0, 0, 0)] * self.halo_hops)[: self.halo_hops]
        return [float(kind == i) for i in range(len(HALO_READ))] + [float(v) for hop in per_hop for v in hop]

    def _halo_summary(self, sums: list[float]) -> dict:
        """The ranks' ``_halo_stats`` summed: ranks per kind of halo read, and per hop the mean over ranks."""
        k, p = len(HALO_READ), self.comm.size
        hops = [dict(zip(("nodes", "edges", "bytes"), (v / p for v in sums[i:i + 3]))) for i in range(k, len(sums), 3)]
        return {"ranks": {name: int(c) for name, c in zip(HALO_READ, sums[:k]) if c}, "per_hop_mean": hops}

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
        if not self.cfg.batch_size:
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
        bs = self.cfg.batch_size
        order = epoch_order(self.train_nodes, seed, epoch, rank) if bs else self.train_nodes
        losses, self.group_held = [], 0.0
        start, self.start_step = self.start_step, 0
        for step in range(start, self.steps):
            seed_torch(seed, epoch, rank, step)
            if bs:
                if self.groups is not None and (step == start or step % self.group_steps == 0):
                    self._load_group(order, epoch, step // self.group_steps)
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
        held, read, over = 0.0, 0.0, 0.0
        if self.groups is not None:  # the last group's halo goes, and its sampler (which holds its CSR): the
            # evaluation reads the owned rows only, and the next epoch's first step loads a group
            self.local, self.sampler, self.coverage = self.groups.base, None, self.coverage_of(self.groups.base)
            held, (read, over) = self.group_held, self.groups.take_counts()
        loss = float(np.mean(losses)) if losses else 0.0
        # the divergence check rides on this allreduce (the loop's own would be one more per epoch)
        stats = torch.tensor([loss, held, read, over, float(nonfinite(self.model, loss))], dtype=torch.float64)
        tot = self.comm.allreduce(stats, category="control") / self.comm.size
        self.group_held_max = max(self.group_held_max, float(tot[1]))
        self.shard_bytes_read += float(tot[2])
        self.groups_over_budget += round(float(tot[3]) * self.comm.size)  # all ranks, the whole run
        self.nonfinite_ranks = round(float(tot[4]) * self.comm.size)
        return float(tot[0])

    def _agree_group_steps(self) -> None:
        """Every rank with groups loads its next group at the same steps, the fewest any rank's budget
        allows: a rank reading a group holds the others at the next allreduce, so loads at different
        steps would stall an epoch for the sum of the ranks' loads, not the largest."""
        mine = self.groups.steps_per_group(self.rank_batch) if self.groups is not None else NO_GROUPS
        self.group_steps = int(self.comm.allreduce(torch.tensor([float(mine)], dtype=torch.float64), MIN,
                                                   "control")[0])

    def _load_group(self, order: np.ndarray, epoch: int, g: int) -> None:
        """The local graph for group ``g`` of the epoch's steps: the isolated set and its seeds' halo."""
        k = self.group_steps
        seeds = np.unique(np.concatenate([self.batch(order, s) for s in range(g * k, min((g + 1) * k, self.steps))]))
        self.local = self.sampler = None  # the previous group's halo goes first (the sampler holds its CSR)
        self.local = lg = self.groups.load(seeds, np.random.default_rng([self.cfg.seed, epoch, self.comm.rank, 6, g]))
        self.coverage = self.coverage_of(lg)
        self.sampler = NeighborSampler(lg.csr, self.cfg.fanouts[: self.cfg.layers], 0)
        self.group_held = max(self.group_held, float(sum(b for *_, b in lg.halo_read)))

    # ------------------------------------------------------------ evaluation
    @property
    def owned(self):
        """The local graph whose owned rows the evaluator reads (with halo groups, the isolated set)."""
        return self.groups.base if self.groups is not None else self.local

    def evaluate(self) -> tuple[float, float]:
        if self.evaluator is None:  # once an ownership: training's freed pages go first, so the plan and the
            trim_heap(TRIM_AT_PHASE_EDGE)  # blocks are built on what is live, not on top of the pages it keeps
            self.evaluator = self._evaluator()
        lg = self.owned
        metrics = self.evaluator.metrics(self.model, lg.y[: lg.num_owned], lg.split, self.cfg.metric)
        if 0 < self.group_steps < NO_GROUPS:  # a rank reads groups (every rank knows: a MIN allreduce): memory is
            self.evaluator = None  # bounded, so the plan and blocks (96M edges: 300 MB a rank) are not held
            # through the next epochs' group loads; built again (from the shards) at the next evaluation
        return metrics

    def _evaluator(self) -> DistributedEvaluator:
        owner, lg = owner_of_chunks(self.sets, self.k), self.owned
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
                    halo_hops_read=self.halo_hops_read, halo_read=self.halo_read, halo_mode=self.halo_mode,
                    halo_group_held_bytes_max=self.group_held_max, halo_groups_over_budget=self.groups_over_budget,
                    shard_bytes_read_per_rank=self.shard_bytes_read)


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
