"""LLCG: learn locally, correct globally (METHODS.md section 3).

One epoch is one *round* r:

1. every rank starts from the global model and takes K_r local steps on the
   subgraph induced by its part (cross-part edges dropped), with its own
   optimizer whose state persists across rounds (``LocalTraining``);
2. the ranks' parameters are averaged, weighted by training-node count: one
   allreduce of the flat parameter vector (``train_param``, "up");
3. the server (rank 0, also a worker) takes S correction steps with its own
   persistent optimizer (``--server-lr``) on mini-batches drawn uniformly
   over **all** nodes of the graph (loss on the training nodes among them),
   with neighbour sampling over the full graph; it reads neighbourhoods and
   rows from the shard files on demand (``ShardGraph``), never the whole
   graph at once;
4. rank 0 broadcasts the corrected parameters (``train_param``, "down").

``--dedicated-server`` makes rank 0 a server only, as in the paper's
set-up: it trains no part and evaluates none, so its memory is the
server's (per-node arrays and the sampled batches), never a share of the
edges; the other P - 1 ranks are the workers.

K_r = ceil(K / rho^r), decreasing from K (the authors' default); with
``--inc-k`` the schedule runs backwards and ends at K in the last round.
Without the correction (``--server-steps 0``) this is PSGD-PA with weighted
averaging. Everything is seeded from (seed, round, step): a resumed run
replays the uninterrupted one exactly.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from grappa.errors import InputError, check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import sampled_forward
from grappa.sampling import NeighborSampler
from grappa.shards.shard_graph import ShardGraph
from grappa.train.batches import epoch_order, seed_torch
from grappa.train.config import make_optimizer
from grappa.train.evaluate import loss_fn
from grappa.train.methods.averaging import LocalTraining


@dataclass
class LLCGOptions:
    """LLCG: K_r local steps per round, then S server correction steps on the full graph."""

    local_steps: int = field(default=64, metadata={"help": "K: local steps in the first round"})
    rho: float = field(default=1.1, metadata={"help": "K_r = ceil(K / rho^r); rho >= 1"})
    inc_k: bool = field(default=False, metadata={"help": "reverse the schedule: K_r grows to K in the last round"})
    server_steps: int = field(default=1, metadata={"help": "S: server correction steps per round (0: none)"})
    server_lr: float = field(default=0.01, metadata={"help": "learning rate of the server's optimizer"})
    server_batch_size: int = field(default=0, metadata={
        "help": "nodes drawn over the whole graph per correction step; 0 = --batch-size, or 256 full-graph"})
    dedicated_server: bool = field(default=False, metadata={
        "help": "rank 0 only corrects (no part, no evaluation share); the P - 1 other ranks are the workers"})

    def __post_init__(self):
        checks = (("--local-steps", self.local_steps >= 1, "at least 1"), ("--rho", self.rho >= 1, "at least 1"),
                  ("--server-steps", self.server_steps >= 0, "0 or more"),
                  ("--server-lr", self.server_lr > 0, "positive"),
                  ("--server-batch-size", self.server_batch_size >= 0, "0 or more"))
        check_options(self, checks)


def local_steps_of(opts: LLCGOptions, rnd: int, rounds: int) -> int:
    """K_r of round ``rnd`` (of ``rounds``)."""
    r = rounds - 1 - rnd if opts.inc_k else rnd
    return max(1, math.ceil(opts.local_steps / opts.rho ** r - 1e-9))


class LLCG(LocalTraining):
    """Local rounds on METIS parts, weighted averaging, server correction.

    Args (``LLCGOptions``):
        local_steps (int): K, local steps of the first round (default 64).
        rho (float): the schedule's decay, K_r = ceil(K / rho^r) (default 1.1).
        inc_k (bool): the authors' increasing schedule (default False).
        server_steps (int): S, correction steps per round (default 1).
        server_lr (float): the server optimizer's learning rate (default 0.01).
        server_batch_size (int): nodes per correction batch, 0 = the workers' (default 0).
        dedicated_server (bool): rank 0 holds no part and only corrects (default False).
    """

    name, label, partition = "llcg", "LLCG", "metis"
    rate_flags = ("lr", "server_lr", "weight_decay")
    Options = LLCGOptions

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        if getattr(cfg.options, "dedicated_server", False) and comm.size < 2:
            raise InputError("--dedicated-server", "needs at least 2 ranks (a server and a worker)", "drop it")
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        if len(cfg.fanouts) < cfg.layers:
            raise InputError("--fanouts", f"the server samples one fan-out per layer ({cfg.layers}), "
                             f"got {cfg.fanouts}")
        n = torch.tensor([float(len(self.train_nodes))], dtype=torch.float64)
        self.weight = float(n[0] / max(float(comm.allreduce(n, category="control")[0]), 1.0))
        self.server = self.server_opt = None
        self.server_batch = self.opts.server_batch_size or cfg.batch_size or 256
        if comm.rank == 0:
            self.server = ShardGraph(data.directory)
            self.server_sampler = NeighborSampler(self.server, cfg.fanouts[: cfg.layers], 0)
            self.server_opt = make_optimizer(dataclasses.replace(cfg, lr=self.opts.server_lr), self.params)
        self.rounds = 0
        self.server_steps_done = 0
        self.server_time_s = 0.0
        self.schedule: list[int] = []
        self.train_peak_rss_mb = 0.0

    @classmethod
    def parts_for(cls, options, world_size: int) -> int:
        return world_size - 1 if options.dedicated_server else world_size

    def idle_ranks(self) -> int:
        return 1 if self.opts.dedicated_server else 0

    # ------------------------------------------------------------ one round
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        order = epoch_order(self.train_nodes, self.cfg.seed, epoch, self.comm.rank)
        k_r = local_steps_of(self.opts, epoch, self.cfg.epochs)
        losses = [x for x in (self.local_step(epoch, s, order) for s in range(k_r)) if x is not None]
        flat = parameters_to_vector(self.params).detach() * self.weight
        # up; whether any rank asked to stop rides along (the round still ends with its correction)
        total, (stops,) = self.comm.allreduce_carrying(flat, [1.0 if self.stop_flag() else 0.0], "train_param")
        vector_to_parameters(total, self.params)
        if self.server is not None:
            t0 = time.perf_counter()
            for s in range(self.opts.server_steps):
                self.server_step(epoch, s)
            self.server_time_s += time.perf_counter() - t0
        flat = parameters_to_vector(self.params).detach()
        vector_to_parameters(self.comm.broadcast(flat, 0, "train_param"), self.params)  # down
        self.rounds += 1
        self.schedule.append(k_r)
        self.train_peak_rss_mb = self.phases.overall()  # a high-water mark: before any later evaluation
        self.stop_pending = float(stops) > 0
        return self.mean_loss(losses)

    def server_step(self, rnd: int, step: int) -> None:
        """One correction step on nodes drawn uniformly over the whole graph;
        the loss covers the training nodes among them (none: no step)."""
        g, seed = self.server, self.cfg.seed
        rng = np.random.default_rng([seed, rnd, step, 3])
        seeds = np.sort(rng.choice(g.num_nodes, min(self.server_batch, g.num_nodes), replace=False))
        seeds = seeds[g.node_rows(seeds, "split") == SPLIT_TRAIN]
        if not len(seeds):
            return
        self.server_sampler.rng = np.random.default_rng([seed, rnd, step, 4])
        sub = self.server_sampler.sample(seeds)
        x = torch.from_numpy(g.node_rows(sub.nodes, "x"))
        y = torch.from_numpy(g.node_rows(seeds, "y"))
        seed_torch(seed, rnd, self.comm.size, step)  # the server's own dropout stream
        self.server_opt.zero_grad()
        loss_fn(self.task, sampled_forward(self.model, x, sub), y).backward()
        self.server_opt.step()
        self.server_steps_done += 1

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        # Saved by rank 0, the server, right after the broadcast.
        server = self.server_opt.state_dict() if self.server_opt is not None else None
        return {"model": self.model.state_dict(), "server_optimizer": server, "rounds": self.rounds,
                "schedule": list(self.schedule), "server_steps_done": self.server_steps_done,
                "server_time_s": self.server_time_s, "server_bytes_read": self.server.bytes_read if self.server else 0}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.server_opt is not None:
            self.server_opt.load_state_dict(state["server_optimizer"])
        self.rounds, self.schedule = int(state["rounds"]), [int(k) for k in state["schedule"]]
        self.server_steps_done, self.server_time_s = int(state["server_steps_done"]), float(state["server_time_s"])
        if self.server is not None:
            self.server.bytes_read = int(state["server_bytes_read"])

    def result_extra(self) -> dict:
        mine = [self.server_time_s, float(self.server.bytes_read if self.server else 0), self.phases.overall(),
                self.train_peak_rss_mb]
        t, read, rss, train_rss = self.comm.broadcast(torch.tensor(mine, dtype=torch.float64), 0, "control").tolist()
        return dict(rounds=self.rounds, local_steps_schedule=self.schedule,
                    local_steps_per_rank=self.local_steps_per_rank(), server_steps=self.server_steps_done,
                    server_correction_time_s=t, server_shard_bytes_read=int(read), server_peak_rss_mb=rss,
                    server_peak_rss_mb_training=train_rss,
                    server_batch_size=self.server_batch, num_params=sum(q.numel() for q in self.params))
