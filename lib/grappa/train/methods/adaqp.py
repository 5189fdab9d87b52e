"""AdaQP: the halo exchange with quantized messages (METHODS.md section 5).

Full-graph training on the METIS partition of ``--method halo``, with the
same ``HaloPlan``, but every boundary row (forward features, backward
gradients) travels through ``StochasticQuantizer`` (``grappa.comm.codec``)
at 2, 4 or 8 bits, bit-packed; validation and test use full precision.

Bit-widths: the first cycle uses 8 bits everywhere. While training, each
rank traces, for every row it sends, alpha_u^2 (D/6)(max - min)^2 summed
over the cycle (alpha_u: the sum of u's aggregation weights at the
receiver). Every ``assign_cycle`` epochs rank 0 gathers each channel's
messages grouped by that score, solves ``grappa.train.bit_assignment`` per
layer and direction against a per-channel linear cost model profiled at
start-up, and broadcasts one bit-width per group; each sender then tells
its receivers the bit-width of every row (``train_assign``).

Overlap: owned nodes without a remote in-neighbour (central) are
aggregated while the marginal nodes' rows are in flight (a non-blocking
alltoallv); ``--no-overlap`` (``adaqp-no-overlap``) waits first, like halo.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from grappa.comm.codec import StochasticQuantizer
from grappa.errors import check_options
from grappa.id_sets import setdiff
from grappa.models import GIN
from grappa.train.bit_assignment import SOLVERS, AssignmentProblem, group_messages
from grappa.train.halo_exchange import Link
from grappa.train.methods.halo_method import HaloMethod

FWD, BWD = 0, 1


@dataclass
class AdaQPOptions:
    """AdaQP: quantized halo exchange with adaptive bit-widths."""

    assign_cycle: int = field(default=10, metadata={
        "help": "epochs between bit-width assignments (the first cycle uses 8 bits)"})
    group_size: int = field(default=100, metadata={"help": "messages per group (one bit-width each)"})
    variance_weight: float = field(default=0.5, metadata={
        "help": "lambda: weight of the normalised variance against the normalised transfer time"})
    solver: str = field(default="greedy", metadata={"help": "bit-width solver", "choices": list(SOLVERS)})
    fixed_bits: int = field(default=0, metadata={
        "help": "0: adaptive; 2, 4 or 8: that width for every message", "choices": [0, 2, 4, 8]})
    overlap: bool = field(default=True, metadata={
        "help": "aggregate central nodes while the marginal nodes' rows are in flight"})
    profile: bool = field(default=True, metadata={
        "help": "fit each channel's time against bytes at start-up; --no-profile: time = bytes (reproducible)"})

    def __post_init__(self):
        check_options(self, (("--assign-cycle", self.assign_cycle >= 1, "at least 1"),
                             ("--group-size", self.group_size >= 1, "at least 1"),
                             ("--variance-weight", 0.0 <= self.variance_weight <= 1.0, "in [0, 1]")))


@dataclass
class _Layout:
    """Some owned nodes' layer outputs from a compact input: rows ``gather`` of
    the layer input, the prepared graph over them, the first ``count`` outputs."""

    gather: torch.Tensor
    graph: tuple
    count: int


class AdaQP(HaloMethod):
    """Halo exchange with stochastically quantized, adaptively sized messages.

    Args (``AdaQPOptions``):
        assign_cycle (int): epochs between bit-width assignments (default 10).
        group_size (int): messages per bit-width group (default 100).
        variance_weight (float): lambda of the objective (default 0.5).
        solver (str): ``"greedy"`` or ``"milp"`` (PuLP + CBC) (default ``"greedy"``).
        fixed_bits (int): 0 = adaptive, else that width everywhere (default 0).
        overlap (bool): central aggregation during the transfer (default True).
        profile (bool): profiled cost model; False: time = bytes (default True).
    """

    name, label = "adaqp", "AdaQP"
    fault_flags = ("--no-profile",)  # its byte cost model would differ run to run
    Options = AdaQPOptions
    categories = ("train_grad", "train_feat", "train_act_grad", "train_assign")
    resume_any_world_size = False  # bit-widths belong to one partition's channels

    def __init__(self, cfg, comm, data, model, optimizer, stop_flag=lambda: False):
        super().__init__(cfg, comm, data, model, optimizer, stop_flag)
        plan, n = self.plan, self.plan.num_owned
        self.codec = StochasticQuantizer()
        ei, ew = model.prepare_global(plan.edge_index, plan.num_nodes, plan.in_degree, n)
        alpha_halo = self._alpha(ei, ew, plan.in_degree)
        # Each owner learns alpha of the rows it sends (the backward direction's layout).
        alpha_send, _ = comm.alltoallv(alpha_halo[:, None], plan.recv_splits, "setup")
        self.alpha = {FWD: alpha_send[:, 0].numpy(), BWD: alpha_halo.numpy()}
        self.splits = {FWD: (plan.send_splits, plan.recv_splits), BWD: (plan.recv_splits, plan.send_splits)}
        self.links: dict[tuple[int, int], Link] = {}  # (layer, direction) -> the widths on its wire
        for i in range(model.num_layers):
            for d in (FWD, BWD):
                self._set_bits(i, d, *self._uniform(d, self.opts.fixed_bits or 8))
        self.scores = {key: np.zeros(len(link.bits_out)) for key, link in self.links.items()}
        self.history: list[dict] = []
        p = comm.size
        self.slope, self.intercept = np.ones(p * p), np.zeros(p * p)
        if self.opts.profile and not self.opts.fixed_bits and p > 1:
            self.slope, self.intercept = self._profile_channels()
        if self.opts.overlap:
            self.layouts = self._layouts(ei, ew)
        self.dims = self._layer_dims()

    # ------------------------------------------------------------- set-up
    def _alpha(self, ei, ew, in_degree) -> torch.Tensor:
        """alpha_u of every halo row: the sum of its aggregation weights here."""
        n, src, dst = self.plan.num_owned, ei[0], ei[1]
        if ew is not None:
            w = ew.double()
        elif isinstance(self.model, GIN):
            w = torch.ones(len(src), dtype=torch.float64)
        else:  # mean aggregation (SAGE; GAT's attention averaged)
            w = 1.0 / in_degree[dst].clamp(min=1).double()
        halo = (src >= n) & (dst < n)  # not the halo rows' own self-loops (GCN)
        return torch.zeros(self.plan.num_halo, dtype=torch.float64).index_add_(0, src[halo] - n, w[halo])

    @torch.no_grad()
    def _layer_dims(self) -> list[int]:
        """Input width of every layer (one node through the model)."""
        m, dims = self.model, []
        graph = m.graph_global(torch.zeros((2, 0), dtype=torch.int64), 1, torch.zeros(1), 1)
        was = m.training
        m.eval()
        h = m.input(self.x[:1])
        for i in range(m.num_layers):
            dims.append(int(h.shape[1]))
            h = m.layer(i, h, *graph)
        m.train(was)
        return dims

    def _uniform(self, direction: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        out, inn = self.splits[direction]
        return np.full(sum(out), b, np.int64), np.full(sum(inn), b, np.int64)

    def _layouts(self, ei, ew) -> tuple[_Layout, _Layout, torch.Tensor]:
        """Central and marginal layouts and the permutation back to owned order."""
        n = self.plan.num_owned
        marginal = np.zeros(n, bool)
        dst = ei[1][ei[0] >= n]
        marginal[dst[dst < n].numpy()] = True
        central_nodes, marginal_nodes = np.flatnonzero(~marginal), np.flatnonzero(marginal)
        order = np.concatenate([central_nodes, marginal_nodes])
        return (self._layout(ei, ew, central_nodes), self._layout(ei, ew, marginal_nodes),
                torch.from_numpy(np.argsort(order)))

    def _layout(self, ei, ew, targets: np.ndarray) -> _Layout:
        is_target = np.zeros(self.plan.num_nodes, bool)
        is_target[targets] = True
        keep = torch.from_numpy(is_target[ei[1].numpy()])
        e = ei[:, keep]
        others = setdiff(e[0].numpy(), targets)
        nodes = np.concatenate([targets, others])
        pos = np.full(self.plan.num_nodes, -1, np.int64)
        pos[nodes] = np.arange(len(nodes))
        graph = self.model.adjacency(torch.from_numpy(pos[e.numpy()]), None if ew is None else ew[keep], len(nodes))
        return _Layout(torch.from_numpy(nodes), graph, len(targets))

    def _profile_channels(self, reps: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Time a transfer on each ring channel at three sizes; fit seconds =
        intercept + slope x MB per channel (the sender's view); allgather the fits."""
        comm, p, r = self.comm, self.comm.size, self.comm.rank
        # One size for every rank: a receiver expects what its sender sends (a rank's own
        # largest split differs from its neighbour's; gloo aborts on the longer message).
        top = int(comm.allreduce_object_max(max(4096, max(self.plan.send_splits) * self.x.shape[1] * 4)))
        fits = []
        for step in range(1, p):
            to, frm = (r + step) % p, (r - step) % p
            xs, ys = [], []
            for size in (top // 16, top // 4, top):
                for _ in range(reps):
                    out, inn = [0] * p, [0] * p
                    out[to], inn[frm] = size, size
                    comm.barrier()
                    t0 = time.perf_counter()
                    comm.ialltoallv(torch.zeros(size, dtype=torch.uint8), out, inn, "setup").wait()
                    xs.append(size / 1e6)
                    ys.append(time.perf_counter() - t0)
            slope, icpt = np.polyfit(xs, ys, 1)
            fits.append([r * p + to, max(slope, 1e-6), max(icpt, 0.0)])
        table = comm.allgather(torch.tensor(fits, dtype=torch.float64), "setup").numpy()
        slope, intercept = np.zeros(p * p), np.zeros(p * p)
        slope[table[:, 0].astype(np.int64)], intercept[table[:, 0].astype(np.int64)] = table[:, 1], table[:, 2]
        return slope, intercept

    # ---------------------------------------------------------- training
    def _set_bits(self, layer: int, direction: int, bits_out: np.ndarray, bits_in: np.ndarray) -> None:
        out, inn = self.splits[direction]
        self.links[layer, direction] = Link(self.codec, bits_out, bits_in, out, inn,
                                            lambda rows: self._trace(layer, direction, rows))

    def _trace(self, layer: int, direction: int, rows: torch.Tensor) -> None:
        if self.opts.fixed_bits or not len(rows):
            return
        span = (rows.max(1).values - rows.min(1).values).double().numpy()
        self.scores[layer, direction] += self.alpha[direction] ** 2 * rows.shape[1] / 6.0 * span ** 2

    def forward(self) -> torch.Tensor:
        """Owned nodes' outputs; each layer's boundary rows quantized."""
        m, plan = self.model, self.plan
        h = m.input(self.x)
        for i in range(m.num_layers):
            link, grad_link = self.links[i, FWD], self.links[i, BWD]
            if not self.opts.overlap:
                h = self.owned_outputs(i, plan.exchange(h, "train_feat", "train_act_grad", link, grad_link))
                continue
            central, marginal, back = self.layouts
            halo = plan.start_fetch(h.detach(), "train_feat", link)
            hc = m.layer(i, h[central.gather], *central.graph)[: central.count]  # while the rows travel
            full = plan.attach(h, halo, "train_act_grad", grad_link)
            hm = m.layer(i, full[marginal.gather], *marginal.graph)[: marginal.count]
            h = torch.cat([hc, hm])[back]
        return h

    def train_epoch(self, epoch: int) -> float:
        if not self.opts.fixed_bits and epoch > 0 and epoch % self.opts.assign_cycle == 0:
            self.assign_bits(epoch)
        return super().train_epoch(epoch)

    def is_boundary(self, epoch: int) -> bool:
        return epoch % self.opts.assign_cycle == 0

    # -------------------------------------------------------- assignment
    def assign_bits(self, epoch: int) -> None:
        """Re-assign every layer's and direction's bit-widths from the traced scores."""
        record = {"epoch": epoch, "solver_s": 0.0, "bits": {}}
        for (layer, d), score in self.scores.items():
            if d == BWD and layer == 0:
                continue  # the input features need no gradient: nothing travels back
            bits_out, hist, solve_s = self._assign_one(score, d, self.dims[layer])
            out, inn = self.splits[d]
            bits_in, _ = self.comm.alltoallv(torch.from_numpy(bits_out.astype(np.uint8))[:, None], out,
                                             "train_assign")
            self._set_bits(layer, d, bits_out, bits_in[:, 0].numpy().astype(np.int64))
            record["bits"][f"layer{layer}-{'fwd' if d == FWD else 'bwd'}"] = hist
            record["solver_s"] += solve_s
            score[:] = 0.0
        self.history.append(record)

    def _assign_one(self, score: np.ndarray, direction: int, dim: int):
        """(bits of this rank's outgoing rows, global histogram, solver seconds)."""
        comm, p = self.comm, self.comm.size
        out_splits = self.splits[direction][0]
        channel = comm.rank * p + np.repeat(np.arange(p), out_splits)
        group_of, gch, grows, gscore = group_messages(channel, score, self.opts.group_size, p)
        mine = torch.from_numpy(np.stack([gch, grows, gscore], 1).astype(np.float64))
        table = comm.allgather(mine, "train_assign").numpy()
        prob = AssignmentProblem(p, dim, table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2],
                                 self.slope, self.intercept)
        reply = torch.zeros(len(table) + 1, dtype=torch.float64)
        if comm.rank == 0:
            t0 = time.perf_counter()
            reply[1:] = torch.from_numpy(SOLVERS[self.opts.solver](prob, self.opts.variance_weight).astype(np.float64))
            reply[0] = time.perf_counter() - t0
        reply = comm.broadcast(reply, 0, "train_assign").numpy()
        group_bits = reply[1:].astype(np.int64)
        # Gathered in rank order, channel = sender x P + receiver: the groups before mine are lower ranks'.
        first = int(np.count_nonzero(table[:, 0] // p < comm.rank))
        hist = {str(b): int(prob.group_rows[group_bits == b].sum()) for b in (2, 4, 8)}
        return group_bits[first: first + len(gch)][group_of], hist, float(reply[0])

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "adaqp": {"history": self.history, "slope": self.slope.tolist(),
                                                  "intercept": self.intercept.tolist()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = state["adaqp"]["history"]
        self.slope, self.intercept = np.array(state["adaqp"]["slope"]), np.array(state["adaqp"]["intercept"])

    def rank_state_dict(self) -> dict:
        return {"bits": {f"{k[0]}-{k[1]}": [torch.from_numpy(link.bits_out), torch.from_numpy(link.bits_in)]
                         for k, link in self.links.items()},
                "scores": {f"{k[0]}-{k[1]}": torch.from_numpy(v) for k, v in self.scores.items()}}

    def load_rank_state_dict(self, state: dict) -> None:
        for key in list(self.links):
            name = f"{key[0]}-{key[1]}"
            self._set_bits(*key, *(t.numpy() for t in state["bits"][name]))
            self.scores[key] = state["scores"][name].numpy().copy()

    def result_extra(self) -> dict:
        return {**super().result_extra(), "bit_histograms": self.history,
                "solver_s_total": float(sum(h["solver_s"] for h in self.history)),
                "overlap": self.opts.overlap}


    @classmethod
    def bench_summary(cls, runs: list[dict]) -> dict:
        """Mean bits per message of the assigned cycles, per layer and direction, over seeds; the
        solver's total time."""
        if not runs[0].get("bit_histograms"):
            return {}
        bits: dict[str, list[float]] = {}
        for r in runs:
            for cycle in r["bit_histograms"]:
                for key, hist in cycle["bits"].items():
                    n = sum(hist.values())
                    bits.setdefault(key, []).append(sum(int(b) * c for b, c in hist.items()) / max(n, 1))
        return {"mean_bits_assigned": {k: float(np.mean(v)) for k, v in sorted(bits.items())},
                "solver_s_total_mean": float(np.mean([r["solver_s_total"] for r in runs])),
                "assign_cycles": len(runs[0]["bit_histograms"])}

    @classmethod
    def bench_lines(cls, summary: dict, metric: str, predicted: dict) -> list[str]:
        """AdaQP against halo: accuracy, bytes (all and exchange only), bits, overlap saving."""
        if cls is not AdaQP or cls.label not in summary or HaloMethod.label not in summary:
            return []
        q, h = summary[cls.label], summary[HaloMethod.label]

        def exchange(s):
            cats = s["train_bytes_per_rank_per_epoch_by_category"]
            return cats.get("train_feat", 0.0) + cats.get("train_act_grad", 0.0)

        ratio = q["train_bytes_per_rank_per_epoch"] / h["train_bytes_per_rank_per_epoch"]
        lines = [f"- AdaQP vs halo: test {metric} {100 * (q['test_mean'] - h['test_mean']):+.2f} points; training "
                 f"bytes per rank per epoch {ratio:.3f}x of halo's (the halo exchange alone: "
                 f"{exchange(q) / exchange(h):.3f}x); epoch time "
                 f"{q['epoch_time_s_median'] / h['epoch_time_s_median']:.2f}x.",
                 f"- AdaQP bit-widths, mean bits per message over the {q.get('assign_cycles', 0)} assigned cycles "
                 f"(the first cycle is 8 bits): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                               q.get("mean_bits_assigned", {}).items())
                 + f"; solver time {q.get('solver_s_total_mean', 0.0):.3f} s per run."]
        if AdaQPNoOverlap.label in summary:
            w, o = summary[AdaQPNoOverlap.label]["epoch_time_s_median"], q["epoch_time_s_median"]
            lines.append(f"- AdaQP overlap: {1000 * (w - o):+.1f} ms per epoch saved against the same run without "
                         f"overlap ({1000 * w:.1f} -> {1000 * o:.1f} ms, {100 * (w - o) / w:+.1f}%).")
        return lines


class AdaQPNoOverlap(AdaQP):
    """AdaQP waiting for the marginal rows before aggregating (measures the overlap's saving)."""

    name, label, defaults = "adaqp-no-overlap", "AdaQP (no overlap)", {"overlap": False}
