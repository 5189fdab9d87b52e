"""Time-based model averaging: PSGD-PA, RandomTMA, SuperTMA (METHODS.md section 2).

Each rank trains its own copy of the model on the subgraph induced by its
part (cross-part edges dropped), with **no per-step communication**: in the
time-based mode a fast rank takes more steps than a slow one. Every ``T``
seconds (``--average-every-seconds``, measured from the end of the previous
averaging) the ranks replace their parameters by the unweighted mean, one
allreduce of the flat parameter vector (``train_param``). Optimizer state
stays local (it is neither averaged nor reset).

Who decides when: rank 0 keeps the time. Every other rank posts a
non-blocking broadcast at the start of a round and polls it after each of
its steps; rank 0 posts its value once T has passed (checked after each of
its steps), so no rank ever blocks mid-round.

What an epoch is here:

- time mode (default): one *round*, T seconds of local steps then one
  averaging (and evaluation every --eval-every rounds). Training ends after
  --epochs rounds or once --time-budget seconds of training have passed,
  the last round ending with the final averaging.
- step mode (``--average-every-steps N``, deterministic, for tests and
  reproducible comparisons): one pass over the local training nodes (every
  rank takes max_r ceil(n_r / batch) steps, wrapping around its own seeds,
  or ``--steps-per-epoch`` steps), averaging after every N steps and at the
  end of every epoch. The benchmark (``bench_flags``) sets both to 5: an
  epoch is one averaging period, the unit its budgets are counted in.

The three methods differ only in the partition they train on:
``psgd-pa`` METIS with one part per trainer, ``random-tma`` random chunks,
``super-tma`` METIS super-nodes dealt to chunks (``--method metis-super``).
``--drop-parts D`` partitions for P + D trainers and never runs D parts (the
failure-robustness experiment); evaluation still covers every node.

The authors evaluate link prediction; node classification here is an
adaptation, so their numbers are not comparable.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from grappa.errors import check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import graph_args, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.shards.assemble import LocalGraph, load_chunk_set
from grappa.shards.schedule import chunk_sets, owner_of_chunks
from grappa.train.batches import batch_seeds, epoch_order, seed_torch
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.halo_exchange import HaloPlan
from grappa.train.loop import StopRequested, nonfinite
from grappa.train.method import Method

_GO, _LAST = 1.0, 2.0  # rank 0's round decisions: average; average and end training


@dataclass
class AveragingOptions:
    """Model averaging (psgd-pa, random-tma, super-tma): when to average, when to stop."""

    average_every_seconds: float = field(default=120.0, metadata={
        "help": "T: average every T seconds of local training (the time-based mode)"})
    average_every_steps: int = field(default=0, metadata={
        "help": "N > 0: deterministic mode, average after every N local steps and at each epoch end"})
    steps_per_epoch: int = field(default=0, metadata={
        "help": "step mode: local steps per epoch (seeds wrap around); 0 = one pass over the rank's training "
                "nodes. Equal to --average-every-steps, an epoch is one averaging period"})
    drop_parts: int = field(default=0, metadata={"help": "D: partition for P + D trainers and never run D parts"})
    slow_rank_delay: float = field(default=0.0, metadata={
        "help": "testing only: the last rank sleeps this many seconds after each step"})

    def __post_init__(self):
        check_options(self, (("--average-every-steps", self.average_every_steps >= 0, "0 (time mode) or more"),
                             ("--steps-per-epoch", self.steps_per_epoch >= 0, "0 (one pass) or more"),
                             ("--average-every-seconds", self.average_every_steps or self.average_every_seconds > 0,
                              "positive seconds (or use --average-every-steps N)"),
                             ("--drop-parts", self.drop_parts >= 0, "0 or more"),
                             ("--slow-rank-delay", self.slow_rank_delay >= 0, "0 or more seconds")))

class LocalTraining(Method):
    """What every method that trains on its own part without per-step
    communication shares (model averaging here, LLCG in ``llcg.py``): the
    induced subgraph of the rank's fixed chunk set, one local optimizer step,
    the distributed full-graph evaluation, the per-rank optimizer state."""

    categories = ("train_param",)
    resume_any_world_size = False  # local optimizer state lives with each rank's part

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        self.task, k, p = data.manifest["task"], data.num_chunks, comm.size
        idle = [[]] * self.idle_ranks()  # ranks 0.. that hold no part (LLCG's dedicated server)
        train_sets = idle + chunk_sets("fixed", k, self.parts(), 0, cfg.seed)
        self.local = lg = load_chunk_set(data.directory, train_sets[comm.rank])  # induced subgraph
        eval_sets = idle + chunk_sets("fixed", k, p - len(idle), 0, cfg.seed)
        self.eval_local = lg if eval_sets[comm.rank] == train_sets[comm.rank] else \
            load_chunk_set(data.directory, eval_sets[comm.rank])
        self.eval_owner = owner_of_chunks(eval_sets, k)
        self.evaluator = None
        self.train_nodes = np.flatnonzero(lg.split == SPLIT_TRAIN)
        bs = cfg.batch_size
        self.sampler = NeighborSampler(lg.csr, cfg.fanouts[: cfg.layers], 0) if bs else None
        self.graph = None if bs else graph_args(model, lg.edge_index, len(lg.global_id))
        self.params = [q for q in model.parameters() if q.requires_grad]
        self.local_steps = 0  # this rank's optimizer steps (differ between ranks in time mode)

    def parts(self) -> int:
        return self.parts_for(self.opts, self.comm.size)

    def idle_ranks(self) -> int:
        """How many ranks, from rank 0, train and evaluate no part."""
        return 0

    def local_step(self, epoch: int, step: int, order: np.ndarray) -> float | None:
        """One optimizer step on this rank's batch; None when it has no training nodes."""
        seeds = batch_seeds(order, self.cfg.batch_size, step)
        if not len(seeds):
            return None
        lg, rank, seed = self.local, self.comm.rank, self.cfg.seed
        seed_torch(seed, epoch, rank, step)
        self.opt.zero_grad()
        if self.sampler is None:
            out = self.model(lg.x, *self.graph)[torch.from_numpy(seeds)]
            y = lg.y[torch.from_numpy(seeds)]
        else:
            self.sampler.rng = np.random.default_rng([seed, epoch, rank, step, 2])
            sub = self.sampler.sample(seeds)
            nodes = torch.from_numpy(sub.nodes)
            out = sampled_forward(self.model, lg.x.index_select(0, nodes), sub)  # index_select: 4x x[nodes]
            y = lg.y[nodes[: sub.num_seeds]]
        loss = loss_fn(self.task, out, y)
        loss.backward()
        self.opt.step()
        self.local_steps += 1
        return loss.item()

    def mean_loss(self, losses: list[float]) -> float:
        """The mean of every rank's mean local loss (ranks without steps left out). The epoch's last
        collective, after its parameters are final: each rank's divergence flag rides on it."""
        mine = float(np.mean(losses)) if losses else 0.0
        mean = torch.tensor([mine, float(bool(losses)), float(nonfinite(self.model, mine))], dtype=torch.float64)
        tot = self.comm.allreduce(mean, category="control")
        self.nonfinite_ranks = round(float(tot[2]))
        return float(tot[0] / max(float(tot[1]), 1.0))

    def evaluate(self) -> tuple[float, float]:
        if self.evaluator is None:
            lg: LocalGraph = self.eval_local
            plan = HaloPlan(self.comm, lg, self.eval_owner, "eval")
            self.evaluator = DistributedEvaluator(plan, lg.x[: lg.num_owned])
        lg = self.eval_local
        return self.evaluator.metrics(self.model, lg.y[: lg.num_owned], lg.split, self.cfg.metric)

    def rank_state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "local_steps": self.local_steps}

    def load_rank_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.local_steps = int(state["local_steps"])

    def local_steps_per_rank(self) -> list[int]:
        return self.comm.allgather(torch.tensor([self.local_steps], dtype=torch.int64), "control").tolist()


class ModelAveraging(LocalTraining):
    """Local training on induced subgraphs + periodic parameter averaging.

    Args (``AveragingOptions``):
        average_every_seconds (float): T of the time-based mode (default 120).
        average_every_steps (int): N > 0 selects the deterministic step mode (default 0).
        steps_per_epoch (int): step mode's local steps per epoch, 0 = one pass (default 0).
        drop_parts (int): parts partitioned for but never run (default 0).
        slow_rank_delay (float): testing only (default 0).
    """

    Options = AveragingOptions
    strict_partition = True
    # The benchmark runs the deterministic step mode, so runs are comparable and reproducible;
    # an "epoch" is then one averaging period of 5 local steps (their natural budget unit).
    bench_family = "averaging"
    bench_flags = ("--average-every-steps", "5", "--steps-per-epoch", "5")
    fault_flags = ("--average-every-steps", "2")  # an averaging within the campaign's short runs

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        bs = cfg.batch_size
        n_steps = -(-len(self.train_nodes) // bs) if bs else 1
        self.steps = self.opts.steps_per_epoch or max(1, int(comm.allreduce_object_max(n_steps)))  # step mode
        self.averagings = 0
        self.global_step = 0  # step mode: steps since the start, the same on every rank
        self.train_time_s = 0.0

    @classmethod
    def parts_for(cls, options, world_size: int) -> int:
        return world_size + options.drop_parts

    @classmethod
    def bench_runs(cls, flags: list[str], drop_parts: int = 0) -> list[tuple[str, str, list[str]]]:
        """Also with ``drop_parts`` of P + D parts never trained (compare.py --drop-parts)."""
        runs = [(cls.name, cls.label, flags)]
        if drop_parts:
            runs.append((f"{cls.name}-drop{drop_parts}", f"{cls.label}, {drop_parts} of P+{drop_parts} parts dropped",
                         [*flags, "--drop-parts", str(drop_parts)]))
        return runs

    @classmethod
    def expected_wait_s(cls, options) -> float:
        """Time mode: a rank waits up to T for rank 0's decision that ends a round."""
        return 0.0 if options.average_every_steps else options.average_every_seconds

    def local_step(self, epoch: int, step: int, order: np.ndarray) -> float | None:
        loss = super().local_step(epoch, step, order)
        if loss is not None and self.opts.slow_rank_delay and self.comm.rank == self.comm.size - 1:
            time.sleep(self.opts.slow_rank_delay)
        return loss

    def average(self) -> bool:
        """Parameters <- their mean over ranks (``train_param``); returns whether
        any rank asked to stop (a control scalar riding on the same allreduce)."""
        flat = parameters_to_vector(self.params).detach()
        total, (stops,) = self.comm.allreduce_carrying(flat, [1.0 if self.stop_flag() else 0.0], "train_param")
        vector_to_parameters(total / self.comm.size, self.params)
        self.averagings += 1
        return float(stops) > 0

    # ------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        order = epoch_order(self.train_nodes, self.cfg.seed, epoch, self.comm.rank)
        t0 = time.perf_counter()
        if self.opts.average_every_steps:
            losses = self._steps_epoch(epoch, order)
        else:
            losses = self._timed_round(epoch, order)
        self.train_time_s += time.perf_counter() - t0
        return self.mean_loss(losses)

    def _steps_epoch(self, epoch: int, order: np.ndarray) -> list[float]:
        n, losses = self.opts.average_every_steps, []
        start, self.start_step = self.start_step, 0
        for step in range(start, self.steps):
            loss = self.local_step(epoch, step, order)
            losses += [] if loss is None else [loss]
            self.global_step += 1
            due = self.global_step % n == 0 or step == self.steps - 1
            if due and self.average():
                if step + 1 < self.steps:
                    raise StopRequested(epoch, step + 1)
                self.stop_pending = True
        return losses

    def _timed_round(self, epoch: int, order: np.ndarray) -> list[float]:
        comm, t_round, losses = self.comm, time.perf_counter(), []
        name = f"tma.round.{epoch}"
        pending = comm.ibroadcast(torch.zeros(1), 0, "control", name) if comm.rank != 0 else None
        step = 0
        while True:
            loss = self.local_step(epoch, step, order)
            if loss is None:
                time.sleep(0.001)  # nothing to train here: just wait for the averaging
            else:
                losses.append(loss)
                step += 1
            if comm.rank == 0:
                if time.perf_counter() - t_round >= self.opts.average_every_seconds:
                    budget = self.cfg.time_budget  # the round in which it is spent is the last
                    last = budget > 0 and self.train_time_s + time.perf_counter() - t_round >= budget
                    decision = comm.ibroadcast(torch.tensor([_LAST if last else _GO]), 0, "control", name).wait()
                    break
            elif pending.test():
                decision = pending.wait()
                break
        self.finished = float(decision[0]) == _LAST
        self.stop_pending = self.average()
        return losses

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        # Saved right after an averaging: the model is the same on every rank.
        return {"model": self.model.state_dict(), "averagings": self.averagings, "global_step": self.global_step,
                "train_time_s": self.train_time_s}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.averagings, self.global_step = int(state["averagings"]), int(state["global_step"])
        self.train_time_s = float(state["train_time_s"])

    def result_extra(self) -> dict:
        o = self.opts
        return dict(averagings=self.averagings, local_steps_per_rank=self.local_steps_per_rank(), parts=self.parts(),
                    drop_parts=o.drop_parts, averaging_mode="steps" if o.average_every_steps else "seconds",
                    average_every_seconds=o.average_every_seconds, average_every_steps=o.average_every_steps,
                    train_time_s_averaging=self.train_time_s,
                    num_params=sum(q.numel() for q in self.params))


class PSGDPA(ModelAveraging):
    """PSGD-PA: METIS, one part per trainer (K = P + drop_parts)."""

    name, label, partition, chunks_per_rank_exact = "psgd-pa", "PSGD-PA", "metis", True


class RandomTMA(ModelAveraging):
    """RandomTMA: random chunks, one fixed set per trainer."""

    name, label, partition = "random-tma", "RandomTMA", "random"


class SuperTMA(ModelAveraging):
    """SuperTMA: METIS super-nodes shuffled and dealt to chunks, one fixed set per trainer."""

    name, label, partition = "super-tma", "SuperTMA", "metis-super"
