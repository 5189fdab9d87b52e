"""Exact, distributed, layer-wise full-neighbour evaluation.

Each rank evaluates the nodes it currently owns. Per layer it fetches, from
their owners, the rows of in-neighbours that live on other ranks (a
``HaloPlan`` exchange, counted as ``eval`` bytes: never training bytes),
then applies the layer to [own rows; fetched rows]. GCN normalisation uses
the *global* in-degrees from the shards, so the result equals centralized
full-graph inference.

Models whose layer is a weighted sum over in-edges followed by a per-node
update (GCN, SAGE: ``model.streams``) never hold every halo row at once:
per layer the rows arrive from one peer at a time, in blocks of at most
``block_rows`` (P - 1 ring rounds), and each block is added into the owned
nodes' sums as it arrives (``BlockAggregation``). The layer's source
projection is applied before the sum (by the sender) when it narrows the
rows, after it otherwise, so a layer's rows travel and are summed at
min(input, output) width. What a rank holds: its in-edges once, as the
int32 columns of block patterns (4 B per edge; the weights are made per
block as it is used), the owned nodes' sums and a layer's input and
output; never every halo row. The plan's edges may come from its arrays or
be streamed from the shards (``HaloPlan.from_shards``): then the in-edges
are never held whole at all.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from grappa.comm import MAX
from grappa.graph.csr import index_dtype
from grappa.graph.raw import SPLIT_TEST, SPLIT_VAL
from grappa.memory import TRIM_AT_PHASE_EDGE, trim_heap
from grappa.models import LayerwiseGNN, as_float, csr_matrix
from grappa.train.evaluate import auc_inputs, roc_auc
from grappa.train.halo_exchange import HaloPlan

BLOCK_ROWS = 1 << 18  # halo rows held at once by a streamed evaluation (64 MB at 64 float32 columns)
COMBINE_ROWS = 1 << 16  # rows a layer's per-node update runs on at once: a few of its temporaries are alive


class DistributedEvaluator:
    """Args:
        plan (HaloPlan): who owns what, and every in-edge of the owned nodes.
        x_own (Tensor): the owned nodes' features.
        category (str): the byte counter of its exchanges (default "eval").
        block_rows (int): halo rows held at once by a streamed evaluation (default ``BLOCK_ROWS``).
        release (callable, optional): called once a streaming model's blocks
            are built, which then hold all the evaluation needs: the caller
            frees its per-edge arrays (and the plan's). Streaming models only
            afterwards (default None: nothing is freed).
    """

    def __init__(self, plan: HaloPlan, x_own: torch.Tensor, category: str = "eval", block_rows: int = BLOCK_ROWS,
                 release: Callable[[], None] | None = None):
        self.plan, self.x, self.category, self.block_rows = plan, x_own, category, block_rows
        self.release, self.released = release, False
        self._x_full = None
        self._graph = None  # the model's prepared structure over the plan's edges
        self._blocks = None  # BlockAggregation, for streaming models

    def input_rows(self) -> torch.Tensor:
        """Layer-0 input: the features never change while ownership holds, so
        the remote rows are fetched once, not at every evaluation."""
        if self._x_full is None:
            self._x_full = self.plan.fetch(self.x, self.category)
        return self._x_full

    @torch.no_grad()
    def logits(self, model) -> torch.Tensor:
        """Eval-mode outputs of the owned nodes."""
        model.eval()
        if not isinstance(model, LayerwiseGNN):
            raise TypeError("distributed evaluation needs a LayerwiseGNN (layer(i, x, edge_index, w))")
        if self.released and not model.streams:
            raise RuntimeError("this evaluator released its in-edges after building its blocks: a model that "
                               "does not stream needs a new DistributedEvaluator")
        if model.streams:
            if self._blocks is None:  # the blocks hold the edges' pattern: any streaming model reuses them
                self._blocks = BlockAggregation(self.plan, self.block_rows, self.category)
                if self.release is not None:
                    self.release()
                    self.released = True
                trim_heap()  # the plan's and the blocks' set-up temporaries: not kept through the forward
            return self._blocks.forward(model, self.x)
        p = self.plan
        if self._graph is None or self._graph[0] is not model:
            self._graph = (model, model.graph_owned(p.edge_index, p.num_nodes, p.in_degree, p.num_owned))
        g = self._graph[1]
        h = model.layer_owned(0, model.input(self.input_rows()), g, p.num_owned)  # eval: no dropout
        for i in range(1, model.num_layers):
            h = model.layer_owned(i, p.fetch(h, self.category), g, p.num_owned)
        return h

    def metrics(self, model, y_own: torch.Tensor, split_own: np.ndarray, metric: str) -> tuple[float, float]:
        """(validation, test) ``metric`` over the whole graph, every rank the same."""
        return self.scores(self.logits(model), y_own, split_own, metric)

    def scores(self, logits, y_own: torch.Tensor, split_own: np.ndarray, metric: str) -> tuple[float, float]:
        """(validation, test) ``metric`` of the owned nodes' ``logits``, combined over ranks."""
        comm = self.plan.comm
        if metric == "roc_auc":  # AUC is not a sum: gather the scores (one column for two classes)
            res = []
            for code in (SPLIT_VAL, SPLIT_TEST):
                idx = torch.from_numpy(np.flatnonzero(split_own == code))
                s, t = auc_inputs(logits[idx], y_own[idx])
                res.append(roc_auc(comm.allgather(s, self.category), comm.allgather(t, self.category)))
            return res[0], res[1]
        stats = []
        for code in (SPLIT_VAL, SPLIT_TEST):
            idx = torch.from_numpy(np.flatnonzero(split_own == code))
            stats += [float((logits[idx].argmax(1) == y_own[idx]).sum()), float(len(idx))]
        tot = comm.allreduce(torch.tensor(stats, dtype=torch.float64), category=self.category)
        return float(tot[0] / max(tot[1], 1)), float(tot[2] / max(tot[3], 1))


class BlockAggregation:
    """A streaming model's layers over the plan, one block of halo rows at a time.

    Block 0 is the rank's own rows; then, in ring round k = 1 .. P-1, the rows
    that rank r - k owns arrive in blocks of at most ``block_rows`` (every
    rank runs the same number of blocks per round: alltoallv is collective)
    while this rank sends its rows to rank r + k. Each block holds the
    pattern of its in-edges (an owned x block-rows CSR with int32 indices:
    4 B per edge in all), built once from ``plan.edge_chunks()`` (the plan's
    arrays, or the shards streamed); the weights are the model's
    ``stream_scales``, applied per block as it is used."""

    def __init__(self, plan: HaloPlan, block_rows: int, category: str):
        self.plan, self.category, self.block_rows = plan, category, block_rows
        comm, n, r, p = plan.comm, plan.num_owned, plan.comm.rank, plan.comm.size
        recv_at = n + np.concatenate([[0], np.cumsum(plan.recv_splits)])  # halo rows by owner, in [own; halo]
        send_at = np.concatenate([[0], np.cumsum(plan.send_splits)])  # send_idx by destination
        need = [max(-(-plan.recv_splits[(r - k) % p] // block_rows), -(-plan.send_splits[(r + k) % p] // block_rows))
                for k in range(1, p)]
        rounds = comm.allreduce(torch.tensor([0.0, *need], dtype=torch.float64), MAX, "control").long().tolist()
        # Each step: (rows received: [lo, hi) of [own; halo], rows sent: [lo, hi) of send_idx, to, from).
        self.steps = [((0, n), (0, 0), r, r)]
        for k in range(1, p):
            frm, to = (r - k) % p, (r + k) % p
            for b in range(rounds[k]):
                self.steps.append((_block(recv_at, frm, b, block_rows), _block(send_at, to, b, block_rows), to, frm))
        self.patterns = _block_patterns(plan.edge_chunks(), [rows for rows, *_ in self.steps], n)
        self.in_count = sum(np.diff(crow) for crow, _ in self.patterns)  # in-edges per owned node

    @torch.no_grad()
    def forward(self, model: LayerwiseGNN, x_own: torch.Tensor) -> torch.Tensor:
        n = len(x_own)
        src_scale, dst_scale, loop = model.stream_scales(self.plan.in_degree, self.in_count, n)
        h = x_own
        for i in range(model.num_layers):
            w = model.source_weight(i)
            first = w is not None and w.shape[0] < w.shape[1]  # project, then send and sum narrower rows
            agg = own = None
            for b, rows in enumerate(self._rows(h, w if first else None)):
                adj = self._matrix(b, src_scale, n)
                if agg is None:  # the own rows come first
                    agg, own = adj @ rows, rows
                else:
                    torch.addmm(agg, adj, rows, out=agg)  # accumulate in place: no block-sized temporary
                del adj
            if dst_scale is not None:
                agg.mul_(torch.from_numpy(dst_scale)[:, None])
            if loop is not None:
                agg.addcmul_(torch.from_numpy(loop)[:, None], own)
            del own
            h = self._combine(model, i, agg, h, None if first else w)
            del agg
            # A layer's blocks and temporaries are not reused by the next (other widths): within training's
            # freed_pages_kept they would stay resident, and a layer peaked on top of the last one's (96M edges:
            # 400 MB of free heap, the evaluation past 1.5 GB a rank).
            trim_heap(TRIM_AT_PHASE_EDGE)
        return h

    def _matrix(self, b: int, src_scale, n: int) -> torch.Tensor:
        """Step b's (owned x block rows) weighted adjacency, built for one use."""
        (lo, hi), (crow, col) = self.steps[b][0], self.patterns[b]
        w = np.ones(len(col), np.float32) if src_scale is None else src_scale[lo:hi][col]
        return csr_matrix(torch.from_numpy(crow), torch.from_numpy(col), torch.from_numpy(w), (n, hi - lo))

    def _combine(self, model, i: int, agg: torch.Tensor, h: torch.Tensor, w) -> torch.Tensor:
        """The layer's per-node update (and the projection still owed, ``w``),
        a block of rows at a time: its temporaries are block-sized, not
        (owned nodes x width)."""
        n, out, rows = len(h), None, min(self.block_rows, COMBINE_ROWS)
        for lo in range(0, max(n, 1), rows):
            a = agg[lo:lo + rows]
            part = model.activate(i, model.combine(i, _project(a, w), as_float(h[lo:lo + rows])))
            if out is None:
                out = torch.empty(n, part.shape[1])
            out[lo:lo + len(part)] = part
        return out

    def _rows(self, h: torch.Tensor, w: torch.Tensor | None):
        """Each step's rows (projected by ``w`` if given): the own rows, then one alltoallv per block."""
        p, size = self.plan, self.plan.comm.size
        own = _project(h, w)  # the rows sent are some of these: projected once, gathered narrow
        yield as_float(own)
        for (lo, hi), (s_lo, s_hi), to, frm in self.steps[1:]:
            send, recv = [0] * size, [0] * size
            send[to], recv[frm] = s_hi - s_lo, hi - lo
            rows = own[p.send_idx[s_lo:s_hi]]  # float16 features travel as they are stored
            yield as_float(p.comm.ialltoallv(rows, send, recv, self.category).wait())


def _project(rows: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return rows if w is None else as_float(rows) @ w.T


def _block_patterns(edge_chunks, ranges: list[tuple[int, int]], rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each source range [lo, hi): (crow, col), the CSR pattern (rows x
    hi - lo) of the in-edges whose source row is in it. ``edge_chunks`` yields
    (source row, destination row) arrays in destination order, so each
    range's edges stay in that order as they are appended: no sort, and only
    a chunk's temporaries besides the int32 columns."""
    live = sorted((lo, b) for b, (lo, hi) in enumerate(ranges) if hi > lo)
    los, ids = np.array([lo for lo, _ in live], np.int64), [b for _, b in live]
    cols, counts = [[] for _ in ranges], [np.zeros(rows, np.int32) for _ in ranges]
    for src, dst in edge_chunks:
        # a range per edge; int16 lets the stable sort be a radix sort (one pass, not n log n)
        which = (np.searchsorted(los, src, side="right") - 1).astype(index_dtype(len(los), np.int16))
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(los) + 1))
        for j, b in enumerate(ids):
            sel = order[bounds[j]:bounds[j + 1]]
            if len(sel):
                cols[b].append((src[sel] - ranges[b][0]).astype(np.int32))
                counts[b] += np.bincount(dst[sel], minlength=rows)
    out = []
    for b in range(len(ranges)):
        nnz = int(counts[b].sum(dtype=np.int64))
        idx = index_dtype(max(nnz, ranges[b][1] - ranges[b][0], rows))  # torch wants one dtype for crow and col
        crow = np.zeros(rows + 1, idx)
        np.cumsum(counts[b], out=crow[1:], dtype=idx)
        col = np.concatenate(cols[b]).astype(idx, copy=False) if cols[b] else np.zeros(0, idx)
        cols[b] = counts[b] = None  # freed as we go: one range's columns are copied at a time
        out.append((crow, col))
    return out


def _block(starts: np.ndarray, peer: int, b: int, block_rows: int) -> tuple[int, int]:
    """Rows [lo, hi) of block ``b`` of ``peer``'s segment (empty past its end)."""
    end = int(starts[peer + 1])
    lo = min(int(starts[peer]) + b * block_rows, end)
    return lo, min(lo + block_rows, end)
