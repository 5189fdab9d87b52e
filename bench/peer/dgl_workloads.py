"""The DGL side of the peer benchmark (bench/peer/compare_dgl.py runs it in
the peer environment: torch 2.2.1, dgl 2.1.0). One workload per process, so
each reports its own peak RSS; prints one JSON object.

    PEER_PYTHON dgl_workloads.py full-graph --data RAW --epochs 50 --threads 2
    PEER_PYTHON dgl_workloads.py mini-batch --data RAW --epochs 5 --threads 2
    PEER_PYTHON dgl_workloads.py partition --data RAW --parts 4 --method random --out DIR

The models and settings mirror grappa's: GCN with self-loops and symmetric
normalisation (hidden 64, 2 layers, dropout 0.5, Adam 0.01, weight decay
5e-4); GraphSAGE mean (hidden 64, 2 layers, fan-outs 10,10, batch 1024).
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(raw: Path):
    import dgl
    import torch

    src, dst = np.load(raw / "edges_src.npy"), np.load(raw / "edges_dst.npy")
    info = json.loads((raw / "graph.json").read_text())
    g = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=info["num_nodes"])
    x = torch.from_numpy(np.load(raw / "x.npy"))
    y = torch.from_numpy(np.load(raw / "y.npy").astype(np.int64))
    split = np.load(raw / "split.npy")
    idx = [torch.from_numpy(np.flatnonzero(split == s)) for s in (1, 2, 3)]
    return g, x, y, idx, info["num_classes"]


def accuracy(logits, y, idx) -> float:
    return float((logits[idx].argmax(1) == y[idx]).float().mean())


def full_graph(a) -> dict:
    import dgl
    import torch
    import torch.nn.functional as F
    from dgl.nn import GraphConv

    g, x, y, (tr, va, te), c = load(Path(a.data))
    g = dgl.add_self_loop(dgl.remove_self_loop(g))  # grappa's GCN adds one self-loop per node
    layers = torch.nn.ModuleList([GraphConv(x.shape[1], a.hidden, norm="both"), GraphConv(a.hidden, c, norm="both")])
    opt = torch.optim.Adam(layers.parameters(), lr=0.01, weight_decay=5e-4)

    def forward(train: bool):
        h = F.dropout(x, 0.5, train)
        h = F.dropout(F.relu(layers[0](g, h)), 0.5, train)
        return layers[1](g, h)

    times = []
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        layers.train()
        opt.zero_grad()
        loss = F.cross_entropy(forward(True)[tr], y[tr])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    layers.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = forward(False)
    return {"epoch_s": times, "eval_s": time.perf_counter() - t0, "test_acc": accuracy(logits, y, te),
            "peak_rss_mb": peak_rss_mb()}


def mini_batch(a) -> dict:
    import dgl
    import torch
    import torch.nn.functional as F
    from dgl.nn import SAGEConv

    g, x, y, (tr, va, te), c = load(Path(a.data))
    layers = torch.nn.ModuleList([SAGEConv(x.shape[1], a.hidden, "mean"), SAGEConv(a.hidden, c, "mean")])
    opt = torch.optim.Adam(layers.parameters(), lr=0.01, weight_decay=5e-4)
    sampler = dgl.dataloading.NeighborSampler([10, 10])
    loader = dgl.dataloading.DataLoader(g, tr, sampler, batch_size=1024, shuffle=True, drop_last=False,
                                        num_workers=0)
    epochs, sample_s, compute_s, steps = [], 0.0, 0.0, 0
    for _ in range(a.epochs):
        t_epoch = time.perf_counter()
        layers.train()
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                input_nodes, output_nodes, blocks = next(it)
            except StopIteration:
                break
            h = x[input_nodes]  # the gather counts with sampling, as grappa's does
            t1 = time.perf_counter()
            h = F.dropout(h, 0.5, True)
            h = F.dropout(F.relu(layers[0](blocks[0], h)), 0.5, True)
            loss = F.cross_entropy(layers[1](blocks[1], h), y[output_nodes])
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            sample_s, compute_s, steps = sample_s + t1 - t0, compute_s + t2 - t1, steps + 1
        epochs.append(time.perf_counter() - t_epoch)
    layers.eval()
    t0 = time.perf_counter()
    with torch.no_grad():  # exact full-neighbour evaluation over the whole graph
        logits = layers[1](g, F.relu(layers[0](g, x)))
    return {"epoch_s": epochs, "step_ms": 1000 * (sample_s + compute_s) / steps,
            "sample_ms": 1000 * sample_s / steps, "compute_ms": 1000 * compute_s / steps, "steps": steps,
            "eval_s": time.perf_counter() - t0, "test_acc": accuracy(logits, y, te), "peak_rss_mb": peak_rss_mb()}


def partition(a) -> dict:
    import dgl

    g, x, y, (tr, va, te), c = load(Path(a.data))
    g.ndata["feat"], g.ndata["label"] = x, y
    t0 = time.perf_counter()
    dgl.distributed.partition_graph(g, "peer", a.parts, a.out, part_method=a.method)
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["full-graph", "mini-batch", "partition"])
    p.add_argument("--data", required=True, help="a grappa raw graph directory")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--method", default="random", choices=["random", "metis"])
    p.add_argument("--out", help="partition: output directory")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    run = {"full-graph": full_graph, "mini-batch": mini_batch, "partition": partition}[a.workload]
    print(json.dumps(run(a)))


if __name__ == "__main__":
    main()
