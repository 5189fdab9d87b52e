"""Vectorised CSR neighbour sampling with per-layer fan-outs (no Python loop
over nodes or edges). PyG's NeighborLoader needs pyg-lib, which does not exist
for this torch, so grappa ships its own.

``sample(seeds)`` returns the PyG-style subgraph: node ids (seeds first) and a
local ``edge_index`` (row 0 source, row 1 destination) holding, for every node
reached at hop h < L, up to ``fanouts[h]`` of its in-neighbours drawn without
replacement. A model applied to it gives exact-for-the-sample outputs for the
first ``len(seeds)`` rows. The nodes come in hop order (``hop_nodes``): the
rows within h hops of the seeds are a prefix, and an edge into one of them
comes from a row within h + 1 hops, so ``grappa.models.sampled_forward``
computes each layer on the rows the next one reads only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grappa.graph.csr import CSR, expand_ranges


@dataclass
class SampledSubgraph:
    nodes: np.ndarray  # global ids, seeds first
    edge_index: torch.Tensor  # [2, E] local ids
    num_seeds: int
    hop_nodes: tuple[int, ...] = ()  # [h]: how many nodes lie within h hops of the seeds (L + 1 counts)


class NeighborSampler:
    def __init__(self, csr: CSR, fanouts: list[int], seed: int = 0):
        # ``csr``: a CSR, or anything with num_nodes, in_edge_ranges and
        # sources (grappa.shards.shard_graph.ShardGraph reads them from shards).
        self.csr = csr
        self.fanouts = list(fanouts)
        self.rng = np.random.default_rng(seed)
        # Global -> local id map, reset after every batch: O(N) once, O(batch) per call.
        self._local = np.full(csr.num_nodes, -1, dtype=np.int64)

    def _sample_in_edges(self, frontier: np.ndarray, fanout: int):
        """(sources, index of the destination in ``frontier``) of up to
        ``fanout`` in-edges of each frontier node, drawn without replacement
        (all of them for fan-out -1), grouped by destination in frontier
        order: a sample's edges come sorted by destination, so its adjacency
        is built without a sort (``grappa.models.sparse_adjacency``)."""
        pos, seg = sample_ranges(*self.csr.in_edge_ranges(frontier), fanout, self.rng)
        return self.csr.sources(pos), seg

    def sample(self, seeds) -> SampledSubgraph:
        seeds = np.asarray(seeds, dtype=np.int64)
        local = self._local
        local[seeds] = np.arange(len(seeds))
        all_nodes = [seeds]
        n_total = len(seeds)
        frontier = seeds
        srcs, dsts = [], []
        hop_nodes = [n_total]
        try:
            for fanout in self.fanouts:
                src, seg = self._sample_in_edges(frontier, fanout)
                dst_local = local[frontier[seg]]
                # The sources not reached yet, once each: of a node's repeated writes one
                # wins, and only its entry reads its own index back (8x np.unique's speed).
                cand = src[local[src] < 0]
                first = np.arange(len(cand))
                local[cand] = first
                new = cand[local[cand] == first]
                all_nodes.append(new)
                local[new] = n_total + np.arange(len(new))
                n_total += len(new)
                hop_nodes.append(n_total)
                srcs.append(local[src])
                dsts.append(dst_local)
                frontier = new
            nodes = np.concatenate(all_nodes)
        finally:
            for arr in all_nodes:
                local[arr] = -1
        ei = torch.from_numpy(np.stack([np.concatenate(srcs), np.concatenate(dsts)])) if srcs else \
            torch.zeros((2, 0), dtype=torch.int64)
        return SampledSubgraph(nodes, ei, len(seeds), tuple(hop_nodes))


def sample_ranges(starts: np.ndarray, counts: np.ndarray, k: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` distinct positions of each range ``starts[i]:starts[i] +
    counts[i]`` (every k-subset equally likely; all of a range with at most
    k, or for k = -1), grouped by range in order, and for each its range i."""
    kept = counts if k < 0 else np.minimum(counts, k)
    pos, seg = expand_ranges(starts, kept)  # each range's first kept positions: all of them where it keeps all
    big = np.flatnonzero(kept < counts)
    if len(big):
        # The others draw the positions they keep into their slots: what a range does not keep is never listed.
        first = np.cumsum(kept) - kept
        pos[first[big, None] + np.arange(k)] = starts[big, None] + distinct_offsets(counts[big], k, rng)
    return pos, seg


def distinct_offsets(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(len(counts), k): k distinct offsets in [0, counts[i]) per row, every
    k-subset equally likely (Floyd's algorithm, one column per step for all
    rows at once: O(rows x k^2), whatever the degrees)."""
    out = np.empty((len(counts), k), np.int64)
    for j in range(k):
        top = counts - k + j  # step j draws from [0, top], and takes top itself if the draw is taken
        t = (rng.random(len(counts)) * (top + 1)).astype(np.int64)
        out[:, j] = np.where((out[:, :j] == t[:, None]).any(1), top, t)
    return out
