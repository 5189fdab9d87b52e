#!/usr/bin/env python
"""The comparison benchmark: every method on one graph, side by side.

Runs registered methods (grappa.train.registry; by default its
BENCH_DEFAULT, `--methods all` every one that accepts the training
arguments: the others are named in the table) with the same model, budget
and seeds. Every run's arguments are checked before the first launch.
`--budget epochs=N|seconds=S` (default: the preset's) gives every
method the same budget in its own terms (``Method.budget_flags``: N rounds
of every RETEXO stage, N averaging periods, N LLCG rounds, N epochs for the
rest; or the same S seconds of training and evaluation to each), and the
table flags a run whose final model's validation was still rising when the
budget ran out (a jump of more than 1 point in its last two evaluations, or
a significant climb of more than 1 point over its last quarter) as "not
converged": its number is a floor. Each method brings what the benchmark
needs to know of it: its
partition (made once, reused), its benchmark flags (``Method.bench_flags``,
replaced for a family by `--method-args FAMILY=FLAGS`: see --help), the
variants it adds (the averaging methods' `--drop-parts D`: D of P + D parts
never trained) and its own summary keys and analysis lines. Writes, in --out:

    bench.json             every run's result and the per-method summary
    bench.md               the table (Markdown) and the analysis
    accuracy_vs_time.png   test metric against training + evaluation time
    bytes_per_epoch.png    training bytes per rank per epoch (log scale)

    python bench/compare.py --preset cora --ranks 4 --out bench_results/cora
    python bench/compare.py --preset cora --ranks 4 --methods all --budget seconds=20 --out bench_results/cora-20s
    python bench/compare.py --preset hetero --ranks 2 --methods centralized halo grappa --out bench_results/hetero
    python bench/compare.py --preset sbm --ranks 4 --methods all --out bench_results/sbm
    python bench/compare.py --raw work_data/mygraph --ranks 8 --out bench_results/mine -- --model sage --epochs 100
    python bench/compare.py --preset cora --method-args FAMILY="FLAGS" --out DIR   # the families: --help
    python bench/compare.py --preset cora --ranks 4 --nodes 2 --network shm,1gbit,wan --out DIR   # network_compare.py

Presets: cora (the shipped Cora; GCN, budget epochs=400), sbm (a generated
SBM with 200k nodes and 2.4M edges; GCN hidden 64, epochs=50), sbm-sparse
(30k nodes, average degree 8, homophily 0.45, weak features; SAGE hidden 64,
epochs=100) and hetero (the heterophilous benchmark's recipe: 5 residual
GCN blocks with layer norm, hidden 512, dropout 0.2, Adam lr 3e-5, 1000
steps, ROC-AUC; on a generated 3,000-node two-class SBM, 20% positive,
homophily 0.2, weak features). Arguments after `--` go to every grappa-train
run (and override the preset's; an `--epochs` there replaces the preset's
budget, as before budgets existed). Epoch-time
ratios are measured within one invocation: compare them, not absolute times
across machines.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    # epochs=400: PSGD-PA levels off after about 350 averaging periods on Cora, RETEXO's stages (at --lr) well
    # before 400 rounds; no method is flagged not converged at it (docs/BENCHMARKS.md, "The cora preset at epochs=400")
    "cora": {"train": ["--model", "gcn", "--hidden", "16", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                       "--weight-decay", "5e-4", "--eval-every", "10"], "budget": "epochs=400"},
    "sbm": {"train": ["--model", "gcn", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                      "--weight-decay", "5e-4", "--eval-every", "5"], "budget": "epochs=50",
            "generate": ["sbm", "--num-nodes", "200000", "--avg-degree", "12", "--homophily", "0.6",
                         "--num-features", "32", "--num-classes", "8", "--seed", "0"]},
    # sparse, low homophily, weak features: the neighbourhood decides the label
    "sbm-sparse": {"train": ["--model", "sage", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                             "--weight-decay", "5e-4", "--eval-every", "5"], "budget": "epochs=100",
                   "generate": ["sbm", "--num-nodes", "30000", "--avg-degree", "8", "--homophily", "0.45",
                                "--num-features", "32", "--feature-signal", "0.1", "--num-classes", "8",
                                "--seed", "0"]},
    # the heterophilous benchmark's recipe (Platonov et al., ICLR 2023; tolokers, questions, minesweeper):
    # 5 residual blocks with layer norm, hidden 512, dropout 0.2, Adam lr 3e-5, no weight decay, 1000 full-graph
    # steps, ROC-AUC on two classes; on a generated imbalanced (20% positive), low-homophily, weak-feature SBM
    "hetero": {"train": ["--model", "gcn", "--hidden", "512", "--layers", "5", "--residual", "--norm", "layer",
                         "--dropout", "0.2", "--lr", "3e-5", "--weight-decay", "0", "--eval-every", "20"],
               "budget": "epochs=1000",
               "generate": ["sbm", "--num-nodes", "3000", "--avg-degree", "8", "--homophily", "0.2",
                            "--num-features", "32", "--feature-signal", "0.2", "--num-classes", "2",
                            "--positive-fraction", "0.2", "--seed", "0"]},
}


def sh(cmd: list[str], env: dict | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def mpirun(n: int) -> list[str]:
    from grappa.launch_env import local_mpirun

    return local_mpirun(n)


def prepare_raw(a) -> Path:
    if a.raw:
        return Path(a.raw)
    raw = Path(a.work) / a.preset
    if not (raw / "graph.json").exists():
        if a.preset == "cora":
            sh([sys.executable, "-m", "grappa.graph.importers_cli", "planetoid", str(ROOT / "datasets/cora"),
                "--name", "cora", "--out", str(raw), "--overwrite"])
        else:
            sh([sys.executable, "-m", "grappa.graph.generators_cli", *PRESETS[a.preset]["generate"],
                "--out", str(raw), "--overwrite", "--quiet"])
    return raw


def prepare_partition(raw: Path, work: Path, method: str, k: int, ranks: int) -> Path:
    out = work / f"{raw.name}-{method}-k{k}"
    m = out / "manifest.json"
    if m.exists():
        man = json.loads(m.read_text())
        if man["num_chunks"] == k and man["method"] == method:
            return out
    sh([*mpirun(ranks), sys.executable, str(ROOT / "data_prep/partition.py"), "--data", str(raw), "--out", str(out),
        "--num-chunks", str(k), "--method", method, "--overwrite", "--no-progress"])
    return out


def curve(rows: list[dict]) -> list[tuple[float, float]]:
    return [(r["elapsed_s"], r["test_metric"]) for r in rows if "test_metric" in r]


def converged(rows: list[dict], tol: float = 0.01, sigmas: float = 2.0) -> bool:
    """False when the final model's validation metric was still rising when the budget ran out,
    so its test metric is a floor. Read from the evaluations of the final model (RETEXO's earlier
    stages are provisional) as either of

    - a jump at the end: the best is one of the last two evaluations and beats every earlier
      one by more than ``tol`` (1 point) and by more than ``sigmas`` times the run's own
      evaluation noise (``eval_noise``);
    - a climb: over the last quarter (at least 4 evaluations) the least-squares trend gains
      more than ``tol`` and is significant (slope over its standard error above 2).

    ``tol`` keeps a plateau's noise from reading as progress: with 40 evaluations of a flat
    curve, "best among the last two" alone flags one run in twenty by chance. The noise term
    does the same where one evaluation swings by more than a point (a small validation set, a
    method whose model moves between rounds: LLCG's curves on Cora swing by 2 to 4 points)."""
    vals = np.array([r["val_metric"] for r in rows if "val_metric" in r and not r.get("provisional")])
    if len(vals) < 3:
        return len(vals) == 0 or int(np.argmax(vals)) < len(vals) - 2
    if vals[-2:].max() > vals[:-2].max() + max(tol, sigmas * eval_noise(vals)):
        return False
    tail = vals[-max(4, len(vals) // 4):]
    if len(tail) > len(vals) - 1:
        return True
    x = np.arange(len(tail), dtype=float) - (len(tail) - 1) / 2
    slope = float((x * (tail - tail.mean())).sum() / (x * x).sum())
    resid = tail - tail.mean() - slope * x
    se = float(np.sqrt((resid ** 2).sum() / (len(tail) - 2) / (x * x).sum()))
    rise = slope * (len(tail) - 1)
    return not (rise > tol and (se == 0 or slope / se > 2))


def eval_noise(vals: np.ndarray) -> float:
    """One evaluation's noise: the spread of the differences between successive evaluations over
    the second half of the curve, over sqrt(2) (a difference holds two evaluations' noise; a steady
    trend only shifts the differences' mean). 0 with fewer than 4 evaluations in that half."""
    d = np.diff(vals[len(vals) // 2:])
    return float(d.std(ddof=1) / np.sqrt(2)) if len(d) >= 3 else 0.0


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, m in points if m >= target), None)


def summarize(name: str, runs: list[dict], curves: list[list], target: float, converge: list[bool]) -> dict:
    tests = [r["test_metric"] for r in runs]
    reach = [time_to(c, target) for c in curves]
    cats = sorted({c for r in runs for c in r["train_bytes_per_rank_per_epoch_by_category"]})
    return {
        "method": name, "seeds": [r["seed"] for r in runs], "world_size": runs[0]["world_size"],
        "test_mean": statistics.mean(tests), "test_std": statistics.pstdev(tests), "tests": tests,
        "epoch_time_s_median": statistics.median(r["epoch_time_s_median"] for r in runs),
        "time_to_98pct_s_median": statistics.median(reach) if all(t is not None for t in reach) else None,
        "seeds_reaching_98pct": sum(t is not None for t in reach),
        "not_converged_seeds": sum(not c for c in converge),
        "elapsed_s_median": statistics.median(r.get("elapsed_s", 0.0) for r in runs),
        "epochs_run_median": statistics.median(r["epochs_run"] for r in runs),
        "train_bytes_per_rank_per_epoch": statistics.mean(r["train_bytes_per_rank_per_epoch"] for r in runs),
        "train_bytes_per_rank_per_epoch_by_category": {
            c: statistics.mean(r["train_bytes_per_rank_per_epoch_by_category"].get(c, 0.0) for r in runs)
            for c in cats},
        "peak_rss_mb_per_rank_max": max(r["peak_rss_mb_max"] for r in runs),
        "comm_time_s_per_epoch": statistics.mean(r.get("comm_time_s_per_epoch", 0.0) for r in runs),
        "train_rounds_per_epoch": statistics.mean(r.get("train_rounds_per_epoch", 0.0) for r in runs),
        **method_summary(name, runs),
    }


def method_class(label: str):
    """The registered method whose table label (or a variant's: "..., 2 of P+2 parts dropped") is ``label``."""
    from grappa.train.registry import METHODS

    return next((c for c in METHODS.values() if label == c.label or label.startswith(f"{c.label}, ")), None)


def method_summary(label: str, runs: list[dict]) -> dict:
    cls = method_class(label)
    return cls.bench_summary(runs) if cls else {}


def check_plans(a, plans: dict, p: argparse.ArgumentParser) -> dict[str, str]:
    """Every run's arguments parsed as grappa-train will, before any launch: a flag that a
    named method refuses (a RETEXO flag after `--` with centralized also named) fails now,
    not after the other methods' runs. Under `--methods all` a method that refuses the
    training arguments (RETEXO those of the hetero preset's residual blocks) is left out
    instead; returns {its label: why}, for the report."""
    from grappa.errors import InputError
    from grappa.train.cli import build_parser, config_from_args

    left_out = {}
    for distributed, plan in plans.items():
        kept = []
        for r in plan:
            try:
                config_from_args(build_parser().parse_args(r["args"]))
                kept.append(r)
            except InputError as e:
                if a.methods != ["all"]:
                    p.error(f"{r['method']}: {e}")
                left_out[r["method"]] = str(e)
        plans[distributed] = kept
    for label, why in left_out.items():
        print(f"[bench] left out {label}: {why}", flush=True)
    return left_out


def analytic(raw: Path, metis_dir: Path, train_args: list[str], ranks: int, method: str) -> dict:
    """Predicted bytes (grappa.analysis.comm_model), from the graph and model only; the
    arguments parsed for ``method``, one of the runs (they may carry its own flags)."""
    from grappa.analysis.comm_model import predicted_bytes
    from grappa.train.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--data", str(raw), *train_args, "--method", method]))
    return predicted_bytes(raw, metis_dir, cfg, ranks)


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1000 or unit == "GB":
            return f"{b:,.0f} {unit}" if unit == "B" else f"{b:,.1f} {unit}"
        b /= 1000


def table(summary: dict, metric: str) -> str:
    from grappa.train.registry import REFERENCE, resolve

    ref = resolve(REFERENCE).label
    ref_t = summary[ref]["epoch_time_s_median"] if ref in summary else None
    lines = [f"| method | ranks | test {metric} (mean ± std) | converged | epochs (median) | training + evaluation "
             f"| epoch time (median) | vs {ref} | time to 98% of centralized | train bytes / rank / epoch | "
             "by category | peak RSS / rank |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, s in summary.items():
        reach = (f"{s['time_to_98pct_s_median']:.1f} s" if s["time_to_98pct_s_median"] is not None
                 else f"not reached ({s['seeds_reaching_98pct']}/{len(s['seeds'])} seeds)")
        ratio = f"{s['epoch_time_s_median'] / ref_t:.2f}x" if ref_t else "-"
        cats = ", ".join(f"{c.removeprefix('train_')} {fmt_bytes(v)}"
                         for c, v in s["train_bytes_per_rank_per_epoch_by_category"].items()) or "-"
        bad = s.get("not_converged_seeds", 0)
        conv = f"**not converged** ({bad}/{len(s['seeds'])} seeds)" if bad else "yes"
        lines.append(f"| {name} | {s['world_size']} | {100 * s['test_mean']:.2f} ± {100 * s['test_std']:.2f} | "
                     f"{conv} | {s.get('epochs_run_median', 0):.0f} | {s.get('elapsed_s_median', 0.0):.1f} s | "
                     f"{1000 * s['epoch_time_s_median']:.1f} ms | {ratio} | {reach} | "
                     f"{fmt_bytes(s['train_bytes_per_rank_per_epoch'])} | {cats} | "
                     f"{s['peak_rss_mb_per_rank_max']:.0f} MB |")
    return "\n".join(lines)


def plot(out: Path, summary: dict, curves: dict, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, cs) in enumerate(curves.items()):
        for j, c in enumerate(cs):
            t, m = zip(*c)
            ax.plot(t, m, color=f"C{i}", alpha=0.9 if j == 0 else 0.35, label=name if j == 0 else None)
    ax.set_xlabel("training + evaluation time (s)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title("Test metric against time (one line per seed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_time.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [n for n in summary if summary[n]["train_bytes_per_rank_per_epoch"] > 0]
    cats = sorted({c for n in names for c in summary[n]["train_bytes_per_rank_per_epoch_by_category"]})
    width = 0.8 / max(len(cats), 1)
    for j, c in enumerate(cats):
        vals = [summary[n]["train_bytes_per_rank_per_epoch_by_category"].get(c, 0) for n in names]
        ax.bar(np.arange(len(names)) + (j - (len(cats) - 1) / 2) * width, [v if v > 0 else np.nan for v in vals],
               width, label=c)
    ax.scatter(np.arange(len(names)), [summary[n]["train_bytes_per_rank_per_epoch"] for n in names], color="k",
               marker="_", s=400, zorder=3, label="total")
    ax.set_yscale("log")
    low = min(v for n in names for v in summary[n]["train_bytes_per_rank_per_epoch_by_category"].values() if v > 0)
    ax.set_ylim(bottom=low / 10)
    ax.set_xticks(np.arange(len(names)), names, rotation=15)
    ax.set_ylabel("bytes sent per rank per epoch")
    ax.set_title("Training communication (centralized sends nothing)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bytes_per_epoch.png", dpi=120)
    plt.close(fig)


def report(a, raw: Path, summary: dict, pred: dict, metric: str, wall: float, train_args: list[str]) -> str:
    from grappa.train.registry import METHODS

    info = json.loads((raw / "graph.json").read_text())
    lines = [f"# Benchmark: {info['name']} ({info['num_nodes']:,} nodes, {info['num_edges']:,} edges), "
             f"P = {a.ranks}", "",
             f"Command: `python bench/compare.py {' '.join(sys.argv[1:])}`  ",
             f"Training arguments: `{' '.join(train_args)}`; seeds {a.seeds}; "
             + (f"budget {a.budget[0]}={a.budget[1]:g}, each method's own terms: " + "; ".join(
                 f"{c.label} `{' '.join(c.budget_flags(*a.budget, a.layers))}`" for c in _run_classes(a)) + "; "
                if a.budget else "")
             + "; ".join(f"{c.label}: `{' '.join(c.bench_flags)}`" for c in METHODS.values() if c.bench_flags)
             + f"; random partitions: K = {a.chunks_per_rank * a.ranks}; METIS: K = {a.ranks}.  ",
             f"Machine: {os.cpu_count()} cores; total benchmark time {wall:.0f} s.", "",
             table(summary, metric), ""]
    left_out = getattr(a, "left_out", {})
    if left_out:
        lines += [f"Left out of `--methods all`: {label} ({why})." for label, why in left_out.items()] + [""]
    analysis = [line for label in summary if (cls := method_class(label))
                for line in cls.bench_lines(summary, metric, pred)]
    if "centralized" in summary:
        c = summary["centralized"]
        analysis += [f"- {name}: test {metric} {100 * (s['test_mean'] - c['test_mean']):+.2f} points against "
                     "centralized." for name, s in summary.items() if name != "centralized"]
    return "\n".join(lines + (["## Analysis", "", *analysis, ""] if analysis else []))


def _run_classes(a) -> list:
    """The method classes of the runs asked for, each once."""
    return list(dict.fromkeys(cls for _, _, cls, _ in method_runs(a)))


def _drop(flags: list[str]) -> int:
    return int(flags[flags.index("--drop-parts") + 1]) if "--drop-parts" in flags else 0


def method_runs(a) -> list[tuple[str, str, type, list[str]]]:
    """(run id, table label, method class, its flags) for every run asked for: each method's
    benchmark flags (``--method-args`` replaces a family's), its variant's defaults, and the
    variants it adds (``bench_runs``: the averaging methods' dropped parts)."""
    from grappa.train.registry import ALIASES, METHODS

    names = list(METHODS) if a.methods == ["all"] else [ALIASES.get(m, m) for m in a.methods]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"compare.py: unknown method(s) {unknown}; registered: {', '.join(METHODS)}")
    given = dict(a.method_args)
    runs = []
    for name in names:
        cls = METHODS[name]
        flags = given[cls.family()].split() if cls.family() in given else list(cls.bench_flags)
        flags = _own_flags(cls, flags) + [_flag(k, v) for k, v in cls.defaults.items()]
        if a.budget:  # after the training arguments: it replaces their --epochs
            flags += cls.budget_flags(*a.budget, a.layers)
        runs += [(run_id, label, cls, f) for run_id, label, f in cls.bench_runs(flags, a.drop_parts)]
    return runs


def _own_flags(cls, flags: list[str]) -> list[str]:
    """``flags`` without the "--name value" pairs of other methods' options (a family's flags reach
    every member, which keeps the options it has)."""
    from grappa.train.registry import METHODS

    own = {f.name.replace("_", "-") for f in dataclasses.fields(cls.Options)}
    others = {f.name.replace("_", "-") for c in METHODS.values() for f in dataclasses.fields(c.Options)} - own
    kept, keep = [], True
    for tok in flags:
        if tok.startswith("--"):
            keep = tok[2:].split("=")[0] not in others
        if keep:
            kept.append(tok)
    return kept


def _families() -> dict[str, str]:
    """Family -> its benchmark flags, for --help."""
    from grappa.train.registry import METHODS

    return {c.family(): " ".join(c.bench_flags) or "(its defaults)" for c in METHODS.values()
            if c.bench_family or c.bench_flags}


def _method_args(text: str) -> tuple[str, str]:
    family, sep, flags = text.partition("=")
    if not sep or not family:
        raise argparse.ArgumentTypeError(f"{text!r}: give FAMILY=FLAGS, FAMILY one of {', '.join(_families())}")
    return family, flags


def _flag(name: str, value) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag}={value}"


def make_plans(a, raw: Path, work: Path, out: Path, train_args: list[str]):
    """Make the partitions the methods need (reused between invocations) and
    the run plans: {distributed?: [{method, out, args}]}."""
    from grappa.train.registry import partition_spec

    runs = method_runs(a)
    datasets = {}
    for _, _, cls, flags in runs:
        spec = partition_spec(cls.name, a.ranks, _drop(flags), a.chunks_per_rank)
        if spec and spec not in datasets:
            datasets[spec] = prepare_partition(raw, work, spec[0], spec[1], a.partition_ranks)
    plans: dict[bool, list[dict]] = {False: [], True: []}
    for run_id, label, cls, flags in runs:
        spec = partition_spec(cls.name, a.ranks, _drop(flags), a.chunks_per_rank)
        data = datasets[spec] if spec else raw
        for seed in a.seeds:
            plans[cls.world_size != "one"].append({
                "method": label, "out": str(out / "runs" / run_id / f"seed-{seed}"),
                "args": ["--data", str(data), *train_args, "--method", cls.name, *flags, "--seed", str(seed),
                         "--no-progress"]})
    return datasets, plans


def _budget(text: str) -> tuple[str, float]:
    kind, sep, value = text.partition("=")
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not sep or kind not in ("epochs", "seconds") or not 0 < v < float("inf") or (kind == "epochs" and v % 1):
        raise argparse.ArgumentTypeError(f"{text!r}: give epochs=N (a whole number, each method's own epochs: "
                                         "rounds, averaging periods, rounds per stage) or seconds=S")
    return kind, v


def resolve_budget(a, extra: list[str], p: argparse.ArgumentParser) -> tuple[str, float] | None:
    """--budget, else the preset's unless the arguments after -- set --epochs (they did before budgets)."""
    if a.budget and {"--epochs", "--time-budget"} & set(extra):
        p.error("--budget sets every method's --epochs and --time-budget: drop them after --")
    if a.budget or not a.preset or "--epochs" in extra or "--time-budget" in extra:
        return a.budget
    return _budget(PRESETS[a.preset]["budget"])


def _layers(train_args: list[str]) -> int:
    """--layers of the training arguments (the last one given), for the budgets counted per layer."""
    idx = [i for i, t in enumerate(train_args) if t == "--layers"]
    return int(train_args[idx[-1] + 1]) if idx else 2


def _profiles(text: str) -> list[str]:
    from grappa.emulated_cluster import PROFILES

    names = [t for t in text.split(",") if t]
    bad = [n for n in names if n not in PROFILES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown link profile(s) {bad}: choose from {', '.join(PROFILES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    from grappa.train.registry import BENCH_DEFAULT

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a shipped or generated graph and its settings")
    src.add_argument("--raw", help="your raw graph directory (grappa-import / grappa-generate)")
    p.add_argument("--ranks", type=int, default=4, help="P, ranks of every distributed method")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(BENCH_DEFAULT),
                   help=f"registered methods to run, or 'all' (default: {' '.join(BENCH_DEFAULT)})")
    p.add_argument("--method-args", type=_method_args, action="append", default=[], metavar="FAMILY=FLAGS",
                   help="flags for a family of methods instead of its benchmark flags (repeatable): "
                        + "; ".join(f"{f}: {a!r}" for f, a in _families().items()))
    p.add_argument("--budget", type=_budget, metavar="epochs=N|seconds=S",
                   help="every method's budget in its own terms (Method.budget_flags): epochs=N gives N epochs as the "
                        "method counts them (RETEXO: N rounds of every stage; averaging: N periods of 5 local steps; "
                        "LLCG: N rounds), seconds=S the same S seconds of training and evaluation to each (RETEXO: "
                        "S / layers a stage). Default: the preset's")
    p.add_argument("--drop-parts", type=int, default=0,
                   help="also run each averaging method with this many of P + D parts never trained")
    p.add_argument("--chunks-per-rank", type=int, default=4, help="K = this x P for the methods on random chunks")
    p.add_argument("--partition-ranks", type=int, default=2, help="MPI ranks of the partitioning jobs")
    p.add_argument("--work", default="work_data/bench", help="datasets (reused between invocations)")
    p.add_argument("--out", required=True, help="output directory (replaced)")
    p.add_argument("--network", type=_profiles,
                   help="run the distributed methods on each of these links, e.g. shm,10gbit,1gbit,wan: an emulated "
                        "cluster per link (grappa.emulated_cluster; root), tables against the link")
    p.add_argument("--nodes", type=int, default=2, help="--network: nodes the --ranks are spread over (default 2)")
    return p


def main(argv=None) -> None:
    from grappa.plugins import load_plugins

    load_plugins()  # methods and models of GRAPPA_PLUGINS modules (grappa.plugins)
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = build_parser()
    a = p.parse_args(argv)
    if a.network and (a.ranks % a.nodes or not 2 <= a.nodes <= min(8, a.ranks)):
        p.error(f"--nodes {a.nodes}: give 2 to min(8, --ranks) nodes that divide --ranks {a.ranks}")
    t0 = time.perf_counter()
    train_args = (PRESETS[a.preset]["train"] if a.preset else []) + extra
    a.budget, a.layers = resolve_budget(a, extra, p), _layers(train_args)
    work, out = Path(a.work), Path(a.out)
    raw = prepare_raw(a)
    datasets, plans = make_plans(a, raw, work, out, train_args)
    a.left_out = check_plans(a, plans, p)
    metis_dir = datasets.get(("metis", a.ranks)) or prepare_partition(raw, work, "metis", a.ranks, a.partition_ranks)
    print(f"[bench] datasets ready in {time.perf_counter() - t0:.0f} s: {raw}, {sorted(map(str, datasets.values()))}",
          flush=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if a.network:
        import network_compare

        return network_compare.run(a, raw, plans, metis_dir, train_args, t0)
    for distributed, plan in plans.items():
        run_plan(a, out, distributed, plan)
    summary, results, curves, central = summaries(plans)
    metric = next(iter(results.values()))[0]["metric"]
    pred = analytic(raw, metis_dir, train_args, a.ranks, method_class(next(iter(results))).name)
    wall = time.perf_counter() - t0
    md = report(a, raw, summary, pred, metric, wall, train_args)
    (out / "bench.md").write_text(md)
    (out / "bench.json").write_text(json.dumps({
        "args": vars(a), "train_args": train_args, "raw": str(raw),
        "datasets": {f"{m}-k{k}": str(d) for (m, k), d in datasets.items()},
        "target_98pct_of_centralized": 0.98 * central, "summary": summary, "analytic": pred,
        "runs": results, "curves": curves, "wall_s": wall}, indent=2) + "\n")
    plot(out, summary, curves, metric)
    print(md)
    print(f"[bench] wrote {out}/bench.json, bench.md, accuracy_vs_time.png, bytes_per_epoch.png ({wall:.0f} s)")


def run_plan(a, out: Path, distributed: bool, plan: list[dict], launch: list[str] | None = None,
             env: dict | None = None, tag: str = "") -> None:
    """One launch for centralized, one (mpirun, or ``launch``) for every distributed method:
    process start-up would otherwise dominate small graphs (run_seeds.py)."""
    if not plan:
        return
    plan_file = out / f"plan-{'distributed' if distributed else 'centralized'}{tag}.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    cmd = [sys.executable, str(ROOT / "bench/run_seeds.py"), "--plan", str(plan_file)]
    t1 = time.perf_counter()
    sh([*(launch or mpirun(a.ranks)), *cmd] if distributed else cmd, env)
    print(f"[bench] {len(plan)} {'distributed' if distributed else 'centralized'} runs{tag} in "
          f"{time.perf_counter() - t1:.0f} s", flush=True)


def summaries(plans: dict) -> tuple[dict, dict, dict, float]:
    """Per-method summaries of the finished runs, their results and curves, and centralized's mean."""
    from grappa.train.metrics_log import read_metrics

    results, curves, conv = {}, {}, {}
    for r in plans[False] + plans[True]:
        res = json.loads((Path(r["out"]) / "result.json").read_text())
        results.setdefault(r["method"], []).append(res)
        rows = read_metrics(r["out"])  # one read for the curve and the flag
        curves.setdefault(r["method"], []).append(curve(rows))
        conv.setdefault(r["method"], []).append(converged(rows))
    # 98% of centralized accuracy (of the best method when centralized was not run)
    central = max(statistics.mean(r["test_metric"] for r in rs) for n, rs in results.items()
                  if n == "centralized" or "centralized" not in results)
    summary = {n: summarize(n, results[n], curves[n], 0.98 * central, conv[n]) for n in results}
    return summary, results, curves, central


if __name__ == "__main__":
    main()
