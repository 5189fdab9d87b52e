#!/usr/bin/env python
"""One training step of a 2-layer GCN and SAGE on random sparse features, with the
first layer's input as SparseRows (grappa.sparse_input) and dense, one thread.

    python bench/sparse_input.py --out bench_results/sparse_input.json
    python bench/sparse_input.py --shapes 2708x1433x0.0127 5000x500x0.05 --steps 20

Prints a table (ms per step, the two paths' largest relative gradient
difference) and writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from grappa.models import build_model


def step_ms(model, x, graph, sparse: bool, steps: int) -> tuple[float, list[torch.Tensor]]:
    model.takes_sparse_input = sparse  # the instance's flag; the class keeps its own
    model.zero_grad()
    torch.manual_seed(1)
    model(x, *graph).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for _ in range(2):
        model(x, *graph).sum().backward()
    t = time.perf_counter()
    for _ in range(steps):
        model.zero_grad()
        model(x, *graph).square().sum().backward()
    return (time.perf_counter() - t) / steps * 1e3, grads


def shape(text: str) -> tuple[int, int, float]:
    rows, cols, density = text.split("x")
    return int(rows), int(cols), float(density)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shape, nargs="+", default=[(2708, 1433, 0.0127), (5000, 500, 0.03)],
                   metavar="ROWSxCOLSxDENSITY", help="feature matrices (default: Cora's shape, and 5000x500x0.03)")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", help="JSON file for the table")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for n, f, density in a.shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, f, generator=g) * (torch.rand(n, f, generator=g) < density)
        edge_index = torch.randint(0, n, (2, 4 * n), generator=g)
        for name in ("gcn", "sage"):
            torch.manual_seed(0)
            model = build_model(name, f, a.hidden, 7).train()
            graph = model.graph(edge_index, n)
            sparse_ms, gs = step_ms(model, x, graph, True, a.steps)
            dense_ms, gd = step_ms(model, x, graph, False, a.steps)
            rel = max(float((s - d).abs().max() / d.abs().max().clamp(min=1e-30)) for s, d in zip(gs, gd))
            rows.append({"rows": n, "cols": f, "density": density, "model": name, "sparse_ms": sparse_ms,
                         "dense_ms": dense_ms, "max_rel_grad_diff": rel})
    print("| features | model | dense ms | sparse ms | speed-up | gradient rel. diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['rows']} x {r['cols']}, {r['density']:.2%} | {r['model']} | {r['dense_ms']:.2f} | "
              f"{r['sparse_ms']:.2f} | {r['dense_ms'] / r['sparse_ms']:.2f}x | {r['max_rel_grad_diff']:.1e} |")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
