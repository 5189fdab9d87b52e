"""Load a raw graph into the tensors training needs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grappa.graph.csr import CSR
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, GraphInfo, RawGraph


@dataclass
class GraphData:
    info: GraphInfo
    x: torch.Tensor
    y: torch.Tensor
    split: np.ndarray
    csr: CSR
    edge_index: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return self.info.num_nodes

    def nodes(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.split == code)

    @property
    def train_idx(self) -> np.ndarray:
        return self.nodes(SPLIT_TRAIN)

    @property
    def val_idx(self) -> np.ndarray:
        return self.nodes(SPLIT_VAL)

    @property
    def test_idx(self) -> np.ndarray:
        return self.nodes(SPLIT_TEST)


def load_graph(directory) -> GraphData:
    g = RawGraph(directory).validate()
    src, dst = g.load_edges()
    csr = CSR.from_edges(src, dst, g.num_nodes)
    y = np.asarray(g.y)
    return GraphData(info=g.info, x=torch.from_numpy(np.array(g.x, dtype=np.float32)),
                     y=torch.from_numpy(y.astype(np.float32 if g.info.task == "multilabel" else np.int64)),
                     split=np.asarray(g.split), csr=csr, edge_index=csr.edge_index())
