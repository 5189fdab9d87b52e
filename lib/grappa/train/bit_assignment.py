"""AdaQP's bit-width assignment: quantization variance against transfer time.

One problem per layer and direction (METHODS.md section 5, as in the
authors' code). The messages on each channel (sender -> receiver) are sorted
by their traced variance score alpha_u^2 (D/6)(max - min)^2 and cut into
groups; each group gets one bit-width b in {2, 4, 8}. Minimise

    lambda (V - V_min) / (V_max - V_min) + (1 - lambda) (T - T_min) / (T_max - T_min)

with V = sum over groups of score / (2^b - 1)^2, T = the sum over the P - 1
ring rounds (in round r rank i sends to rank i + r mod P) of the round's
slowest channel, a channel taking intercept + slope x MB seconds (a linear
fit of profiled transfers), and the extremes those of all-8-bit and
all-2-bit assignments.

Two solvers: ``solve_milp`` (exact, PuLP + CBC) and ``solve_greedy``. The
greedy one uses the problem's structure: rounds share no channel, so it
splits into one problem per round; within a round, for a cap t on the
round's time, each channel's best assignment is a multiple-choice knapsack
whose convex-hull solution is a prefix of the channel's moves (8 -> 4 and
4 -> 2 per group) sorted by variance added per byte saved. It tries every
channel's breakpoints as the cap. tests/test_adaqp.py checks it within 1%
of the MILP on generated instances.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grappa.comm.codec import row_bytes

WIDTHS = np.array([2, 4, 8])


def variance_factor(bits) -> np.ndarray:
    """Quantization variance per unit score at ``bits``: 1 / (2^b - 1)^2."""
    return 1.0 / (2.0 ** np.asarray(bits, np.float64) - 1.0) ** 2


@dataclass
class AssignmentProblem:
    """Message groups of one layer and direction.

    Args:
        world_size (int): P; channel c = sender x P + receiver.
        dim (int): values per message (the layer's width).
        group_channel (array): each group's channel.
        group_rows (array): messages in each group.
        group_score (array): each group's summed variance score.
        slope (array): seconds per MB of each channel (P x P values).
        intercept (array): seconds of each channel's empty transfer.
    """

    world_size: int
    dim: int
    group_channel: np.ndarray
    group_rows: np.ndarray
    group_score: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray

    def group_bytes(self, bits) -> np.ndarray:
        return self.group_rows * row_bytes(bits, self.dim)

    def variance(self, bits) -> float:
        return float(np.sum(self.group_score * variance_factor(bits)))

    def channel_times(self, bits) -> np.ndarray:
        p = self.world_size
        mb = np.bincount(self.group_channel, self.group_bytes(bits) / 1e6, minlength=p * p)
        used = np.bincount(self.group_channel, minlength=p * p) > 0
        return np.where(used, self.intercept + self.slope * mb, 0.0)

    def time(self, bits) -> float:
        p = self.world_size
        c = np.arange(p * p)
        rounds = np.zeros(p)
        np.maximum.at(rounds, (c % p - c // p) % p, self.channel_times(bits))
        return float(rounds[1:].sum())

    def scales(self, lam: float) -> tuple[float, float, float, float]:
        """(V_min, weight of V, T_min, weight of T) of the normalised objective."""
        g = len(self.group_rows)
        lo, hi = np.full(g, 8), np.full(g, 2)
        v0, v1, t1, t0 = self.variance(lo), self.variance(hi), self.time(lo), self.time(hi)
        return v0, lam / max(v1 - v0, 1e-300), t0, (1.0 - lam) / max(t1 - t0, 1e-300)

    def objective(self, bits, lam: float) -> float:
        v0, wv, t0, wt = self.scales(lam)
        return wv * (self.variance(bits) - v0) + wt * (self.time(bits) - t0)


def solve_greedy(prob: AssignmentProblem, lam: float) -> np.ndarray:
    """Bits per group: per ring round, the best cap over every breakpoint (see module doc)."""
    p, g = prob.world_size, len(prob.group_rows)
    _, wv, _, wt = prob.scales(lam)
    rb = {b: prob.group_bytes(np.full(g, b)) for b in (2, 4, 8)}
    f = {b: prob.group_score * variance_factor(b) for b in (2, 4, 8)}
    # Moves: stage 0 = 8 -> 4, stage 1 = 4 -> 2 (bytes saved, variance added).
    saved = np.concatenate([rb[8] - rb[4], rb[4] - rb[2]]).astype(np.float64)
    added = np.concatenate([f[4] - f[8], f[2] - f[4]])
    group = np.tile(np.arange(g), 2)
    channel = prob.group_channel[group]
    stage = np.repeat([0, 1], g)
    order = np.lexsort((stage, added / np.maximum(saved, 1e-12), channel))
    channel_of_move = channel[order]
    starts = np.searchsorted(channel_of_move, np.arange(p * p + 1))
    base_mb = np.bincount(prob.group_channel, rb[8] / 1e6, minlength=p * p)
    base_v = np.bincount(prob.group_channel, f[8], minlength=p * p)
    paths = {}  # channel -> (time after k moves, variance after k moves), k = 0..moves
    for c in np.flatnonzero(starts[1:] > starts[:-1]):
        mv = order[starts[c]:starts[c + 1]]
        mb = base_mb[c] - np.concatenate([[0.0], np.cumsum(saved[mv])]) / 1e6
        paths[c] = (prob.intercept[c] + prob.slope[c] * mb,
                    base_v[c] + np.concatenate([[0.0], np.cumsum(added[mv])]))
    moves_taken = np.zeros(p * p, np.int64)
    for r in range(1, p):
        chans = [c for c in paths if (c % p - c // p) % p == r]
        if not chans:
            continue
        caps = np.unique(np.concatenate([paths[c][0] for c in chans]))
        cost = np.zeros(len(caps))
        round_time = np.zeros(len(caps))
        ks = []
        for c in chans:
            t, v = paths[c]
            k = np.searchsorted(-t, -caps, side="left")  # fewest moves with time <= cap
            ok = k < len(t)
            k = np.minimum(k, len(t) - 1)
            cost += np.where(ok, wv * v[k], np.inf)
            round_time = np.maximum(round_time, t[k])
            ks.append(k)
        best = int(np.argmin(cost + wt * round_time))
        for c, k in zip(chans, ks):
            moves_taken[c] = k[best]
    bits = np.full(g, 8)
    for c in paths:
        mv = order[starts[c]:starts[c] + moves_taken[c]]
        np.subtract.at(bits, group[mv], np.where(stage[mv] == 0, 4, 2))
    return bits


def solve_milp(prob: AssignmentProblem, lam: float, time_limit_s: float = 60.0) -> np.ndarray:
    """Bits per group: the exact optimum (PuLP with its bundled CBC)."""
    import warnings

    import pulp

    p, g = prob.world_size, len(prob.group_rows)
    _, wv, _, wt = prob.scales(lam)
    m = pulp.LpProblem("adaqp_bits", pulp.LpMinimize)
    x = {(i, b): m.add_variable(f"x_{i}_{b}", cat="Binary") for i in range(g) for b in (2, 4, 8)}
    t = {r: m.add_variable(f"t_{r}", lowBound=0) for r in range(1, p)}
    rb = {b: prob.group_bytes(np.full(g, b)) / 1e6 for b in (2, 4, 8)}
    f = {b: prob.group_score * variance_factor(b) for b in (2, 4, 8)}
    m += wv * pulp.lpSum(f[b][i] * x[i, b] for i in range(g) for b in (2, 4, 8)) + wt * pulp.lpSum(t.values())
    for i in range(g):
        m += pulp.lpSum(x[i, b] for b in (2, 4, 8)) == 1
    for c in np.unique(prob.group_channel):
        members = np.flatnonzero(prob.group_channel == c)
        r = int((c % p - c // p) % p)
        m += t[r] >= prob.intercept[c] + prob.slope[c] * pulp.lpSum(rb[b][i] * x[i, b] for i in members
                                                                     for b in (2, 4, 8))
    with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled CBC, the one that installs from PyPI
        warnings.simplefilter("ignore", DeprecationWarning)
        m.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s))
    return np.array([max((2, 4, 8), key=lambda b: x[i, b].value() or 0.0) for i in range(g)])


SOLVERS = {"greedy": solve_greedy, "milp": solve_milp}


def group_messages(channel: np.ndarray, score: np.ndarray, group_size: int, world_size: int):
    """Sort each channel's messages by score and cut them into groups of
    ``group_size``. Returns (group of each message, channel of each group,
    rows of each group, score of each group)."""
    order = np.lexsort((-score, channel))
    ch = channel[order]
    start = np.searchsorted(ch, ch, side="left")  # first message of the same channel
    pos = np.arange(len(ch)) - start
    first = np.r_[True, ch[1:] != ch[:-1]] if len(ch) else np.zeros(0, bool)
    new_group = first | (pos % group_size == 0)
    gid_sorted = np.cumsum(new_group) - 1
    group_of = np.empty(len(ch), np.int64)
    group_of[order] = gid_sorted
    n_groups = int(gid_sorted[-1]) + 1 if len(ch) else 0
    return (group_of, ch[new_group], np.bincount(gid_sorted, minlength=n_groups),
            np.bincount(gid_sorted, score[order], minlength=n_groups))
