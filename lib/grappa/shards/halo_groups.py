"""A rank's halo read one group of training steps at a time (issue 29).

Where a rank's exact halo does not fit its budget, mini-batch training does
not need all of it at once: a step reads only what its sampler reaches from
its seeds. ``HaloGroups`` cuts an epoch's steps into groups whose seeds'
halo fits the budget, and before each group reads from the shards, for each
node upstream of the group's seeds, up to the fan-out's in-edges drawn
without replacement from its whole in-edge list (``sampled_halo``), and the
features of their sources. A seed is in one step an epoch, so what the
sampler draws from its drawn neighbourhood is a draw from the whole graph's:
the steps are those of the exact halo, from a fraction of its memory, at the
price of reading the halo from the shards once an epoch (file I/O, never
network).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grappa.shards.assemble import LocalGraph, ShardRows, sampled_halo
from grappa.shards.format import load_manifest

FILL = 0.5  # of the budget a group is sized to: groups of one size differ, a hop past the budget is costly
PROBE = 256  # seeds whose halo sizes the groups


@dataclass
class HaloGroups:
    """Args:
        reader (ShardRows): the dataset's shards.
        base (LocalGraph): the rank's isolated chunk set.
        fanouts (tuple[int, ...]): in-edges drawn per node, per hop (-1: all).
        budget (float): bytes a group's halo may hold.
        seeds_per_group (int): from ``plan``.
    """

    reader: ShardRows
    base: LocalGraph
    fanouts: tuple[int, ...]
    budget: float
    seeds_per_group: int
    taken: int = 0
    taken_over: int = 0
    over_budget: int = 0  # groups that read past the budget

    @classmethod
    def plan(cls, dataset, base: LocalGraph, fanouts, budget: float, train: np.ndarray,
             rng: np.random.Generator) -> HaloGroups:
        """Groups sized from a probe: the halo of ``PROBE`` training seeds drawn
        with ``rng``, read whole, its bytes per seed scaled to ``FILL`` of the
        budget; then doubled while a random group of twice the size still reads
        every hop within that (a larger group shares more of its halo: on a graph
        whose halo is most of it, a few groups an epoch, not one per probe's worth)."""
        d = Path(dataset)
        reader, fanouts = ShardRows(d, load_manifest(d), cache=True), tuple(fanouts)
        probe = rng.choice(train, min(len(train), PROBE), replace=False) if len(train) else train
        held = sum(b for *_, b in sampled_halo(reader, base, fanouts, np.inf, rng, probe).halo_read)
        per_seed = held / max(len(probe), 1)
        size = max(1, int(min(FILL * budget / per_seed, len(train)))) if per_seed else max(len(train), 1)
        while size < len(train):
            bigger = min(2 * size, len(train))
            seeds = rng.choice(train, bigger, replace=False)
            if sampled_halo(reader, base, fanouts, FILL * budget, rng, seeds).halo_hops < len(fanouts):
                break  # (the trial's graph is gone before the next is read)
            size = bigger
        return cls(reader, base, fanouts, budget, size)

    def steps_per_group(self, seeds_per_step: int) -> int:
        return max(1, self.seeds_per_group // max(seeds_per_step, 1))

    def load(self, seeds: np.ndarray, rng: np.random.Generator) -> LocalGraph:
        """The isolated set with the halo of ``seeds`` (owned local ids) drawn at the fan-outs. A group
        whose halo is over the budget still reads every hop (a missing hop is a model of another graph:
        measured, docs/BENCHMARKS.md) and is counted in ``over_budget``."""
        state = rng.bit_generator.state
        lg = sampled_halo(self.reader, self.base, self.fanouts, self.budget, rng, seeds)
        if lg.halo_hops < len(self.fanouts):
            self.over_budget += 1
            rng.bit_generator.state = state  # the same draw, all of it
            del lg
            lg = sampled_halo(self.reader, self.base, self.fanouts, np.inf, rng, seeds)
        return lg

    def take_counts(self) -> tuple[int, int]:
        """(bytes read from the shards, groups over the budget) since the last call (the first: since
        ``plan``, its probe included), so a run adds up every super-epoch's."""
        counts = (self.reader.bytes_read - self.taken, self.over_budget - self.taken_over)
        self.taken, self.taken_over = self.reader.bytes_read, self.over_budget
        return counts
