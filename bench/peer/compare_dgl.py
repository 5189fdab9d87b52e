"""grappa against DGL on the same work, side by side (issue 32).

    python bench/peer/compare_dgl.py --graphs sbm200k sbm2m --out bench_results/peer

Creates the peer environment on first use (a virtualenv with torch 2.2.1,
dgl 2.1.0, numpy<2, torchdata 0.7.1: DGL's wheels stop at torch 2.2), cached
in ~/.cache/grappa/peer-venv; nothing in the tests or the README's commands
needs it. Then, on the same raw graph files and the same thread count, each
workload repeated (min and median reported), every run its own process:

- full-graph GCN (2 layers, hidden 64, dropout 0.5, Adam 0.01): epoch time;
- mini-batch GraphSAGE (2 layers, hidden 64, fan-outs 10,10, batch 1024):
  epoch time, a step split into sampling (with the feature gather) and
  compute, and the final exact (full-neighbour) evaluation;
- offline partitioning into 4 parts, random and METIS: DGL's
  ``partition_graph`` against ``data_prep/partition.py`` on 1 and 2 ranks,
  wall time and peak RSS;
- grappa's training runs again on the peer's torch (``--no-peer-torch``
  skips them), which separates the library from the torch version.

Figures and what they say: docs/BENCHMARKS.md, "Against DGL on the same work".

Writes peer.json and peer.md (the table, ratios grappa / DGL) to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER_PACKAGES = ["torch==2.2.1", "dgl==2.1.0", "numpy<2", "torchdata==0.7.1", "pydantic", "pyyaml", "h5py",
                 "pandas", "psutil", "torch_geometric==2.8.1", "tqdm"]  # the last two: grappa on the peer's torch
GRAPHS = {  # the benchmark preset's SBM (bench/compare.py --preset sbm) and one 10x larger
    "sbm200k": ["--num-nodes", "200000", "--avg-degree", "12", "--homophily", "0.6", "--num-features", "32",
                "--num-classes", "8", "--seed", "0"],
    "sbm2m": ["--num-nodes", "2000000", "--avg-degree", "12", "--homophily", "0.6", "--num-features", "32",
              "--num-classes", "8", "--seed", "0"],
}
FULL = ["--model", "gcn", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
        "--weight-decay", "5e-4"]
MINI = ["--model", "sage", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
        "--weight-decay", "5e-4", "--batch-size", "1024", "--fanouts", "10", "10"]


def sh(cmd, env=None) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"error: {' '.join(map(str, cmd[:4]))} ... failed:\n{r.stderr[-3000:]}")
    return r.stdout


def peer_python(venv: Path) -> Path:
    """The peer environment's interpreter, created (once) with the pinned packages."""
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"[peer] creating {venv} (torch 2.2.1 + dgl 2.1.0, a few GB, once)", flush=True)
        sh([sys.executable, "-m", "venv", venv])
        sh([py, "-m", "pip", "install", "-q", *PEER_PACKAGES])
    return py


def thread_env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), DGLBACKEND="pytorch")
    env["PYTHONPATH"] = str(ROOT / "lib") + os.pathsep + env.get("PYTHONPATH", "")
    if os.geteuid() == 0:  # OpenMPI refuses root without these (hpc/env.sh sets them too)
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def grappa_train(raw: Path, flags: list[str], epochs: int, env: dict, python=sys.executable) -> dict:
    """A centralized grappa run (``python``: this environment's, or the peer's to run on its torch)."""
    from grappa.train.metrics_log import read_metrics

    with tempfile.TemporaryDirectory() as d:
        sh([python, "-m", "grappa.train", "--data", raw, "--out", Path(d) / "run", *flags,
            "--epochs", epochs, "--eval-every", epochs, "--no-progress"], env)
        r = json.loads((Path(d) / "run" / "result.json").read_text())
        rows = read_metrics(Path(d) / "run")
    return {"epoch_s": [row["epoch_time_s"] for row in rows], "eval_s": r["eval_time_s_median"],
            "test_acc": r["test_metric"], "peak_rss_mb": r["peak_rss_mb_max"]}


def grappa_step_split(raw: Path, epochs: int, threads: int) -> dict:
    """Centralized mini-batch steps timed by part, in this process: sampling
    with the feature gather, then the forward, backward and optimizer step."""
    import numpy as np
    import torch
    from grappa.memory import freed_pages_kept
    from grappa.models import build_model, sampled_forward
    from grappa.sampling import NeighborSampler
    from grappa.train.data import load_graph
    from grappa.train.evaluate import loss_fn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g = load_graph(raw)
    model = build_model("sage", g.x.shape[1], 64, g.info.num_classes, 2, 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    sampler, rng = NeighborSampler(g.csr, [10, 10], 0), np.random.default_rng(0)
    sample_s = compute_s = steps = 0
    model.train()
    with freed_pages_kept():  # as grappa.train runs its epochs
        for _ in range(epochs):
            seeds = rng.permutation(g.train_idx)
            for lo in range(0, len(seeds), 1024):
                t0 = time.perf_counter()
                sub = sampler.sample(seeds[lo:lo + 1024])
                nodes = torch.from_numpy(sub.nodes)
                x = g.x.index_select(0, nodes)
                t1 = time.perf_counter()
                opt.zero_grad()
                loss = loss_fn(g.info.task, sampled_forward(model, x, sub), g.y[nodes[: sub.num_seeds]])
                loss.backward()
                opt.step()
                t2 = time.perf_counter()
                sample_s, compute_s, steps = sample_s + t1 - t0, compute_s + t2 - t1, steps + 1
    return {"step_ms": 1000 * (sample_s + compute_s) / steps, "sample_ms": 1000 * sample_s / steps,
            "compute_ms": 1000 * compute_s / steps}


def grappa_partition(raw: Path, ranks: int, method: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as d:
        sh(["mpirun", "-np", ranks, "--oversubscribe", sys.executable, ROOT / "data_prep/partition.py", "--data", raw,
            "--out", Path(d) / "p", "--num-chunks", 4, "--method", method, "--no-progress"], env)
        m = json.loads((Path(d) / "p" / "manifest.json").read_text())["created_by"]
    return {"wall_s": m["wall_s"], "peak_rss_mb": max(m["peak_rss_mb_per_rank"])}


def dgl_run(py: Path, workload: str, raw: Path, env: dict, *args) -> dict:
    out = sh([py, Path(__file__).with_name("dgl_workloads.py"), workload, "--data", raw, *args], env)
    return json.loads(out.strip().splitlines()[-1])


def repeat(fn, n: int) -> list[dict]:
    return [fn() for _ in range(n)]


def summarize(runs: list[dict], key: str) -> dict:
    values = [statistics.median(r[key]) if isinstance(r[key], list) else r[key] for r in runs]
    return {"min": min(values), "median": statistics.median(values), "runs": values}


def measure_graph(name: str, raw: Path, py: Path, a) -> list[dict]:
    env, rows = thread_env(a.threads), []
    t = str(a.threads)

    def row(workload, key, g_runs, d_runs, **extra):
        g, d = summarize(g_runs, key), summarize(d_runs, key)
        rows.append({"graph": name, "workload": workload, "measure": key, "grappa": g, "dgl": d,
                     "ratio": g["median"] / d["median"], **extra})
        print(f"[peer] {name} {workload} {key}: grappa {g['median']:.4g}, DGL {d['median']:.4g} "
              f"({rows[-1]['ratio']:.2f}x)", flush=True)

    for workload, label, spec, e in (("full-graph", "full-graph GCN", FULL, a.full_epochs[name]),
                                     ("mini-batch", "mini-batch SAGE", MINI, a.mini_epochs)):
        if workload not in a.workloads:
            continue
        g = repeat(lambda s=spec, e=e: grappa_train(raw, s, e, env), a.repeats)
        d = repeat(lambda w=workload, e=e: dgl_run(py, w, raw, env, "--epochs", e, "--threads", t), a.repeats)
        row(label, "epoch_s", g, d, acc=(g[0]["test_acc"], d[0]["test_acc"]),
            rss=(g[0]["peak_rss_mb"], d[0]["peak_rss_mb"]))
        row(label, "eval_s", g, d)
        if a.peer_torch:
            gp = repeat(lambda s=spec, e=e: grappa_train(raw, s, e, env, py), a.repeats)
            row(f"{label}, grappa on the peer's torch", "epoch_s", gp, d,
                acc=(gp[0]["test_acc"], d[0]["test_acc"]), rss=(gp[0]["peak_rss_mb"], d[0]["peak_rss_mb"]))
    if "mini-batch" in a.workloads:
        split = repeat(lambda: grappa_step_split(raw, 1, a.threads), a.repeats)
        for key in ("step_ms", "sample_ms", "compute_ms"):
            row("mini-batch SAGE", key, split, d)
    if "partition" in a.workloads:
        for method in ("random", "metis"):
            with tempfile.TemporaryDirectory() as tmp:
                d = repeat(lambda m=method, t=tmp: dgl_run(py, "partition", raw, env, "--method", m, "--out", t),
                           a.repeats)
            for ranks in (1, 2):
                g = repeat(lambda r=ranks, m=method: grappa_partition(raw, r, m, env), a.repeats)
                row(f"partition {method}, {ranks} rank{'s' if ranks > 1 else ''}", "wall_s", g, d,
                    rss=(max(r["peak_rss_mb"] for r in g), max(r["peak_rss_mb"] for r in d)))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| graph | workload | measure | grappa min / median | DGL min / median | grappa / DGL | "
             "accuracy grappa / DGL | peak RSS MB grappa / DGL |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = " / ".join(f"{100 * v:.1f}" for v in r["acc"]) if "acc" in r else ""
        rss = " / ".join(f"{v:,.0f}" for v in r["rss"]) if "rss" in r else ""
        g, d = r["grappa"], r["dgl"]
        lines.append(f"| {r['graph']} | {r['workload']} | {r['measure']} | {g['min']:.4g} / {g['median']:.4g} | "
                     f"{d['min']:.4g} / {d['median']:.4g} | {r['ratio']:.2f}x | {acc} | {rss} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", nargs="+", default=["sbm200k"], choices=sorted(GRAPHS))
    p.add_argument("--workloads", nargs="+", default=["full-graph", "mini-batch", "partition"],
                   choices=["full-graph", "mini-batch", "partition"])
    p.add_argument("--repeats", type=int, default=3, help="runs of each workload (min and median reported)")
    p.add_argument("--threads", type=int, default=2, help="threads of both libraries (default 2)")
    p.add_argument("--mini-epochs", type=int, default=5)
    p.add_argument("--no-peer-torch", dest="peer_torch", action="store_false",
                   help="skip grappa's runs on the peer's torch (they separate the library from the torch version)")
    p.add_argument("--full-epochs-200k", type=int, default=50)
    p.add_argument("--full-epochs-2m", type=int, default=30)
    p.add_argument("--work", default="work_data/peer", help="where the graphs are generated (kept)")
    p.add_argument("--peer-venv", default=str(Path.home() / ".cache/grappa/peer-venv"))
    p.add_argument("--out", default="bench_results/peer")
    a = p.parse_args(argv)
    a.full_epochs = {"sbm200k": a.full_epochs_200k, "sbm2m": a.full_epochs_2m}
    py = peer_python(Path(a.peer_venv))
    versions = sh([py, "-c", "import dgl, torch; print(dgl.__version__, torch.__version__)"],
                  thread_env(a.threads)).split()
    import torch

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"dgl": versions[0], "peer_torch": versions[1], "grappa_torch": torch.__version__,
            "threads": a.threads, "repeats": a.repeats}
    rows = []
    for name in a.graphs:
        raw = Path(a.work) / name
        if not (raw / "graph.json").exists():
            sh([sys.executable, "-m", "grappa.graph.generators_cli", "sbm", *GRAPHS[name], "--out", raw, "--quiet"],
               thread_env(a.threads))
        rows += measure_graph(name, raw, py, a)
        (out / "peer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")  # each graph's
        text = table(rows)
        (out / "peer.md").write_text(text)
    print(f"\nDGL {meta['dgl']} on torch {meta['peer_torch']}; grappa on torch {meta['grappa_torch']}; "
          f"{a.threads} threads\n\n{text}")


if __name__ == "__main__":
    main()
