"""The raw graph layout: the one input format of the partitioner and trainer.

A directory holding::

    graph.json       counts, feature dim, classes, task, provenance
    edges_src.npy    int64[E]   directed edges src -> dst (undirected inputs
    edges_dst.npy    int64[E]   store both directions)
    x.npy            float32[N, F]
    y.npy            int64[N] (multiclass: classes 0..C-1, every node) or float32[N, C]
    split.npy        uint8[N]   0 none, 1 train, 2 val, 3 test

Every array is memory-mappable, so readers take slices without loading it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from grappa.errors import InputError, load_json_file
from grappa.graph.node_checks import (  # the split codes are re-exported here
    SPLIT_NONE,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SPLIT_VAL,
    NodeFiles,
    check_has_training_nodes,
    check_node_rows,
)
from grappa.graph.npy_stream import npy_shape

SCHEMA = "grappa-raw/1"
FILES = ("edges_src.npy", "edges_dst.npy", "x.npy", "y.npy", "split.npy")
_BLOCK = 1 << 22  # rows per validation block: bounded memory on huge graphs


@dataclass
class GraphInfo:
    name: str
    num_nodes: int
    num_edges: int
    num_features: int
    num_classes: int
    task: str = "multiclass"  # or "multilabel"
    undirected: bool = True  # both directions of every edge are stored
    provenance: dict = field(default_factory=dict)
    schema: str = SCHEMA

    def save(self, directory) -> None:
        Path(directory, "graph.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory) -> GraphInfo:
        path = Path(directory, "graph.json")
        d = load_json_file(path, SCHEMA, "point at a directory written by grappa-import or grappa-generate")
        known = set(cls.__dataclass_fields__)
        missing = {"name", "num_nodes", "num_edges", "num_features", "num_classes"} - set(d)
        if missing:
            raise InputError(path, f"missing fields {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


def _open(path: Path, mmap: bool = True) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "file is missing", "re-run the import or generation step")
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(path, f"cannot read as .npy ({e}); the file may be truncated",
                         "re-run the import or generation step") from e


class RawGraph:
    """Memory-mapped view of a raw graph directory."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.info = GraphInfo.load(self.dir)
        self.src = _open(self.dir / "edges_src.npy")
        self.dst = _open(self.dir / "edges_dst.npy")
        self.x = _open(self.dir / "x.npy")
        self.y = _open(self.dir / "y.npy")
        self.split = _open(self.dir / "split.npy")

    @property
    def num_nodes(self) -> int:
        return self.info.num_nodes

    def validate(self, check_values: bool = True) -> RawGraph:
        """Check shapes always; with ``check_values`` also ranges and NaNs, in blocks."""
        n, e = self.info.num_nodes, self.info.num_edges
        expect = {
            "edges_src.npy": (self.src, (e,)),
            "edges_dst.npy": (self.dst, (e,)),
            "x.npy": (self.x, (n, self.info.num_features)),
            "split.npy": (self.split, (n,)),
        }
        for name, (arr, shape) in expect.items():
            if arr.shape != shape:
                raise InputError(self.dir / name, f"has shape {arr.shape}, graph.json says {shape}",
                                 "the file and graph.json disagree; re-run the import")
        if self.y.shape[0] != n:
            raise InputError(self.dir / "y.npy", f"has {self.y.shape[0]} rows but x.npy has {n}",
                             "labels and features must have one row per node")
        if not check_values:
            return self
        for name, arr in (("edges_src.npy", self.src), ("edges_dst.npy", self.dst)):
            for lo in range(0, e, _BLOCK):
                b = np.asarray(arr[lo:lo + _BLOCK])
                if b.size and (b.min() < 0 or b.max() >= n):
                    bad = int(b[(b < 0) | (b >= n)][0])
                    raise InputError(self.dir / name, f"node id {bad} out of range [0, {n})")
        self._validate_nodes()
        return self

    def _validate_nodes(self) -> None:
        """The shared node checks (``grappa.graph.node_checks``) over x, y and split, in blocks."""
        n, where = self.info.num_nodes, NodeFiles.raw(self.dir)
        train, rows = 0, max(1024, min(_BLOCK, (1 << 27) // max(self.x[:1].nbytes, 1)))  # ~128 MB of x a block
        for lo in range(0, n, rows):
            hi = lo + rows
            train += check_node_rows(where, np.asarray(self.x[lo:hi]), np.asarray(self.y[lo:hi]),
                                     np.asarray(self.split[lo:hi]), self.info.task, self.info.num_classes, lo)
        check_has_training_nodes(where, n, train)

    def load_edges(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.src), np.asarray(self.dst)


def write_raw(directory, info: GraphInfo, src, dst, x, y, split) -> None:
    """Write a whole in-memory graph (small graphs; generators stream instead)."""
    directory = Path(directory)
    np.save(directory / "edges_src.npy", np.ascontiguousarray(src, dtype=np.int64))
    np.save(directory / "edges_dst.npy", np.ascontiguousarray(dst, dtype=np.int64))
    np.save(directory / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
    y = np.asarray(y)
    np.save(directory / "y.npy", y.astype(np.float32 if info.task == "multilabel" else np.int64))
    np.save(directory / "split.npy", np.ascontiguousarray(split, dtype=np.uint8))
    info.num_edges = int(len(src))
    info.save(directory)


def random_split(num_nodes: int, fractions=(0.6, 0.2, 0.2), seed: int = 0, labelled=None) -> np.ndarray:
    """Random train/val/test split over the labelled nodes (uint8 codes)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(num_nodes) if labelled is None else np.flatnonzero(labelled)
    idx = rng.permutation(idx)
    n_tr = int(round(fractions[0] * len(idx)))
    n_va = int(round(fractions[1] * len(idx)))
    n_te = int(round(fractions[2] * len(idx))) if len(fractions) > 2 else len(idx) - n_tr - n_va
    split = np.zeros(num_nodes, dtype=np.uint8)
    split[idx[:n_tr]] = SPLIT_TRAIN
    split[idx[n_tr:n_tr + n_va]] = SPLIT_VAL
    split[idx[n_tr + n_va:n_tr + n_va + n_te]] = SPLIT_TEST
    return split


__all__ = ["GraphInfo", "RawGraph", "write_raw", "random_split", "npy_shape", "SCHEMA",
           "SPLIT_NONE", "SPLIT_TRAIN", "SPLIT_VAL", "SPLIT_TEST"]
