"""GNN models built from PyG layers, with layer-wise full-neighbour inference.

Any module with ``forward(x, edge_index)`` (PyG style) trains in grappa. The
built-in ones also expose their layers one by one (``LayerwiseGNN``), which
evaluation uses to run exact full-neighbour inference over graphs whose
L-hop neighbourhoods do not fit in memory at once.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from grappa.graph.csr import CSR

MODELS = ("gcn", "sage", "gat", "gin", "mlp")


class LayerwiseGNN(nn.Module):
    """L message-passing layers with ReLU + dropout in between."""

    def __init__(self, convs: list[nn.Module], dropout: float, input_dropout: float | None = None):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    def prepare(self, edge_index, num_nodes):
        """Per-graph preprocessing shared by all layers; returns (edge_index, edge_weight)."""
        return edge_index, None

    def prepare_global(self, edge_index, num_nodes, in_degree, num_targets):
        """Like ``prepare`` for a subgraph whose first ``num_targets`` nodes have
        *all* their in-edges present, given every node's global in-degree."""
        return edge_index, None

    def layer(self, i: int, x, edge_index, edge_weight=None):
        if i == 0:
            x = F.dropout(x, self.input_dropout, self.training)
        x = self._conv(i, x, edge_index, edge_weight)
        if i < self.num_layers - 1:
            x = F.dropout(F.relu(x), self.dropout, self.training)
        return x

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x, edge_index)

    def forward(self, x, edge_index, edge_weight=None):
        if edge_weight is None:
            edge_index, edge_weight = self.prepare(edge_index, x.size(0))
        for i in range(self.num_layers):
            x = self.layer(i, x, edge_index, edge_weight)
        return x


class GCN(LayerwiseGNN):
    """GCN (Kipf & Welling). Normalisation D^-1/2 (A+I) D^-1/2 is computed once
    per graph in ``prepare`` so layer-wise inference can reuse global degrees."""

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5):
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        super().__init__([GCNConv(dims[i], dims[i + 1], normalize=False) for i in range(num_layers)], dropout)

    def prepare(self, edge_index, num_nodes):
        return gcn_norm(edge_index, None, num_nodes, add_self_loops=True)

    def prepare_global(self, edge_index, num_nodes, in_degree, num_targets):
        loops = torch.arange(num_targets, dtype=edge_index.dtype)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], 1)
        deg = in_degree.to(torch.float32) + 1.0  # + the self-loop, as gcn_norm counts it
        return ei, deg[ei[0]].rsqrt() * deg[ei[1]].rsqrt()

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x, edge_index, edge_weight)


class SAGE(LayerwiseGNN):
    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5):
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        super().__init__([SAGEConv(dims[i], dims[i + 1]) for i in range(num_layers)], dropout)


class GAT(LayerwiseGNN):
    """GAT with ``heads`` attention heads (concatenated) in hidden layers and a
    single averaged head at the output, as in Velickovic et al."""

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.6, heads=8):
        convs = []
        d = in_dim
        for _ in range(num_layers - 1):
            convs.append(GATConv(d, hidden, heads=heads, dropout=dropout))
            d = hidden * heads
        convs.append(GATConv(d, out_dim, heads=1, dropout=dropout))
        super().__init__(convs, dropout)


class GIN(LayerwiseGNN):
    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5):
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]

        def mlp(a, b):
            return nn.Sequential(nn.Linear(a, hidden), nn.ReLU(), nn.Linear(hidden, b))

        super().__init__([GINConv(mlp(dims[i], dims[i + 1]), train_eps=True) for i in range(num_layers)], dropout)


class MLP(LayerwiseGNN):
    """Ignores the graph: the baseline that shows whether the graph matters."""

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5):
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        super().__init__([nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers)], dropout)

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x)


def build_model(name: str, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                dropout: float = 0.5, heads: int = 8) -> LayerwiseGNN:
    if name == "gat":
        return GAT(in_dim, hidden, out_dim, num_layers, dropout, heads)
    classes = {"gcn": GCN, "sage": SAGE, "gin": GIN, "mlp": MLP}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")
    return classes[name](in_dim, hidden, out_dim, num_layers, dropout)


@torch.no_grad()
def layerwise_inference(model: nn.Module, x: torch.Tensor, csr: CSR, batch_size: int = 65536) -> torch.Tensor:
    """Exact full-neighbour outputs for every node, one layer at a time.

    Memory is O(N * hidden + batch in-edges), never the L-hop neighbourhood.
    Models that are not ``LayerwiseGNN`` fall back to one full-graph forward.
    """
    model.eval()
    if not isinstance(model, LayerwiseGNN):
        return model(x, csr.edge_index())
    n = csr.num_nodes
    full_ei = csr.edge_index()
    full_ei, full_w = model.prepare(full_ei, n)
    # Per-destination CSR of the prepared graph (self-loops and weights included).
    order = torch.argsort(full_ei[1], stable=True)
    src_sorted = full_ei[0][order].numpy()
    w_sorted = full_w[order] if full_w is not None else None
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(full_ei[1].numpy(), minlength=n), out=indptr[1:])
    prepared = CSR(indptr, src_sorted)
    h = x
    for i in range(model.num_layers):
        outs = []
        for lo in range(0, n, batch_size):
            targets = np.arange(lo, min(lo + batch_size, n))
            pos, seg = prepared.in_edge_positions(targets)
            srcs = prepared.indices[pos]
            nodes, inv = np.unique(np.concatenate([targets, srcs]), return_inverse=True)
            t_local = torch.from_numpy(inv[: len(targets)])
            ei = torch.from_numpy(np.stack([inv[len(targets):], inv[: len(targets)][seg]]))
            w = None if w_sorted is None else w_sorted[torch.from_numpy(pos)]
            out = model.layer(i, h[torch.from_numpy(nodes)], ei, w)
            outs.append(out[t_local])
        h = torch.cat(outs)
    return h
