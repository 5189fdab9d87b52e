"""GNN models built from PyG layers, with layer-wise full-neighbour inference.

Any module with ``forward(x, edge_index)`` (PyG style) trains in grappa. The
built-in ones also expose their layers one by one (``LayerwiseGNN``), which
evaluation uses to run exact full-neighbour inference over graphs whose
L-hop neighbourhoods do not fit in memory at once.
"""
from __future__ import annotations

import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grappa.graph.csr import CSR
from grappa.sparse_input import SparseLayout, SparseRows, csr_matrix, csr_transpose, dense, linear

# PyG is imported where a layer is built, not here: its import (torch._dynamo with it) costs 3 to 4 s a
# process on this machine, which every --help, refused flag and data-preparation command would pay.


def import_layers() -> None:
    """Import PyG's layers now. A run that will build a model calls this before its communicator
    starts: Horovod's background thread negotiates every cycle once started, and through a 3 to 4 s
    import that put 850 KB on a 2-node Cora run's wire, uncounted (tests/test_emulated_cluster.py)."""
    import torch_geometric.nn  # noqa: F401

# name -> model class (in_dim, hidden, out_dim, num_layers, dropout[, heads]); a model in a module of
# its own registers itself with ``@register_model("name")`` (loaded by GRAPPA_PLUGINS, grappa.plugins)
MODELS: dict[str, type] = {}


def register_model(name: str):
    """Class decorator: make the model class known as ``--model name``."""
    from grappa.plugins import register

    return lambda cls: register(MODELS, name, cls, "model")


def dropout(x: torch.Tensor, p: float, training: bool, nonzero: torch.Tensor | None = None) -> torch.Tensor:
    """Inverted dropout, faster than ``F.dropout`` on CPU (docs/BENCHMARKS.md): input
    dropout over wide feature matrices dominated small-graph epochs. Each
    64-bit draw of the generator yields four 16-bit uniforms, so the keep
    probability is ``p`` rounded to a multiple of 1/65536 (and the rescale
    uses that rounded value: the output stays unbiased).

    Args:
        nonzero: flat indices of ``x``'s nonzero entries (``NonzeroCache``), or
            None. Given, only those entries are drawn for, masked and rescaled (a
            zero stays zero whatever its mask): on bag-of-words features the
            draws, most of an input dropout's time, shrink with the density.
    """
    if not training or p == 0.0:
        return x
    keep = round((1.0 - p) * 65536)
    if p >= 1.0 or keep == 0:
        return torch.zeros_like(x)
    if nonzero is None:
        # bool * float promotes in one pass; the in-place rescale saves a second temporary
        return (x * (_uniform16(x.numel()).view(x.shape) < keep - 32768)).mul_(65536.0 / keep)
    flat = x.reshape(-1)
    out = torch.zeros_like(flat)
    out[nonzero] = drop_values(flat[nonzero], p)
    return out.view(x.shape)


def drop_values(v: torch.Tensor, p: float) -> torch.Tensor:
    """``dropout``'s mask and rescale over a flat tensor of values (0 < p < 1):
    the nonzeros of an input, drawn for in their row-major order."""
    keep = round((1.0 - p) * 65536)
    if keep == 0:
        return torch.zeros_like(v)
    return (v * (_uniform16(v.numel()) < keep - 32768)).mul_(65536.0 / keep)


def _uniform16(n: int) -> torch.Tensor:
    """``n`` int16 draws; r + 32768 is uniform on [0, 65536)."""
    return torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64).view(torch.int16)[:n]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Features stored as float16 (``grappa-partition --feature-dtype float16``)
    are computed in float32: cast the rows a layer is about to use, so only
    they, never the whole stored matrix, take four bytes a value."""
    return x.float() if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16) else x


class NonzeroCache:
    """The nonzero entries of an input, kept while it comes back unchanged
    (full-graph epochs, a chunk set between repartitions) so it is scanned
    once. Which path an input takes depends on its content only, never on
    what the cache saw before: a resumed run draws what an uninterrupted one
    did. A new input costs one ``count_nonzero`` scan (a mini-batch's, every
    step: a fraction of the draws it saves when sparse). Holds the input only
    weakly; an input needing gradients, or denser than ``max_density``, gets
    None (the dense path).

    Args:
        max_density (float, optional): above this fraction of nonzeros the
            indices cost more than the mask. (default: 0.25)
    """

    def __init__(self, max_density: float = 0.25):
        self.max_density = max_density
        self._last = None  # [weakref to the input, its _version, indices or None, SparseLayout or None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        if x.requires_grad:
            return None
        last = self._last
        if last is not None and last[0]() is x and last[1] == x._version:
            return last[2]
        sparse = int(torch.count_nonzero(x)) <= self.max_density * x.numel()
        idx = x.reshape(-1).nonzero().squeeze(1) if sparse else None
        self._last = [weakref.ref(x), x._version, idx, None]  # _version: an in-place change rescans
        return idx

    def layout(self, x: torch.Tensor, max_density: float) -> SparseLayout | None:
        """``x``'s nonzeros as a CSR layout with their values (gathered once per
        input) when at most ``max_density`` of its entries are nonzero, else None."""
        idx = self(x) if x.dim() == 2 else None
        if idx is None or len(idx) > max_density * x.numel():
            return None
        if self._last[3] is None:
            self._last[3] = SparseLayout(idx, x.size(0), x.size(1), values=x.reshape(-1)[idx])
        return self._last[3]


NORMS = ("none", "layer", "batch")


def make_norm(kind: str, width: int) -> nn.Module:
    """``--norm``: LayerNorm normalises each node alone (no statistics shared
    between nodes, so nothing to exchange); BatchNorm1d over the rows a
    layer sees (each rank's own in training, running statistics averaged
    over the ranks before evaluation: ``sync_norm_statistics``)."""
    return {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d}[kind](width)


@dataclass
class Blocks:
    """The heterophilous benchmark's GNN blocks (Platonov et al., ICLR 2023):
    an input projection to ``hidden``, then per layer
    ``h = h + dropout(ReLU(conv(norm(h))))`` (the ``+ h`` only with
    ``residual``), then a last norm and an output projection to the classes.

    Args:
        in_dim, hidden, out_dim (int): feature, hidden and class widths.
        residual (bool): add each block's input to its output (default False).
        norm (str): ``none`` | ``layer`` | ``batch`` before each conv (default ``none``).
    """

    in_dim: int
    hidden: int
    out_dim: int
    residual: bool = False
    norm: str = "none"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")


def blocks_of(in_dim: int, hidden: int, out_dim: int, residual: bool, norm: str) -> Blocks | None:
    """The ``Blocks`` a model with these flags is made of; None: the plain layers."""
    return Blocks(in_dim, hidden, out_dim, residual, norm) if residual or norm != "none" else None


def conv_dims(in_dim: int, hidden: int, out_dim: int, num_layers: int, blocks: bool) -> list[int]:
    """Widths between the convs: in -> hidden ... -> out, or hidden throughout
    in blocks (the projections at both ends change the width)."""
    return [hidden] * (num_layers + 1) if blocks else [in_dim] + [hidden] * (num_layers - 1) + [out_dim]


class LayerwiseGNN(nn.Module):
    """L message-passing layers with ReLU + dropout in between; with
    ``blocks`` (``--residual``, ``--norm``) the benchmark blocks of ``Blocks``.
    The convs of a block model run hidden -> hidden (``conv_dims``)."""

    def __init__(self, convs: list[nn.Module], dropout: float, input_dropout: float | None = None,
                 blocks: Blocks | None = None):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout
        self._input_nonzero = NonzeroCache()
        self.blocks = blocks
        if blocks is not None:
            b, L = blocks, len(convs)
            self.input_lin, self.output_lin = nn.Linear(b.in_dim, b.hidden), nn.Linear(b.hidden, b.out_dim)
            self.norms = nn.ModuleList(make_norm(b.norm, b.hidden) for _ in range(L + 1)) if b.norm != "none" \
                else None
            self.streams = False  # the norm and the residual sit between the sum and the next layer

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

    # Models whose layer 0 takes ``SparseRows`` (grappa.sparse_input) in training, and the density up to
    # which their input goes that way: at 5% a sparse product and its backward still beat the dense ones.
    takes_sparse_input = False
    SPARSE_INPUT_DENSITY = 0.05

    def input(self, x, sparse: bool = False):
        """What happens to the features before layer 0 (input dropout; blocks:
        the input projection). Per node, so a rank may apply it to any rows.
        ``sparse``: a sparse input's dropped nonzeros as ``SparseRows`` (same
        draws, same values) where the model's layer 0 takes them."""
        x = as_float(x)
        if self.blocks is not None:
            return dropout(F.relu(self.input_lin(x)), self.dropout, self.training)
        if not self.training or self.input_dropout == 0.0:
            return x
        layout = self._input_nonzero.layout(x, self.SPARSE_INPUT_DENSITY) \
            if sparse and self.takes_sparse_input and 0.0 < self.input_dropout < 1.0 else None
        if layout is not None:
            return SparseRows(layout, drop_values(layout.values, self.input_dropout))
        return dropout(x, self.input_dropout, True, nonzero=self._input_nonzero(x))

    def adjacency(self, edge_index, edge_weight, num_nodes):
        """The structure the layers propagate over; models whose convs take a
        sparse adjacency override this with ``sparse_adjacency`` (faster)."""
        return edge_index, edge_weight

    def graph(self, edge_index, num_nodes):
        """``prepare`` + ``adjacency``: build once, pass to every forward as
        ``model(x, *graph)`` when the graph does not change between steps."""
        return self.adjacency(*self.prepare(edge_index, num_nodes), num_nodes)

    def graph_global(self, edge_index, num_nodes, in_degree, num_targets):
        return self.adjacency(*self.prepare_global(edge_index, num_nodes, in_degree, num_targets), num_nodes)

    # Models whose layer can compute the first rows alone (a num_targets x num_nodes adjacency).
    computes_targets_only = False

    def graph_targets(self, edge_index, num_nodes, in_degree, num_targets):
        """``graph_global`` cut to the edges into the first ``num_targets`` nodes,
        for ``layer(..., targets=num_targets)``: a rank that needs only its own
        rows does not compute (and hold) its halo's."""
        ei, w = self.prepare_global(edge_index, num_nodes, in_degree, num_targets)
        keep = ei[1] < num_targets
        return sparse_adjacency(ei[:, keep], None if w is None else w[keep], num_nodes, rows=num_targets)

    def graph_owned(self, edge_index, num_nodes, in_degree, num_owned):
        """The structure for ``layer_owned`` over [own rows; halo rows]: cut to the
        owned rows' in-edges where the model can compute those rows alone."""
        build = self.graph_targets if self.computes_targets_only else self.graph_global
        return build(edge_index, num_nodes, in_degree, num_owned)

    def layer_owned(self, i: int, x, graph, num_owned: int):
        """Layer i's outputs of the first ``num_owned`` rows of ``x`` (every source
        row): the halo rows' own outputs are never computed where they need not be."""
        kw = {"targets": num_owned} if self.computes_targets_only else {}
        return self.layer(i, x, *graph, **kw)[:num_owned]

    def layer(self, i: int, x, edge_index, edge_weight=None, targets: int | None = None):
        x = as_float(x)
        h = x if self.blocks is None or self.norms is None else self.norms[i](x)
        if targets is None:
            h = self._conv(i, h, edge_index, edge_weight)
        else:
            h = self._conv_targets(i, h, edge_index, targets)
        return self.activate(i, h) if self.blocks is None else self._block_end(i, h, x)

    def activate(self, i: int, x):
        """What follows conv i: ReLU and dropout between layers."""
        return dropout(F.relu(x), self.dropout, self.training) if i < self.num_layers - 1 else x

    def _block_end(self, i: int, h, x):
        """A block's activation, dropout and residual (the conv's output rows are
        the leading rows of its input); after the last, norm and output projection."""
        h = dropout(F.relu(h), self.dropout, self.training)
        if self.blocks.residual:
            h = h + x[: h.size(0)]
        if i < self.num_layers - 1:
            return h
        return self.output_lin(h if self.norms is None else self.norms[-1](h))

    # Models whose conv i is combine(i, (sum over in-edges (u, v) of w_uv * x_u) @ W_i^T, x_v), W_i =
    # source_weight(i) (None: no projection): the distributed evaluator then aggregates the halo rows one
    # block at a time (``streams``), projecting before or after the sum, whichever is narrower.
    streams = False

    def stream_scales(self, in_degree: torch.Tensor, in_count: np.ndarray, num_targets: int):
        """(src, dst, loop): in-edge (u, v) into one of the first ``num_targets``
        nodes weighs src[u] * dst[v] (float32 arrays; None: 1), and target v's
        self-loop weighs loop[v] (None: no loop). ``in_degree`` is every row's
        global in-degree, ``in_count`` the in-edges each target has here."""
        raise NotImplementedError

    def source_weight(self, i: int) -> torch.Tensor | None:
        raise NotImplementedError

    def combine(self, i: int, agg, x_dst):
        raise NotImplementedError

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x, edge_index)

    def _conv_targets(self, i, x, adj, targets):
        """Outputs of the first ``targets`` rows: x holds every source row (bipartite convs)."""
        return self.convs[i]((x, x[:targets]), adj)

    def forward(self, x, edge_index, edge_weight=None):
        if edge_weight is None and edge_index.layout == torch.strided:  # not prepared yet
            edge_index, edge_weight = self.graph(edge_index, x.size(0))
        x = self.input(x, sparse=edge_index.layout != torch.strided)
        for i in range(self.num_layers):
            x = self.layer(i, x, edge_index, edge_weight)
        return x


def sparse_adjacency(edge_index, edge_weight, num_nodes, rows: int | None = None):
    """(adj_t, None) with adj_t a sparse CSR matrix, row = destination: PyG
    convs then aggregate with one SpMM, several times faster on CPU than
    scatter over ``edge_index``. Duplicate edges stay separate entries (not
    merged), so mean aggregation over a multigraph is unchanged. A row's
    entries are sorted by source unless the edges come sorted by destination. ``rows``:
    only destinations below it (a rows x num_nodes matrix)."""
    rows = num_nodes if rows is None else rows
    src, dst = edge_index
    crow = torch.zeros(rows + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=rows), 0)
    if bool((dst[1:] >= dst[:-1]).all()):  # already by destination (a sample, ``NeighborSampler``): no sort
        w = edge_weight if edge_weight is not None else torch.ones(len(src))
        return csr_matrix(crow, src, w, (rows, num_nodes)), None
    order = torch.argsort(src, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]  # by destination, then source
    w = edge_weight[order] if edge_weight is not None else torch.ones(len(order))
    return csr_matrix(crow, src[order], w, (rows, num_nodes)), None


def leading_rows(adj: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The first ``rows`` rows of a CSR matrix as a rows x cols matrix, sharing
    its storage (every entry of those rows must lie in the first ``cols`` columns)."""
    end = int(adj.crow_indices()[rows])
    return csr_matrix(adj.crow_indices()[: rows + 1], adj.col_indices()[:end], adj.values()[:end], (rows, cols))


class _Aggregate(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by ``adj``'s transpose built once per
    matrix (``transpose_of``): torch's own backward of a sparse CSR product
    rebuilds the transpose every pass, which dominated full-graph epochs."""

    @staticmethod
    def forward(ctx, x, adj):
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(transpose_of(ctx.adj), grad), None


def aggregate(adj: torch.Tensor, x: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Sum (or mean) over each row's entries of the CSR matrix ``adj`` (row =
    destination) of the weighted source rows of ``x``: what PyG's convs do
    with a sparse adjacency, with a backward that reuses the transpose."""
    out = _Aggregate.apply(x, adj) if x.requires_grad else torch.sparse.mm(adj, x)
    if not mean:
        return out
    inv = adj.__dict__.get("_grappa_inv_degree")
    if inv is None:  # 1 / in-edges of each row (at least 1), once per matrix
        inv = adj._grappa_inv_degree = 1.0 / adj.crow_indices().diff().clamp(min=1).to(x.dtype).unsqueeze(1)
    return out * inv


def project_first(adj: torch.Tensor, in_dim: int, out_dim: int) -> bool:
    """Whether a linear layer after a sum over ``adj`` costs fewer multiply-adds
    before it: projecting every source row then summing out_dim-wide rows,
    against summing in_dim-wide rows then projecting only the targets. A
    sampled step's sources are several times its targets (sum first); a
    full graph's last layer narrows to the classes (project first)."""
    targets, sources = adj.shape
    nnz = adj.values().numel()
    return sources * in_dim * out_dim + nnz * out_dim < nnz * in_dim + targets * in_dim * out_dim


def transpose_of(adj: torch.Tensor) -> torch.Tensor:
    """``adj``'s transpose as a CSR matrix (row = source), built at the first
    backward and kept on ``adj``, so a graph reused every epoch pays once."""
    t = adj.__dict__.get("_grappa_transpose")
    if t is None:
        rows, cols = adj.shape
        tcrow, trow, order = csr_transpose(adj.crow_indices(), adj.col_indices(), rows, cols)
        t = adj._grappa_transpose = csr_matrix(tcrow, trow, adj.values()[order], (cols, rows))
    return t


class SparseAdjacencyMixin:
    def adjacency(self, edge_index, edge_weight, num_nodes):
        return sparse_adjacency(edge_index, edge_weight, num_nodes)


@register_model("gcn")
class GCN(SparseAdjacencyMixin, LayerwiseGNN):
    """GCN (Kipf & Welling). Normalisation D^-1/2 (A+I) D^-1/2 is computed once
    per graph in ``prepare`` so layer-wise inference can reuse global degrees."""

    computes_targets_only = True

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5, residual=False, norm="none"):
        from torch_geometric.nn import GCNConv

        b = blocks_of(in_dim, hidden, out_dim, residual, norm)
        dims = conv_dims(in_dim, hidden, out_dim, num_layers, b is not None)
        super().__init__([GCNConv(dims[i], dims[i + 1], normalize=False) for i in range(num_layers)], dropout,
                         blocks=b)

    def prepare(self, edge_index, num_nodes):
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        return gcn_norm(edge_index, None, num_nodes, add_self_loops=True)

    def prepare_global(self, edge_index, num_nodes, in_degree, num_targets):
        loops = torch.arange(num_nodes, dtype=edge_index.dtype)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], 1)
        deg = in_degree.to(torch.float32) + 1.0  # + the self-loop, as gcn_norm counts it
        w = deg[ei[0]].rsqrt() * deg[ei[1]].rsqrt()
        # Non-targets lack their in-edges: a weight-1 self-loop keeps their own
        # row as the estimate of their output (never read for exact outputs).
        w[edge_index.size(1) + num_targets:] = 1.0
        return ei, w

    takes_sparse_input = True

    def _conv(self, i, x, edge_index, edge_weight):
        if edge_index.layout == torch.strided:  # an edge list (layer-wise inference): PyG's conv
            return self.convs[i](dense(x), edge_index, edge_weight)
        return self._conv_targets(i, x, edge_index, edge_index.size(0))

    def _conv_targets(self, i, x, adj, targets):
        conv = self.convs[i]  # GCNConv(normalize=False) over the prepared matrix: the self-loops are edges
        if isinstance(x, SparseRows) or project_first(adj, conv.in_channels, conv.out_channels):
            out = aggregate(adj, linear(x, conv.lin.weight))
        else:
            out = conv.lin(aggregate(adj, x))
        return out if conv.bias is None else out.add_(conv.bias)

    streams = True

    def stream_scales(self, in_degree, in_count, num_targets):
        inv_sqrt = 1.0 / np.sqrt(in_degree.numpy().astype(np.float32) + 1.0)  # the self-loop counts once
        return inv_sqrt, inv_sqrt[:num_targets], inv_sqrt[:num_targets] ** 2

    def source_weight(self, i):
        return self.convs[i].lin.weight  # GCNConv's lin has no bias

    def combine(self, i, agg, x_dst):
        return agg + self.convs[i].bias if self.convs[i].bias is not None else agg


@register_model("sage")
class SAGE(SparseAdjacencyMixin, LayerwiseGNN):
    computes_targets_only = True
    streams = True  # mean aggregation, root weight, no projection or normalisation (SAGEConv's defaults)
    takes_sparse_input = True

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5, residual=False, norm="none"):
        from torch_geometric.nn import SAGEConv

        b = blocks_of(in_dim, hidden, out_dim, residual, norm)
        dims = conv_dims(in_dim, hidden, out_dim, num_layers, b is not None)
        super().__init__([SAGEConv(dims[i], dims[i + 1]) for i in range(num_layers)], dropout, blocks=b)

    def _conv(self, i, x, edge_index, edge_weight):
        if edge_index.layout == torch.strided:  # an edge list (layer-wise inference): PyG's conv
            return self.convs[i](dense(x), edge_index)
        return self._conv_targets(i, x, edge_index, edge_index.size(0))

    def _conv_targets(self, i, x, adj, targets):
        conv = self.convs[i]  # SAGEConv's defaults: lin_l(mean of the sources) + lin_r(the target's own row)
        # the mean is linear: projecting first gives the same result
        if isinstance(x, SparseRows) or project_first(adj, conv.in_channels, conv.out_channels):
            neigh = aggregate(adj, linear(x, conv.lin_l.weight), mean=True)
            neigh = neigh if conv.lin_l.bias is None else neigh.add_(conv.lin_l.bias)
        else:
            neigh = conv.lin_l(aggregate(adj, x, mean=True))
        return neigh.add_(linear(x[:targets], conv.lin_r.weight, conv.lin_r.bias))

    def stream_scales(self, in_degree, in_count, num_targets):
        return None, 1.0 / np.maximum(in_count, 1).astype(np.float32), None  # the mean over the edges present

    def source_weight(self, i):
        return self.convs[i].lin_l.weight  # its bias is added once per node, in combine (also with no neighbour)

    def combine(self, i, agg, x_dst):
        out, bias = self.convs[i].lin_r(x_dst).add_(agg), self.convs[i].lin_l.bias
        return out if bias is None else out.add_(bias)


@register_model("gat")
class GAT(LayerwiseGNN):
    """GAT with ``heads`` attention heads (concatenated) in hidden layers and a
    single averaged head at the output, as in Velickovic et al. In blocks
    (``--residual``, ``--norm``) every conv averages its heads, hidden wide."""

    takes_heads = True  # build_model passes --heads

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.6, heads=8, residual=False, norm="none"):
        from torch_geometric.nn import GATConv

        b = blocks_of(in_dim, hidden, out_dim, residual, norm)
        if b is not None:
            convs = [GATConv(hidden, hidden, heads=heads, concat=False, dropout=dropout) for _ in range(num_layers)]
            super().__init__(convs, dropout, blocks=b)
            return
        convs = []
        d = in_dim
        for _ in range(num_layers - 1):
            convs.append(GATConv(d, hidden, heads=heads, dropout=dropout))
            d = hidden * heads
        convs.append(GATConv(d, out_dim, heads=1, dropout=dropout))
        super().__init__(convs, dropout)


@register_model("gin")
class GIN(SparseAdjacencyMixin, LayerwiseGNN):
    computes_targets_only = True

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5, residual=False, norm="none"):
        from torch_geometric.nn import GINConv

        blocks = blocks_of(in_dim, hidden, out_dim, residual, norm)
        dims = conv_dims(in_dim, hidden, out_dim, num_layers, blocks is not None)

        def mlp(a, b):
            return nn.Sequential(nn.Linear(a, hidden), nn.ReLU(), nn.Linear(hidden, b))

        super().__init__([GINConv(mlp(dims[i], dims[i + 1]), train_eps=True) for i in range(num_layers)], dropout,
                         blocks=blocks)


@register_model("mlp")
class MLP(LayerwiseGNN):
    """Ignores the graph: the baseline that shows whether the graph matters."""

    def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5, residual=False, norm="none"):
        b = blocks_of(in_dim, hidden, out_dim, residual, norm)
        dims = conv_dims(in_dim, hidden, out_dim, num_layers, b is not None)
        super().__init__([nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers)], dropout, blocks=b)

    computes_targets_only = True

    def _conv(self, i, x, edge_index, edge_weight):
        return self.convs[i](x)

    def _conv_targets(self, i, x, adj, targets):
        return self.convs[i](x[:targets])


def sampled_forward(model: nn.Module, x: torch.Tensor, sub) -> torch.Tensor:
    """The seeds' outputs (the first ``sub.num_seeds`` rows) over a sampled
    subgraph (``grappa.sampling.SampledSubgraph``, ``x``: its nodes' rows).

    Layer i of L computes only the rows within L - 1 - i hops of the seeds, from
    the rows within L - i (PyG's ``trim_to_layer``): the seeds' outputs are the
    untrimmed forward's, and a 3-layer step does a fraction of the work, as
    the outer hops hold most of the rows. Models that cannot compute a prefix
    of rows alone run the plain forward.
    """
    if not (isinstance(model, LayerwiseGNN) and model.computes_targets_only
            and len(sub.hop_nodes) == model.num_layers + 1):
        return model(x, sub.edge_index)[: sub.num_seeds]
    # One matrix for the whole sample (GCN: normalised over it, as untrimmed); its
    # rows are the destinations, so each layer's targets are its leading rows.
    adj, _ = sparse_adjacency(*model.prepare(sub.edge_index, x.size(0)), x.size(0))
    h, L = model.input(x, sparse=True), model.num_layers
    for i in range(L):
        targets, sources = sub.hop_nodes[L - 1 - i], sub.hop_nodes[L - i]
        h = model.layer(i, h[:sources], leading_rows(adj, targets, sources), targets=targets)
    return h[: sub.num_seeds]


def graph_args(model: nn.Module, edge_index: torch.Tensor, num_nodes: int) -> tuple:
    """What to pass after ``x`` to ``model`` for repeated forwards over one
    graph: the prepared structure for built-in models, ``edge_index`` for others."""
    return model.graph(edge_index, num_nodes) if isinstance(model, LayerwiseGNN) else (edge_index,)


def build_model(name: str, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                dropout: float = 0.5, heads: int = 8, residual: bool = False, norm: str = "none") -> nn.Module:
    """``--residual``/``--norm`` reach the model only when given: a plugin model
    without them still builds, and one asked for them says it cannot."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    blocks = {"residual": residual, "norm": norm} if residual or norm != "none" else {}
    if blocks and not issubclass(cls, LayerwiseGNN):
        raise ValueError(f"--model {name} does not take --residual or --norm (not a LayerwiseGNN)")
    try:
        model = cls(in_dim, hidden, out_dim, num_layers, dropout, heads, **blocks) \
            if getattr(cls, "takes_heads", False) else cls(in_dim, hidden, out_dim, num_layers, dropout, **blocks)
    except TypeError:
        if not blocks:
            raise
        raise ValueError(f"--model {name} does not take --residual or --norm") from None
    remove_generated_sources(model)
    return model


def remove_generated_sources(model: nn.Module) -> None:
    """Delete the source files PyG generated for ``model``'s convs.

    PyG writes each conv class's compiled ``propagate`` (and ``edge_updater``)
    module to the temp directory, once per process, and never removes it
    (``torch_geometric/template.py``: ``delete=False``): every rank of every
    job would leave a few files in a compute node's /tmp. The module is
    loaded by then and its file is not read again (only tracebacks lose the
    lines of the generated code), so the files found in the temp directory
    are removed."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for m in model.modules():
        for fn in (getattr(type(m), "_jinja_propagate", None), getattr(type(m), "_jinja_edge_updater", None)):
            module = sys.modules.get(getattr(fn, "__module__", None) or "")
            if getattr(module, "__file__", None) is None:
                continue
            path = Path(module.__file__)
            if path.parent.resolve() == tmp and path.name.startswith(f"{module.__name__}_"):
                path.unlink(missing_ok=True)


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
    h = model.input(x)  # eval mode: the features as they are, or the blocks' input projection
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
