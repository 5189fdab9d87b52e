"""Centralized training: one process, the whole graph (full-graph or mini-batch).
The reference every distributed method is judged against."""
from __future__ import annotations

import numpy as np
import torch

from grappa.models import LayerwiseGNN, graph_args, layerwise_inference, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.train.data import GraphData
from grappa.train.evaluate import compute_metric, loss_fn
from grappa.train.method import Method


def full_graph_logits(model, data: GraphData, eval_batch_size: int, graph: tuple | None = None) -> torch.Tensor:
    """Eval-mode outputs for every node. ``graph``: the prepared structure
    (``graph_args``) the caller holds anyway. Over a sparse adjacency, one
    forward over the whole graph (no gradients: two N x width activations at
    a time, what the layer-wise pass holds too, at several times its speed);
    models over edge lists (GAT: per-edge attention) run layer-wise in
    batches of ``eval_batch_size`` nodes on graphs larger than that."""
    model.eval()
    sparse = graph is not None and graph[0].layout != torch.strided
    with torch.no_grad():
        if not sparse and isinstance(model, LayerwiseGNN) and data.num_nodes > eval_batch_size:
            return layerwise_inference(model, data.x, data.csr, eval_batch_size)
        return model(data.x, *(graph or (data.edge_index,)))


class CentralizedMethod(Method):
    """One process, the whole graph: the reference. No options; reads a raw graph."""

    name, label = "centralized", "centralized"
    input, partition, categories = "raw", None, ()
    world_size, stops_on_signal = "one", False

    def __init__(self, cfg, comm, data: GraphData, model, optimizer, stop_flag=lambda: False):
        if comm.size != 1:
            raise ValueError("--method centralized runs in one process; launch it without mpirun")
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        self.task = data.info.task
        self.train_idx = torch.from_numpy(data.train_idx)
        self.rng = np.random.default_rng(cfg.seed)
        self.sampler = NeighborSampler(data.csr, cfg.fanouts[: cfg.layers], cfg.seed) if cfg.batch_size else None
        self.graph = graph_args(model, data.edge_index, data.num_nodes)  # built once, used every epoch

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        if not self.cfg.batch_size:
            self.opt.zero_grad()
            out = self.model(self.data.x, *self.graph)
            loss = loss_fn(self.task, out[self.train_idx], self.data.y[self.train_idx])
            loss.backward()
            self.opt.step()
            return loss.item()
        seeds = self.rng.permutation(self.data.train_idx)
        losses = []
        for lo in range(0, len(seeds), self.cfg.batch_size):
            sub = self.sampler.sample(seeds[lo:lo + self.cfg.batch_size])
            nodes = torch.from_numpy(sub.nodes)
            self.opt.zero_grad()
            out = sampled_forward(self.model, self.data.x.index_select(0, nodes), sub)  # 4x x[nodes]
            loss = loss_fn(self.task, out, self.data.y[nodes[: sub.num_seeds]])
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    def evaluate(self) -> tuple[float, float]:
        logits = full_graph_logits(self.model, self.data, self.cfg.eval_batch_size, self.graph)
        v, t = self.data.val_idx, self.data.test_idx
        return (compute_metric(self.cfg.metric, logits[v], self.data.y[v]),
                compute_metric(self.cfg.metric, logits[t], self.data.y[t]))

    def state_dict(self) -> dict:
        # The epoch order and the sampler draw from sequential generators, and
        # dropout from torch's: their states make a resumed run exact.
        return {**super().state_dict(), "order_rng": self.rng.bit_generator.state,
                "sampler_rng": self.sampler.rng.bit_generator.state if self.sampler else None,
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["order_rng"]
        if self.sampler:
            self.sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
