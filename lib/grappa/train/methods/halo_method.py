"""Halo exchange: distributed full-graph training, exact (METHODS.md section 0).

The reference a user would otherwise run (DistDGL / DistGNN style). Each rank
owns a fixed group of chunks (a METIS k-way partition with K = P, or K > P
chunks grouped contiguously) and every in-edge of its nodes. In every layer
of every epoch it sends the boundary rows of the layer input to the ranks
that need them (``train_feat``) and, in the backward pass of layers >= 1,
gets the gradients of those rows back (``train_act_grad``); the weight
gradients are summed with one allreduce (``train_grad``).

The loss is the global mean over all training nodes (each rank sums its own
terms and divides by the global count), so the summed gradient is exactly
the centralized full-graph gradient: the loss curve equals centralized
training's up to floating-point summation order. (Dropout draws its masks
per rank, so with dropout > 0 the runs are equal in distribution, not
bitwise.)
"""
from __future__ import annotations

import numpy as np
import torch

from grappa.errors import InputError
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import LayerwiseGNN
from grappa.shards.assemble import load_chunk_set
from grappa.shards.schedule import chunk_sets, owner_of_chunks
from grappa.train.batches import seed_torch
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.evaluate import loss_fn
from grappa.train.gradients import GradientStep
from grappa.train.halo_exchange import HaloPlan
from grappa.train.method import Method


class HaloMethod(Method):
    """Exact distributed full-graph training: a halo exchange in every layer.

    No options. Partition: METIS with K = P (or K > P chunks grouped
    contiguously); full-graph only.
    """

    name, label = "halo", "halo"
    partition = "metis"
    categories = ("train_grad", "train_feat", "train_act_grad")
    full_graph_only = True

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        if not isinstance(model, LayerwiseGNN):
            raise InputError("--model", "--method halo runs the model layer by layer", "use a built-in model")
        k = data.num_chunks
        if k < comm.size:
            raise InputError(data.directory, f"{k} chunks cannot feed {comm.size} ranks",
                             f"partition with --method metis --num-chunks {comm.size}")
        self.task = data.manifest["task"]
        self.sets = chunk_sets("fixed", k, comm.size, 0, cfg.seed)  # contiguous groups, never changing
        self.local = lg = load_chunk_set(data.directory, self.sets[comm.rank])
        self.plan = plan = HaloPlan(comm, lg, owner_of_chunks(self.sets, k), "setup")
        n = lg.num_owned
        self.x, self.y = lg.x[:n], lg.y[:n]
        self.train_idx = torch.from_numpy(np.flatnonzero(lg.split == SPLIT_TRAIN))
        count = comm.allreduce(torch.tensor([float(len(self.train_idx))], dtype=torch.float64), category="setup")
        self.num_train = max(float(count[0]), 1.0)
        self.graph = model.graph_owned(plan.edge_index, plan.num_nodes, plan.in_degree, n)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = GradientStep(comm, optimizer, self.params, stop_flag)
        self.evaluator = DistributedEvaluator(plan, self.x)

    def forward(self) -> torch.Tensor:
        """Outputs of the owned nodes; one halo exchange per layer."""
        h = self.model.input(self.x)  # input dropout on the owner, so every rank sees the same dropped row
        for i in range(self.model.num_layers):
            h = self.owned_outputs(i, self.plan.exchange(h, "train_feat", "train_act_grad"))
        return h

    def owned_outputs(self, i: int, h_full: torch.Tensor) -> torch.Tensor:
        """Layer i applied to [own rows; halo rows]: the owned nodes' outputs."""
        return self.model.layer_owned(i, h_full, self.graph, self.plan.num_owned)

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        seed_torch(self.cfg.seed, epoch, self.comm.rank)
        self.opt.zero_grad(set_to_none=False)
        out = self.forward()
        loss_sum = loss_fn(self.task, out[self.train_idx], self.y[self.train_idx], reduction="sum")
        (loss_sum / self.num_train).backward()
        # One allreduce: the summed gradient, the loss sum and the stop flag.
        (total_loss,), self.stop_pending = self.step([loss_sum.item()])
        return total_loss / self.num_train

    def evaluate(self) -> tuple[float, float]:
        return self.evaluator.metrics(self.model, self.y, self.local.split, self.cfg.metric)

    def result_extra(self) -> dict:
        rows = self.comm.allreduce(torch.tensor([float(self.plan.rows_sent)], dtype=torch.float64),
                                   category="control")
        return dict(halo_rows_sent_per_layer_mean=float(rows[0]) / self.comm.size)
