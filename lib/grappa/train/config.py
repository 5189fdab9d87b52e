"""Training configuration: the fields every method shares, filled from the
command line; a method's own options live in its ``Options`` dataclass
(``cfg.options``, see ``grappa.train.method``)."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainConfig:
    data: str = ""  # raw graph directory or partitioned dataset (the method says which)
    out: str = "runs/latest"
    method: str = "centralized"
    model: str = "gcn"
    hidden: int = 16
    layers: int = 2
    dropout: float = 0.5
    heads: int = 8  # GAT only
    residual: bool = False  # the heterophilous benchmark's blocks (grappa.models.Blocks)
    norm: str = "none"  # none | layer | batch, before each conv (blocks)
    optimizer: str = "adam"  # adam | sgd (plain SGD: no momentum)
    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 200
    time_budget: float = 0.0  # seconds of training + evaluation, then stop after the epoch; 0 = --epochs only
    batch_size: int = 0  # 0 = full-graph; >0 = mini-batch of this many seeds
    fanouts: list[int] = field(default_factory=lambda: [10, 10])
    patience: int = 0  # early stopping on validation; 0 = off
    eval_every: int = 1
    metric: str = "auto"  # auto: ROC-AUC for two classes and multilabel, else accuracy; run() resolves it
    eval_batch_size: int = 1 << 16  # nodes per layer-wise inference batch
    seed: int = 0
    backend: str = "auto"
    comm_timeout: float = 600.0  # seconds a collective may wait for a live but silent peer
    resume: bool = False
    checkpoint_keep: int = 3
    checkpoint_every: int = 10  # epochs between checkpoints besides the method's boundaries; 0 = only those
    overwrite: bool = False
    progress: bool = True
    options: Any = None  # the method's Options dataclass instance

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        d["fanouts"] = list(self.fanouts)
        d["options"] = asdict(self.options) if dataclasses.is_dataclass(self.options) else {}
        return d


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
