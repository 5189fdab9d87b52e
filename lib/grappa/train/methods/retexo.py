"""RETEXO: lazy message passing, one stage (layer) at a time (METHODS.md section 4).

Each rank owns a fixed set of random chunks and every in-edge of its nodes
(the 1-hop halo). Before stage 0 the boundary rows of the raw features go,
once, to the ranks whose nodes need them (one alltoallv, ``train_feat``).
Stage l then trains only its own layer, full-batch on the rank's nodes:

    e_l   = ReLU(LayerNorm(conv_l(H_l)))     non-final stages
    aux_l = Linear(e_l)                      their auxiliary classifier
    out   = conv_L(H_L)                      the final stage: the logits

with a fresh Adam per stage (``--stage-lr``, by default --lr; --weight-decay), one step per
round, the loss over the training nodes that have an in-edge, and the
weight gradients summed with one allreduce (``train_grad``: the global mean
loss, i.e. each rank weighted by its training-node count). The parameters
of the stage's best validation round are kept. Between stages every rank
computes e_l of its nodes once and sends the boundary rows once
(``train_embed``); no embedding gradient ever crosses ranks.

Convolutions as the authors define them: GCN is the symmetric-normalised
convolution *without a self term* (normalised with the graph's degrees,
which the 1-hop halo gives exactly for destinations; the authors use the
local subgraph's), SAGE is [own ; mean of neighbours], GAT averages 8
heads. An epoch is one round: each non-final stage runs
``--rounds-per-stage`` rounds (default --epochs / --layers) and the final
stage the rest. The final model is a ``LayerwiseGNN``: its test metric comes
from the same distributed full-neighbour evaluation as every other method's,
at the best validation round of the final stage (as for every method).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grappa.errors import InputError, check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import LayerwiseGNN, as_float, dropout, sparse_adjacency
from grappa.shards.assemble import load_chunk_set
from grappa.shards.schedule import chunk_sets, owner_of_chunks
from grappa.train.batches import seed_torch
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.gradients import GradientStep
from grappa.train.halo_exchange import HaloPlan
from grappa.train.method import Method

CONVS = ("gcn", "sage", "gat")


class RetexoNet(LayerwiseGNN):
    """The stacked stages: conv, then ReLU(LayerNorm) between stages; one
    auxiliary linear head per non-final stage (training only)."""

    def __init__(self, kind: str, in_dim: int, hidden: int, out_dim: int, num_layers: int, dropout_p: float,
                 heads: int = 8):
        from torch_geometric.nn import GATConv, GCNConv, SAGEConv  # here, not at import: grappa.models says why

        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]

        def conv(a, b):
            if kind == "gcn":
                return GCNConv(a, b, normalize=False, add_self_loops=False)
            if kind == "sage":
                return SAGEConv(a, b)
            return GATConv(a, b, heads=heads, concat=False, add_self_loops=False)

        super().__init__([conv(dims[i], dims[i + 1]) for i in range(num_layers)], dropout_p)
        self.kind = kind
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers - 1))
        self.aux = nn.ModuleList(nn.Linear(hidden, out_dim) for _ in range(num_layers - 1))

    def stage_modules(self, i: int) -> list[nn.Module]:
        return [self.convs[i]] + ([self.norms[i], self.aux[i]] if i < self.num_layers - 1 else [])

    def prepare(self, edge_index, num_nodes):
        deg = torch.bincount(edge_index[1], minlength=num_nodes)
        return self.prepare_global(edge_index, num_nodes, deg, num_nodes)

    def prepare_global(self, edge_index, num_nodes, in_degree, num_targets):
        if self.kind != "gcn":
            return edge_index, None
        deg = in_degree.to(torch.float32).clamp_min(1.0)  # symmetric graph: in-degree = out-degree
        return edge_index, deg[edge_index[0]].rsqrt() * deg[edge_index[1]].rsqrt()

    def adjacency(self, edge_index, edge_weight, num_nodes):
        return (edge_index, edge_weight) if self.kind == "gat" else sparse_adjacency(edge_index, edge_weight,
                                                                                    num_nodes)

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x, edge_index, edge_weight) if self.kind == "gcn" else self.convs[i](x, edge_index)

    def layer(self, i: int, x, edge_index, edge_weight=None):
        x = self._conv(i, as_float(x), edge_index, edge_weight)
        return F.relu(self.norms[i](x)) if i < self.num_layers - 1 else x

    def stage_logits(self, i: int, x, graph) -> torch.Tensor:
        """The stage's classifier on its input rows: the aux head, or the logits."""
        x = as_float(x)
        # stage 0's input is the (often sparse) features, the same tensor every round: draw for its nonzeros only
        nonzero = self._input_nonzero(x) if self.training and 0.0 < self.dropout < 1.0 else None
        h = self.layer(i, dropout(x, self.dropout, self.training, nonzero=nonzero), *graph)
        return self.aux[i](h) if i < self.num_layers - 1 else h


@dataclass
class RetexoOptions:
    """RETEXO: stages trained one at a time, embeddings exchanged once per stage."""

    rounds_per_stage: int = field(default=0, metadata={
        "help": "rounds (epochs) of each non-final stage; the final stage runs the rest; 0 = --epochs / --layers"})
    # 0 = --lr: the rate every method of a comparison shares (the authors use 0.003 to 0.01; at 0.003 the stages
    # did not converge within the budgets the other methods do: docs/BENCHMARKS.md, "RETEXO's stage learning rate")
    stage_lr: float = field(default=0.0, metadata={
        "help": "Adam learning rate of every stage; 0 = --lr (the authors use 0.003 to 0.01)"})
    stage_seconds: float = field(default=0.0, metadata={
        "help": "a non-final stage ends once its rounds have taken this many seconds (all ranks agree), the "
                "final stage runs until --epochs or --time-budget; 0 = --rounds-per-stage"})

    def __post_init__(self):
        check_options(self, (("--rounds-per-stage", self.rounds_per_stage >= 0, "0 or more"),
                             ("--stage-lr", self.stage_lr >= 0, "0 (= --lr) or positive"),
                             ("--stage-seconds", self.stage_seconds >= 0, "0 (rounds) or more seconds")))


class Retexo(Method):
    """Greedy stage-wise training with one boundary exchange per stage.

    Args (``RetexoOptions``):
        rounds_per_stage (int): rounds of each non-final stage, 0 = --epochs / --layers (default 0).
        stage_lr (float): each stage's fresh Adam learning rate, 0 = --lr (default 0).
        stage_seconds (float): a non-final stage's seconds of rounds, 0 = by rounds (default 0).

    Its natural budget: ``N`` epochs are ``N`` rounds of every stage (a round
    trains one layer), ``S`` seconds are ``S / L`` seconds of every stage.
    """

    name, label, partition = "retexo", "RETEXO", "random"
    Options = RetexoOptions
    categories = ("train_grad", "train_feat", "train_embed")
    rate_flags = ("stage_lr", "weight_decay")

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if cfg.model not in CONVS:
            raise InputError("--model", f"--method retexo defines stages for {', '.join(CONVS)}, not {cfg.model}",
                             "use --model gcn, sage or gat")
        if cfg.residual or cfg.norm != "none":
            raise InputError("--residual" if cfg.residual else "--norm", "--method retexo trains its own stages "
                             "(each a conv with LayerNorm and ReLU, trained alone): a residual or a norm across "
                             "greedy stages is not the method", "drop --residual and --norm")

    @classmethod
    def build_model(cls, cfg, in_dim: int, out_dim: int) -> nn.Module:
        return RetexoNet(cfg.model, in_dim, cfg.hidden, out_dim, cfg.layers, cfg.dropout, cfg.heads)

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        self.rps = rounds_per_stage(self.opts, cfg.epochs, cfg.layers)
        k, self.task = data.num_chunks, data.manifest["task"]
        sets = chunk_sets("fixed", k, comm.size, 0, cfg.seed)
        self.local = lg = load_chunk_set(data.directory, sets[comm.rank])
        self.plan = plan = HaloPlan(comm, lg, owner_of_chunks(sets, k), "setup")
        n = lg.num_owned
        self.y, self.split = lg.y[:n], lg.split
        has_in_edge = np.bincount(lg.full_dst_local, minlength=n) > 0
        self.train_idx = torch.from_numpy(np.flatnonzero((lg.split == SPLIT_TRAIN) & has_in_edge))
        count = comm.allreduce(torch.tensor([float(len(self.train_idx))], dtype=torch.float64), category="setup")
        self.num_train = max(float(count[0]), 1.0)
        self.graph = model.graph_global(plan.edge_index, plan.num_nodes, plan.in_degree, n)
        self.evaluator = DistributedEvaluator(plan, lg.x[:n])
        self.stage, self.h = 0, None  # the stage in training and its input rows [own; halo]
        self.stage_starts, self.stage_time, self.rounds = [0], 0.0, 0  # epochs at which each stage began
        self.best_val, self.best = -1.0, None
        self.stage_bytes: list[dict] = []
        self.stage_lr = self.opts.stage_lr or cfg.lr
        if not self.opts.stage_lr:  # a diverged run is told to lower the rate it ran at
            self.rate_flags = ("lr", "weight_decay")
        self.opt = self._stage_optimizer(0)

    @classmethod
    def budget_flags(cls, kind: str, value: float, layers: int) -> list[str]:
        """N epochs: N rounds of every stage (a round trains one layer); S seconds: S / L of every stage."""
        if kind == "epochs":
            return ["--epochs", str(int(value) * layers), "--rounds-per-stage", str(int(value))]
        return [*super().budget_flags(kind, value, layers), "--stage-seconds", f"{value / layers:g}"]

    def _stage_optimizer(self, i: int) -> torch.optim.Optimizer:
        params = [q for m in self.model.stage_modules(i) for q in m.parameters()]
        return torch.optim.Adam(params, lr=self.stage_lr, weight_decay=self.cfg.weight_decay)

    @property
    def provisional(self) -> bool:
        """Before the final stage, evaluate() scores an auxiliary head, not the model."""
        return self.stage < self.cfg.layers - 1

    # ------------------------------------------------------------ stage inputs
    @torch.no_grad()
    def _inputs_of(self, stage: int) -> torch.Tensor:
        """[own; halo] input rows of ``stage``: the features exchanged once,
        then each finished stage's embeddings exchanged once."""
        h = self.plan.fetch(self.local.x[: self.plan.num_owned], "train_feat")
        for i in range(stage):
            h = self._embed_and_send(i, h)
        return h

    @torch.no_grad()
    def _embed_and_send(self, stage: int, h: torch.Tensor) -> torch.Tensor:
        """The next stage's input: this stage's embeddings of the own nodes,
        boundary rows sent once (``train_embed``); no gradient ever returns."""
        self.model.eval()
        return self.plan.fetch(self.model.layer(stage, h, *self.graph)[: self.plan.num_owned], "train_embed")

    # ------------------------------------------------------------ one round
    def train_epoch(self, epoch: int) -> float:
        snap, t0 = self.comm.counter.snapshot(), time.perf_counter()
        if self.h is None:
            self.h = self._inputs_of(self.stage)
        m, n, s = self.model, self.plan.num_owned, self.stage
        m.train()
        seed_torch(self.cfg.seed, epoch, self.comm.rank)
        self.opt.zero_grad(set_to_none=False)
        out = m.stage_logits(s, self.h, self.graph)[:n]
        loss_sum = loss_fn(self.task, out[self.train_idx], self.y[self.train_idx], reduction="sum")
        (loss_sum / self.num_train).backward()
        (total,), stop = GradientStep(self.comm, self.opt, stop_flag=self.stop_flag)([loss_sum.item()])
        self.rounds += 1
        if s < self.cfg.layers - 1:  # the final stage's best round is the loop's best-validation model
            self._keep_if_best(self._stage_scores()[0])
            if self._stage_over(epoch, time.perf_counter() - t0):
                self._finish_stage()
                self.stage_starts.append(epoch + 1)
        self._add_stage_bytes(s, self.comm.counter.since(snap))
        self.stop_pending = stop
        return total / self.num_train

    def _stage_over(self, epoch: int, round_s: float) -> bool:
        """Whether the non-final stage in training ends with this round: by its
        rounds, or (``--stage-seconds``) by its time, rank 0's clock deciding."""
        if not self.opts.stage_seconds:
            return epoch == (self.stage + 1) * self.rps - 1
        self.stage_time += round_s
        over = self.comm.allreduce_object_max(self.stage_time if self.comm.rank == 0 else 0.0)
        if over >= self.opts.stage_seconds:
            self.stage_time = 0.0
            return True
        return False

    @torch.no_grad()
    def _stage_scores(self) -> tuple[float, float]:
        """(validation, test) of the stage's classifier over every rank's nodes."""
        self.model.eval()
        logits = self.model.stage_logits(self.stage, self.h, self.graph)[: self.plan.num_owned]
        return self.evaluator.scores(logits, self.y, self.split, self.cfg.metric)

    def _keep_if_best(self, val: float) -> None:
        if val > self.best_val:
            self.best_val = val
            self.best = [copy.deepcopy(mod.state_dict()) for mod in self.model.stage_modules(self.stage)]

    def _finish_stage(self) -> None:
        """Keep the stage's best-validation parameters, send their embeddings
        once, open the next stage with a fresh optimizer."""
        for mod, st in zip(self.model.stage_modules(self.stage), self.best):
            mod.load_state_dict(st)
        self.h = self._embed_and_send(self.stage, self.h)
        self.stage += 1
        self.opt = self._stage_optimizer(self.stage)
        self.best_val, self.best = -1.0, None

    def _add_stage_bytes(self, stage: int, sent: dict) -> None:
        while len(self.stage_bytes) <= stage:
            self.stage_bytes.append({})
        for k, v in sent.items():
            if k.startswith("train"):
                self.stage_bytes[stage][k] = self.stage_bytes[stage].get(k, 0) + v

    # ------------------------------------------------------------ evaluation, state
    def evaluate(self) -> tuple[float, float]:
        if self.provisional:
            return self._stage_scores()
        return self.evaluator.metrics(self.model, self.y, self.split, self.cfg.metric)

    def is_boundary(self, epoch: int) -> bool:
        if self.opts.stage_seconds:
            return epoch == self.stage_starts[-1]  # a stage began (periodic checkpoints: --checkpoint-every)
        return epoch % self.rps == 0  # a stage ends

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "stage": self.stage,
                "best_val": self.best_val, "best": self.best, "stage_bytes": self.stage_bytes,
                "stage_starts": self.stage_starts, "stage_time": self.stage_time, "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.stage = int(state["stage"])
        self.opt = self._stage_optimizer(self.stage)
        self.opt.load_state_dict(state["optimizer"])
        self.best_val, self.best = float(state["best_val"]), state["best"]
        self.stage_bytes = [dict(d) for d in state["stage_bytes"]]
        self.stage_starts = [int(e) for e in state.get("stage_starts", [0])]
        self.stage_time, self.rounds = float(state.get("stage_time", 0.0)), int(state.get("rounds", 0))
        self.h = None  # rebuilt from the finished stages at the next round

    def result_extra(self) -> dict:
        starts = self.stage_starts + [self.rounds]
        return dict(stages=self.cfg.layers, rounds_per_stage=self.rps, stage_lr=self.stage_lr,
                    train_bytes_by_stage=self.stage_bytes,
                    stages_trained=len(self.stage_starts), rounds_by_stage=list(np.diff(starts).tolist()),
                    halo_rows_sent=self.plan.rows_sent,
                    num_params_by_stage=[sum(q.numel() for m in self.model.stage_modules(i) for q in m.parameters())
                                         for i in range(self.cfg.layers)])


def rounds_per_stage(opts: RetexoOptions, epochs: int, layers: int) -> int:
    """Rounds of each non-final stage; the final stage runs the remaining epochs."""
    rps = opts.rounds_per_stage or epochs // layers
    if epochs < (layers - 1) * rps + 1 or rps == 0:
        need = (layers - 1) * max(rps, 1) + 1
        raise InputError("--epochs", f"{epochs} rounds leave no round for the last of {layers} stages "
                         f"({rps} rounds per stage)", f"use --epochs >= {need} or fewer --rounds-per-stage")
    return rps
