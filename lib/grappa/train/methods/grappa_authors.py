"""Grappa as its authors' released code runs it (METHODS.md section 1, "The
authors' released code differs"), selectable as ``--method grappa-authors``
so that it and this project's default can be measured side by side.

Against ``grappa`` (same loop, same sampler, same evaluation), it differs in:

- K = P chunks. In super-epoch s rank r loads its base chunk r and the
  variable chunk (r + 1 + s mod (P-1)) mod P, so every chunk is in two
  ranks' sets at once and every pair meets within P - 1 super-epochs.
- No isolation: every in-edge of both chunks is loaded and the features of
  the sources in the other chunks are read from their shards (file I/O at
  repartition, never network traffic during steps).
- Seeds: the base chunk's training nodes only. Every rank runs the same
  number of steps (the most any rank needs at --batch-size), so a rank's
  batches have ceil or floor(n_train_r / steps) seeds.
- Coverage of a seed: a_v = min(1, deg_local / (deg_global + 1)), the
  self-loop counted in both degrees; c_p = the batch's mean a_v.
- Aggregation: G = (1/P) sum_p c_p g_p, not normalised by sum c_p, and no
  weight is sent (the allreduce carries only the gradients and the stop flag).

Evaluation: the chunk sets overlap, so each rank evaluates its base chunk
(chunk r), loaded once on its own; ownership never changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grappa.errors import check_options
from grappa.graph.raw import SPLIT_TRAIN
from grappa.shards.assemble import load_chunk_set
from grappa.shards.schedule import base_variable_sets
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.halo_exchange import HaloPlan
from grappa.train.methods.grappa_method import GrappaMethod


@dataclass
class AuthorsOptions:
    """Grappa as the authors' code runs it: K = P, base + variable chunk, halo, unnormalised weights."""

    repartition_every: int = field(default=50, metadata={"help": "epochs per super-epoch (0 = never repartition)"})

    def __post_init__(self):
        check_options(self, (("--repartition-every", self.repartition_every >= 0, "0 or more"),))


def authors_coverage(local_in_degree: np.ndarray, global_in_degree: np.ndarray) -> np.ndarray:
    """a_v = min(1, deg_local / (deg_global + 1)) with the self-loop counted in
    both degrees (in-degrees here exclude it, hence the +1s)."""
    return np.minimum(1.0, (local_in_degree + 1.0) / (global_in_degree + 2.0))


class GrappaAuthors(GrappaMethod):
    """The authors' configuration of Grappa.

    Args (``AuthorsOptions``):
        repartition_every (int): epochs per super-epoch; 0 = never (default 50).
    """

    name, label, Options = "grappa-authors", "grappa (authors' code)", AuthorsOptions
    fault_flags = ()  # its super-epoch of 50 is its own
    chunks_per_rank_exact = True  # K = P
    resume_any_world_size = False  # K is the world size
    base_eval = None

    @property
    def repartitions(self) -> bool:
        return self.opts.repartition_every > 0

    @property
    def halo_hops(self) -> int:
        return 1

    halo_budget_bytes = np.inf  # the authors' code reads every in-edge of its chunks
    halo_mode = "exact"
    per_rank_batch = True  # and takes the largest rank's step count

    def chunk_sets_of(self, super_epoch: int) -> list[list[int]]:
        return base_variable_sets(self.comm.size, super_epoch)

    def seed_nodes(self, lg) -> np.ndarray:
        base = self.data.manifest["chunks"][self.comm.rank]["num_nodes"]  # the base chunk's nodes come first
        return np.flatnonzero(lg.split[:base] == SPLIT_TRAIN)

    def coverage_of(self, lg) -> np.ndarray:
        local = lg.csr.in_degree()[: lg.num_owned]
        return authors_coverage(local, lg.global_in_degree[: lg.num_owned])

    def batch(self, order: np.ndarray, step: int) -> np.ndarray:
        """Exactly ``steps`` batches per epoch on every rank (sizes differ by at most 1)."""
        n = len(order)
        return order[step * n // self.steps:(step + 1) * n // self.steps]

    def _batch_weight(self, seeds: np.ndarray) -> float:
        return float(self.coverage[seeds].mean()) if len(seeds) else 0.0

    def node_weights(self, seeds: np.ndarray) -> None:
        return None  # the loss is the plain batch mean

    def combine_gradients(self, w: float) -> bool:
        """G = (1/P) sum_p c_p g_p: one allreduce of [c_p g_p, stop], no weight sent."""
        return self.step([], scale=w, divide_by=lambda sums: self.comm.size)[1]

    def evaluate(self) -> tuple[float, float]:
        if self.base_eval is None:  # rank r evaluates chunk r in every super-epoch: built once
            base = load_chunk_set(self.dir, [self.comm.rank])
            plan = HaloPlan(self.comm, base, np.arange(self.k), "eval")
            self.base_eval = DistributedEvaluator(plan, base.x), base.y, base.split
        evaluator, y, split = self.base_eval
        return evaluator.metrics(self.model, y, split, self.cfg.metric)

    def result_extra(self) -> dict:
        return dict(weighting="authors", schedule="base+variable", repartition_every=self.opts.repartition_every,
                    switch_time_s_total=sum(self.switch_times))
