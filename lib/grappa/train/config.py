"""Training configuration: one dataclass, filled from the command line."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    data: str = ""  # raw graph directory
    out: str = "runs/latest"
    method: str = "centralized"
    model: str = "gcn"
    hidden: int = 16
    layers: int = 2
    dropout: float = 0.5
    heads: int = 8  # GAT only
    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 200
    batch_size: int = 0  # 0 = full-graph; >0 = mini-batch of this many seeds
    fanouts: list[int] = field(default_factory=lambda: [10, 10])
    patience: int = 0  # early stopping on validation; 0 = off
    eval_every: int = 1
    eval_batch_size: int = 1 << 16  # nodes per layer-wise inference batch
    seed: int = 0
    backend: str = "auto"
    # grappa (distributed methods)
    schedule: str = "sweep"  # sweep | shuffle | fixed
    repartition_every: int = 50  # epochs per super-epoch; 0 = never
    weighting: str = "node"  # uniform | coverage | shrinkage | node (node measured best: docs/BENCHMARKS.md)
    shrinkage_lambda: float = 0.5
    halo_hops: int = 0  # 1: read 1-hop halo features from shards at repartition time
    resume: bool = False
    checkpoint_keep: int = 3
    overwrite: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)
