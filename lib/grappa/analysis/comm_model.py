"""Predicted training bytes per rank per epoch, from the graph and the model
alone (no training run), under the comm layer's cost model:

    grappa  one allreduce of [gradients, 2 scalars] per step:
            2 (P-1)/P * 4 * (params + 2) * steps
    halo    per layer l, every boundary row of the layer input is sent once to
            each rank that needs it (d_l floats), and for l >= 1 its gradient
            comes back (for l = 0 too behind the blocks' input projection,
            --residual/--norm); plus the gradient allreduce (params + 2 scalars):
            4 * rows * (sum_l d_l + sum_{l>=1} d_l) + 2 (P-1)/P * 4 * (params + 2)

"rows" is the mean over ranks of the boundary rows a rank sends per layer:
the number of distinct (node, other rank) pairs with an edge from the node
to a node on the other rank, divided by P.

Time (issue 28), an alpha-beta model on a cluster of nodes, each with one
link of ``rate`` bits/s each way and round trip ``rtt`` s, holding ``r`` of
the P ranks:

    t = rounds * rtt + r * bytes * (P - r) / (P - 1) * 8 / rate

rounds: the messages a rank sends one after another (grappa.comm.base
counts them per call); each costs a round trip, not a one-way delay: a
ring step's data moves once the neighbour has said it is ready (gloo's
pairs; docs/BENCHMARKS.md shows the fit). bytes: what a rank sends, of
which the share (P - r) / (P - 1) goes to ranks on other nodes (traffic
spread evenly over the other ranks), and the node's r ranks share its link.
What the model leaves out is the time a rank waits in a collective for a
slower rank and the CPU time of the call itself: the measured communication
time on shared memory, where the link costs nothing, is that floor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grappa.id_sets import unique

FLOAT = 4  # bytes per float32


def allreduce_bytes(num_floats: int, world_size: int) -> float:
    return 2 * (world_size - 1) / world_size * FLOAT * num_floats


def grappa_bytes(params: int, world_size: int, steps: int = 1) -> float:
    return allreduce_bytes(params + 2, world_size) * steps


def halo_bytes(rows_per_rank: float, layer_input_dims: list[int], params: int, world_size: int,
               input_grad: bool = False) -> float:
    """``input_grad``: layer 0's input has a gradient too (the blocks' input projection,
    ``--residual``/``--norm``: its halo rows go back to their owners)."""
    forward = sum(layer_input_dims)
    backward = sum(layer_input_dims[0 if input_grad else 1:])  # plain features need no gradient
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
        pairs.append(unique(s[cut] * world_size + q[cut]))  # (source node, receiving rank)
    total = len(unique(np.concatenate(pairs))) if pairs else 0
    return total / world_size


def comm_time(bytes_per_rank: float, rounds: float, rate_bits: float, rtt_s: float, world_size: int,
              ranks_per_node: int = 1) -> float:
    """Predicted seconds of communication for ``bytes_per_rank`` sent in ``rounds`` latency rounds."""
    if world_size <= ranks_per_node:
        return 0.0  # one node: nothing crosses a link
    off_node = ranks_per_node * bytes_per_rank * (world_size - ranks_per_node) / (world_size - 1)
    return rounds * rtt_s + 8 * off_node / rate_bits


def random_boundary_rows(num_nodes: int, avg_out_degree: float, world_size: int) -> float:
    """Boundary rows per rank when nodes are spread at random over the ranks (an upper bound for
    METIS): a node with d out-neighbours reaches each other rank with probability 1 - (1 - 1/P)^d."""
    p = world_size
    return num_nodes / p * (p - 1) * (1 - (1 - 1 / p) ** avg_out_degree)


def predicted_bytes(raw, metis_dir, cfg, ranks: int) -> dict:
    """Grappa's and the halo exchange's training bytes per rank per epoch, from the raw graph, the
    model of ``cfg`` (a TrainConfig) and a K = P METIS partition (bench/compare.py's analysis)."""
    import json

    from grappa.models import build_model
    from grappa.shards.schedule import chunk_sets, owner_of_chunks

    info = json.loads((Path(raw) / "graph.json").read_text())
    model = build_model(cfg.model, info["num_features"], cfg.hidden, info["num_classes"], cfg.layers,
                        cfg.dropout, cfg.heads, cfg.residual, cfg.norm)
    params = sum(p.numel() for p in model.parameters())
    blocks = getattr(model, "blocks", None) is not None  # input projection first: every layer input is hidden wide
    width = cfg.hidden * (cfg.heads if getattr(model, "takes_heads", False) and not blocks else 1)  # concatenated
    dims = [width] * cfg.layers if blocks else [info["num_features"]] + [width] * (cfg.layers - 1)
    k = json.loads((Path(metis_dir) / "manifest.json").read_text())["num_chunks"]
    owner = owner_of_chunks(chunk_sets("fixed", k, ranks, 0, 0), k)
    node_rank = owner[np.load(Path(metis_dir) / "node_chunk.npy")]
    rows = boundary_rows(raw, node_rank, ranks)
    g, h = grappa_bytes(params, ranks), halo_bytes(rows, dims, params, ranks, input_grad=blocks)
    return {"params": params, "layer_input_dims": dims, "boundary_rows_per_rank": rows,
            "grappa_bytes_per_rank_per_epoch": g, "halo_bytes_per_rank_per_epoch": h, "halo_over_grappa": h / g,
            "full_graph": cfg.batch_size == 0}
