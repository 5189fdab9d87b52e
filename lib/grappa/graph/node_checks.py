"""The dataset checks every path runs alike: import and training start on a
raw graph (``RawGraph.validate``), the partitioner on each block it routes,
and ``grappa-validate`` (and so every distributed method's start-up check) on
each shard. One place, so no path accepts what another refuses.

Each check takes the names to blame (``NodeFiles``: the user's file, or a
shard and its dataset) and the rows at hand, so callers stream in blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grappa.errors import InputError

# The split codes of the raw layout and the shards (grappa.graph.raw re-exports them).
SPLIT_NONE, SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = 0, 1, 2, 3


@dataclass(frozen=True)
class NodeFiles:
    """What to name in an error about the features, labels and split codes."""

    x: str
    y: str
    split: str

    @classmethod
    def raw(cls, directory) -> NodeFiles:
        return cls(f"{directory}/x.npy", f"{directory}/y.npy", f"{directory}/split.npy")

    @classmethod
    def shard(cls, path) -> NodeFiles:
        return cls(f"{path} (nodes/x)", f"{path} (nodes/y)", f"{path} (nodes/split)")


def check_features(where: NodeFiles, x: np.ndarray) -> None:
    if x.size and not np.isfinite(x).all():
        raise InputError(where.x, "features contain NaN or infinity", "clean or impute the features, then re-import")


def check_labels(where: NodeFiles, y: np.ndarray, task: str, num_classes: int, first: int = 0) -> None:
    """Multiclass: integer class indices in [0, C); multilabel: finite values in [0, 1]."""
    if not y.size:
        return
    if task == "multilabel":
        if not (np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1):
            raise InputError(where.y, "multilabel targets must be finite values in [0, 1]",
                             "store one 0/1 column per label")
        return
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(where.y, f"labels have dtype {y.dtype}, not integers",
                         "store class indices 0..C-1 as integers")
    if y.min() < 0 or y.max() >= num_classes:
        bad = int(np.flatnonzero((y < 0) | (y >= num_classes))[0])
        raise InputError(where.y, f"label {int(y[bad])} of node {first + bad} is outside [0, {num_classes}) "
                         f"(num_classes {num_classes})", "fix the labels or num_classes, then re-import")


def count_training_nodes(where: NodeFiles, split: np.ndarray) -> int:
    """Split codes 0-3 (none, train, val, test); returns how many are 1 (train)."""
    if split.size and split.max() > SPLIT_TEST:
        raise InputError(where.split, f"split code {int(split.max())} is not 0-3", "0 none, 1 train, 2 val, 3 test")
    return int((split == SPLIT_TRAIN).sum())


def check_node_rows(where: NodeFiles, x, y, split, task: str, num_classes: int, first: int = 0) -> int:
    """Every check on one block of node rows (``x`` None: the caller checks features
    elsewhere); returns the block's training-node count."""
    if x is not None:
        check_features(where, x)
    check_labels(where, y, task, num_classes, first)
    return count_training_nodes(where, split)


def check_has_training_nodes(where: NodeFiles, num_nodes: int, train: int) -> None:
    if num_nodes and not train:
        raise InputError(where.split, "no training nodes (no split code 1)",
                         "give a train mask, or import with a random split")
