"""Predicted training bytes per rank per epoch, from the graph and the model
alone (no training run), under the comm layer's cost model:

    grappa  one allreduce of [gradients, 2 scalars] per step:
            2 (P-1)/P * 4 * (params + 2) * steps
    halo    per layer l, every boundary row of the layer input is sent once to
            each rank that needs it (d_l floats), and for l >= 1 its gradient
            comes back; plus the gradient allreduce (params + 2 scalars):
            4 * rows * (sum_l d_l + sum_{l>=1} d_l) + 2 (P-1)/P * 4 * (params + 2)

"rows" is the mean over ranks of the boundary rows a rank sends per layer:
the number of distinct (node, other rank) pairs with an edge from the node
to a node on the other rank, divided by P.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLOAT = 4  # bytes per float32


def allreduce_bytes(num_floats: int, world_size: int) -> float:
    return 2 * (world_size - 1) / world_size * FLOAT * num_floats


def grappa_bytes(params: int, world_size: int, steps: int = 1) -> float:
    return allreduce_bytes(params + 2, world_size) * steps


def halo_bytes(rows_per_rank: float, layer_input_dims: list[int], params: int, world_size: int) -> float:
    forward = sum(layer_input_dims)
    backward = sum(layer_input_dims[1:])  # layer 0's input (the features) needs no gradient
    return FLOAT * rows_per_rank * (forward + backward) + allreduce_bytes(params + 2, world_size)


def boundary_rows(raw_dir, node_rank: np.ndarray, world_size: int, block: int = 1 << 22) -> float:
    """Mean over ranks of the rows a rank sends per halo exchange, streaming
    the raw edge list in blocks. ``node_rank[v]`` is the rank that owns v."""
    d = Path(raw_dir)
    src = np.load(d / "edges_src.npy", mmap_mode="r")
    dst = np.load(d / "edges_dst.npy", mmap_mode="r")
    pairs = []
    for lo in range(0, len(src), block):
        s = np.asarray(src[lo:lo + block])
        q = node_rank[np.asarray(dst[lo:lo + block])]
        cut = node_rank[s] != q
        pairs.append(np.unique(s[cut] * world_size + q[cut]))  # (source node, receiving rank)
    total = len(np.unique(np.concatenate(pairs))) if pairs else 0
    return total / world_size
