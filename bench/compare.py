#!/usr/bin/env python
"""The comparison benchmark: every method on one graph, side by side.

Runs the registered methods (grappa.train.registry) with the same model,
epochs and seeds: by default centralized training (one process), halo
exchange (exact distributed full-graph training, METIS partition, K = P),
Grappa and its two ablations (UW: uniform weights; FP: fixed partitions);
`--methods all` adds the model-averaging methods (PSGD-PA, RandomTMA,
SuperTMA, in their deterministic step mode: see --averaging-args) and LLCG
(its defaults: K = 64 local steps decreasing by rho = 1.1 per round, one
server correction step per round; an epoch is one round), RETEXO and AdaQP
(with and without overlap, so the overlap's saving is measured in the same
invocation), and `--drop-parts D` also runs each averaging method with D of P + D parts never
trained. Each method gets the partition it declares (made once, reused).
Writes, in --out:

    bench.json             every run's result and the per-method summary
    bench.md               the table (Markdown) and the analysis
    accuracy_vs_time.png   test metric against training + evaluation time
    bytes_per_epoch.png    training bytes per rank per epoch (log scale)

    python bench/compare.py --preset cora --ranks 4 --out bench_results/cora
    python bench/compare.py --preset sbm --ranks 4 --out bench_results/sbm
    python bench/compare.py --raw work_data/mygraph --ranks 8 --out bench_results/mine -- --model sage --epochs 100
    python bench/compare.py --preset cora --methods centralized psgd-pa random-tma super-tma --seeds 0 1 --out DIR
    python bench/compare.py --preset cora --ranks 4 --seeds 0 1 --methods centralized psgd-pa llcg --out DIR
    python bench/compare.py --preset cora --ranks 4 --seeds 0 1 --methods halo adaqp --out DIR

Presets: cora (the shipped Cora; GCN, 100 epochs), sbm (a generated SBM
with 200k nodes and 2.4M edges; GCN hidden 64, 50 epochs) and sbm-sparse
(30k nodes, average degree 8, homophily 0.45, weak features; SAGE hidden 64,
100 epochs). Arguments after
`--` go to every grappa-train run (and override the preset's). Epoch-time
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
# The full method's flags: node-level coverage weights, a new shuffled chunk
# assignment every 5 epochs; the halo is grappa's default (--layers hops
# within --halo-budget-mb; `--grappa-args "... --halo-hops 0"` isolates the
# chunk sets as the Grappa paper does, docs/BENCHMARKS.md).
GRAPPA_ARGS = "--schedule shuffle --repartition-every 5 --weighting node"
PRESETS = {
    "cora": {"train": ["--model", "gcn", "--hidden", "16", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                       "--weight-decay", "5e-4", "--epochs", "100", "--eval-every", "5"]},
    "sbm": {"train": ["--model", "gcn", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                      "--weight-decay", "5e-4", "--epochs", "50", "--eval-every", "5"],
            "generate": ["sbm", "--num-nodes", "200000", "--avg-degree", "12", "--homophily", "0.6",
                         "--num-features", "32", "--num-classes", "8", "--seed", "0"]},
    # sparse, low homophily, weak features: the neighbourhood decides the label
    "sbm-sparse": {"train": ["--model", "sage", "--hidden", "64", "--layers", "2", "--dropout", "0.5", "--lr", "0.01",
                             "--weight-decay", "5e-4", "--epochs", "100", "--eval-every", "5"],
                   "generate": ["sbm", "--num-nodes", "30000", "--avg-degree", "8", "--homophily", "0.45",
                                "--num-features", "32", "--feature-signal", "0.1", "--num-classes", "8",
                                "--seed", "0"]},
}
DEFAULT_METHODS = ["centralized", "halo", "grappa", "grappa-uw", "grappa-fp"]
ALIASES = {"uw": "grappa-uw", "fp": "grappa-fp"}
# Averaging methods run in the deterministic step mode, so runs are comparable
# and reproducible; an "epoch" is then one pass over each rank's training nodes.
AVERAGING_ARGS = "--average-every-steps 5"


def sh(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def mpirun(n: int) -> list[str]:
    return ["mpirun", "-np", str(n), "--oversubscribe"]


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


def curve(run_dir: Path) -> list[tuple[float, float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["elapsed_s"], r["test_metric"]) for r in rows if "test_metric" in r]


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, m in points if m >= target), None)


def summarize(name: str, runs: list[dict], curves: list[list], target: float) -> dict:
    tests = [r["test_metric"] for r in runs]
    reach = [time_to(c, target) for c in curves]
    cats = sorted({c for r in runs for c in r["train_bytes_per_rank_per_epoch_by_category"]})
    return {
        "method": name, "seeds": [r["seed"] for r in runs], "world_size": runs[0]["world_size"],
        "test_mean": statistics.mean(tests), "test_std": statistics.pstdev(tests), "tests": tests,
        "epoch_time_s_median": statistics.median(r["epoch_time_s_median"] for r in runs),
        "time_to_98pct_s_median": statistics.median(reach) if all(t is not None for t in reach) else None,
        "seeds_reaching_98pct": sum(t is not None for t in reach),
        "train_bytes_per_rank_per_epoch": statistics.mean(r["train_bytes_per_rank_per_epoch"] for r in runs),
        "train_bytes_per_rank_per_epoch_by_category": {
            c: statistics.mean(r["train_bytes_per_rank_per_epoch_by_category"].get(c, 0.0) for r in runs)
            for c in cats},
        "peak_rss_mb_per_rank_max": max(r["peak_rss_mb_max"] for r in runs),
        "comm_time_s_per_epoch": statistics.mean(r.get("comm_time_s_per_epoch", 0.0) for r in runs),
        "train_rounds_per_epoch": statistics.mean(r.get("train_rounds_per_epoch", 0.0) for r in runs),
        **adaqp_summary(runs),
    }


def adaqp_summary(runs: list[dict]) -> dict:
    """AdaQP runs: mean bits per message of the assigned cycles, per layer and
    direction, over seeds; the solver's total time."""
    if not runs[0].get("bit_histograms"):
        return {}
    bits: dict[str, list[float]] = {}
    for r in runs:
        for cycle in r["bit_histograms"]:
            for key, hist in cycle["bits"].items():
                n = sum(hist.values())
                bits.setdefault(key, []).append(sum(int(b) * c for b, c in hist.items()) / max(n, 1))
    return {"mean_bits_assigned": {k: statistics.mean(v) for k, v in sorted(bits.items())},
            "solver_s_total_mean": statistics.mean(r["solver_s_total"] for r in runs),
            "assign_cycles": len(runs[0]["bit_histograms"])}


def adaqp_lines(summary: dict, metric: str) -> list[str]:
    """AdaQP against halo: accuracy, bytes (all and exchange only), bits, overlap saving."""
    from grappa.train.adaqp import AdaQP, AdaQPNoOverlap

    if AdaQP.label not in summary or "halo" not in summary:
        return []
    q, h = summary[AdaQP.label], summary["halo"]

    def exchange(s):
        cats = s["train_bytes_per_rank_per_epoch_by_category"]
        return cats.get("train_feat", 0.0) + cats.get("train_act_grad", 0.0)

    lines = [f"- AdaQP vs halo: test {metric} {100 * (q['test_mean'] - h['test_mean']):+.2f} points; training "
             f"bytes per rank per epoch {q['train_bytes_per_rank_per_epoch'] / h['train_bytes_per_rank_per_epoch']:.3f}"
             f"x of halo's (the halo exchange alone: {exchange(q) / exchange(h):.3f}x); epoch time "
             f"{q['epoch_time_s_median'] / h['epoch_time_s_median']:.2f}x.",
             f"- AdaQP bit-widths, mean bits per message over the {q.get('assign_cycles', 0)} assigned cycles "
             f"(the first cycle is 8 bits): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                           q.get("mean_bits_assigned", {}).items())
             + f"; solver time {q.get('solver_s_total_mean', 0.0):.3f} s per run."]
    if AdaQPNoOverlap.label in summary:
        w, o = summary[AdaQPNoOverlap.label]["epoch_time_s_median"], q["epoch_time_s_median"]
        lines.append(f"- AdaQP overlap: {1000 * (w - o):+.1f} ms per epoch saved against the same run without "
                     f"overlap ({1000 * w:.1f} -> {1000 * o:.1f} ms, {100 * (w - o) / w:+.1f}%).")
    return lines


def analytic(raw: Path, metis_dir: Path, train_args: list[str], ranks: int) -> dict:
    """Predicted bytes (grappa.analysis.comm_model), from the graph and model only."""
    from grappa.analysis.comm_model import boundary_rows, grappa_bytes, halo_bytes
    from grappa.models import build_model
    from grappa.partition.schedule import chunk_sets, owner_of_chunks
    from grappa.train.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--data", str(raw), *train_args]))
    info = json.loads((raw / "graph.json").read_text())
    model = build_model(cfg.model, info["num_features"], cfg.hidden, info["num_classes"], cfg.layers,
                        cfg.dropout, cfg.heads)
    params = sum(p.numel() for p in model.parameters())
    width = cfg.hidden * (cfg.heads if cfg.model == "gat" else 1)
    dims = [info["num_features"]] + [width] * (cfg.layers - 1)
    k = json.loads((metis_dir / "manifest.json").read_text())["num_chunks"]
    owner = owner_of_chunks(chunk_sets("fixed", k, ranks, 0, 0), k)
    node_rank = owner[np.load(metis_dir / "node_chunk.npy")]
    rows = boundary_rows(raw, node_rank, ranks)
    g, h = grappa_bytes(params, ranks), halo_bytes(rows, dims, params, ranks)
    return {"params": params, "layer_input_dims": dims, "boundary_rows_per_rank": rows,
            "grappa_bytes_per_rank_per_epoch": g, "halo_bytes_per_rank_per_epoch": h, "halo_over_grappa": h / g,
            "full_graph": cfg.batch_size == 0}


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1000 or unit == "GB":
            return f"{b:,.0f} {unit}" if unit == "B" else f"{b:,.1f} {unit}"
        b /= 1000


def table(summary: dict, metric: str) -> str:
    halo_t = summary["halo"]["epoch_time_s_median"] if "halo" in summary else None
    lines = [f"| method | ranks | test {metric} (mean ± std) | epoch time (median) | vs halo | time to 98% of "
             "centralized | train bytes / rank / epoch | by category | peak RSS / rank |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, s in summary.items():
        reach = (f"{s['time_to_98pct_s_median']:.1f} s" if s["time_to_98pct_s_median"] is not None
                 else f"not reached ({s['seeds_reaching_98pct']}/{len(s['seeds'])} seeds)")
        ratio = f"{s['epoch_time_s_median'] / halo_t:.2f}x" if halo_t else "-"
        cats = ", ".join(f"{c.removeprefix('train_')} {fmt_bytes(v)}"
                         for c, v in s["train_bytes_per_rank_per_epoch_by_category"].items()) or "-"
        lines.append(f"| {name} | {s['world_size']} | {100 * s['test_mean']:.2f} ± {100 * s['test_std']:.2f} | "
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
    info = json.loads((raw / "graph.json").read_text())
    lines = [f"# Benchmark: {info['name']} ({info['num_nodes']:,} nodes, {info['num_edges']:,} edges), "
             f"P = {a.ranks}", "",
             f"Command: `python bench/compare.py {' '.join(sys.argv[1:])}`  ",
             f"Training arguments: `{' '.join(train_args)}`; seeds {a.seeds}; grappa: `{a.grappa_args}`, "
             f"{a.chunks_per_rank * a.ranks} random chunks; halo: METIS, {a.ranks} chunks.  ",
             f"Machine: {os.cpu_count()} cores; total benchmark time {wall:.0f} s.", "",
             table(summary, metric), ""]
    if "halo" in summary and "grappa" in summary:
        g, h = summary["grappa"], summary["halo"]
        measured = h["train_bytes_per_rank_per_epoch"] / g["train_bytes_per_rank_per_epoch"]
        lines += ["## Analysis", "",
                  f"- Training bytes per rank per epoch, halo / grappa: measured **{measured:,.0f}x** "
                  f"({fmt_bytes(h['train_bytes_per_rank_per_epoch'])} vs "
                  f"{fmt_bytes(g['train_bytes_per_rank_per_epoch'])}); analytical "
                  f"**{pred['halo_over_grappa']:,.0f}x** ({fmt_bytes(pred['halo_bytes_per_rank_per_epoch'])} vs "
                  f"{fmt_bytes(pred['grappa_bytes_per_rank_per_epoch'])}): gradients of {pred['params']:,} "
                  f"parameters against {pred['boundary_rows_per_rank']:,.0f} boundary rows per rank x layer "
                  f"input widths {pred['layer_input_dims']} (forward) and {pred['layer_input_dims'][1:]} "
                  f"(backward).",
                  f"- Epoch time, grappa / halo: {g['epoch_time_s_median'] / h['epoch_time_s_median']:.2f} "
                  f"(same invocation)."]
        if "centralized" in summary:
            c = summary["centralized"]
            lines.append(f"- Epoch time, grappa / centralized: "
                         f"{g['epoch_time_s_median'] / c['epoch_time_s_median']:.2f}.")
            for name, s in summary.items():
                if name != "centralized":
                    lines.append(f"- {name}: test {metric} {100 * (s['test_mean'] - c['test_mean']):+.2f} points "
                                 f"against centralized.")
        lines.append("")
    extra = adaqp_lines(summary, metric)
    if extra:
        lines += ([] if "## Analysis" in lines else ["## Analysis", ""]) + extra + [""]
    return "\n".join(lines)


def _drop(flags: list[str]) -> int:
    return int(flags[flags.index("--drop-parts") + 1]) if "--drop-parts" in flags else 0


def method_runs(a) -> list[tuple[str, str, type, list[str]]]:
    """(run id, table label, method class, its flags) for every run asked for."""
    from grappa.train.averaging import ModelAveraging
    from grappa.train.registry import METHODS

    names = list(METHODS) if a.methods == ["all"] else [ALIASES.get(m, m) for m in a.methods]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"compare.py: unknown method(s) {unknown}; registered: {', '.join(METHODS)}")
    runs = []
    for name in names:
        cls = METHODS[name]
        flags = _own_flags(cls, a.grappa_args.split()) if name.startswith("grappa") else []
        if issubclass(cls, ModelAveraging):
            flags = a.averaging_args.split()
            runs.append((name, cls.label, cls, flags))
            if a.drop_parts:
                runs.append((f"{name}-drop{a.drop_parts}", f"{cls.label}, {a.drop_parts} of P+{a.drop_parts} "
                             "parts dropped", cls, [*flags, "--drop-parts", str(a.drop_parts)]))
            continue
        runs.append((name, cls.label, cls, flags + [_flag(k, v) for k, v in cls.defaults.items()]))
    return runs


def _own_flags(cls, flags: list[str]) -> list[str]:
    """The "--name value" pairs of ``flags`` that ``cls``'s options accept
    (grappa-authors has only --repartition-every of --grappa-args)."""
    own = {f.name.replace("_", "-") for f in dataclasses.fields(cls.Options)}
    kept, keep = [], False
    for tok in flags:
        if tok.startswith("--"):
            keep = tok[2:].split("=")[0] in own
        if keep:
            kept.append(tok)
    return kept


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


def _profiles(text: str) -> list[str]:
    from grappa.emulated_cluster import PROFILES

    names = [t for t in text.split(",") if t]
    bad = [n for n in names if n not in PROFILES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown link profile(s) {bad}: choose from {', '.join(PROFILES)}")
    return names


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a shipped or generated graph and its settings")
    src.add_argument("--raw", help="your raw graph directory (grappa-import / grappa-generate)")
    p.add_argument("--ranks", type=int, default=4, help="P, ranks of every distributed method")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                   help=f"registered methods to run, or 'all' (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--averaging-args", default=AVERAGING_ARGS,
                   help="flags of the model-averaging methods (default %(default)r)")
    p.add_argument("--drop-parts", type=int, default=0,
                   help="also run each averaging method with this many of P + D parts never trained")
    p.add_argument("--chunks-per-rank", type=int, default=4, help="grappa's K = this x P random chunks")
    p.add_argument("--grappa-args", default=GRAPPA_ARGS,
                   help="flags of the full grappa method (default %(default)r); the ablations override one of them")
    p.add_argument("--partition-ranks", type=int, default=2, help="MPI ranks of the partitioning jobs")
    p.add_argument("--work", default="work_data/bench", help="datasets (reused between invocations)")
    p.add_argument("--out", required=True, help="output directory (replaced)")
    p.add_argument("--network", type=_profiles,
                   help="run the distributed methods on each of these links, e.g. shm,10gbit,1gbit,wan: an emulated "
                        "cluster per link (grappa.emulated_cluster; root), tables against the link")
    p.add_argument("--nodes", type=int, default=2, help="--network: nodes the --ranks are spread over (default 2)")
    a = p.parse_args(argv)
    if a.network and (a.ranks % a.nodes or not 2 <= a.nodes <= min(8, a.ranks)):
        p.error(f"--nodes {a.nodes}: give 2 to min(8, --ranks) nodes that divide --ranks {a.ranks}")
    t0 = time.perf_counter()
    train_args = (PRESETS[a.preset]["train"] if a.preset else []) + extra
    work, out = Path(a.work), Path(a.out)
    raw = prepare_raw(a)
    datasets, plans = make_plans(a, raw, work, out, train_args)
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
    pred = analytic(raw, metis_dir, train_args, a.ranks)
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
    r = subprocess.run([*(launch or mpirun(a.ranks)), *cmd] if distributed else cmd, capture_output=True,
                       text=True, env=env)
    if r.returncode:
        raise SystemExit(f"benchmark runs failed: {plan_file}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    print(f"[bench] {len(plan)} {'distributed' if distributed else 'centralized'} runs{tag} in "
          f"{time.perf_counter() - t1:.0f} s", flush=True)


def summaries(plans: dict) -> tuple[dict, dict, dict, float]:
    """Per-method summaries of the finished runs, their results and curves, and centralized's mean."""
    results, curves = {}, {}
    for r in plans[False] + plans[True]:
        results.setdefault(r["method"], []).append(json.loads((Path(r["out"]) / "result.json").read_text()))
        curves.setdefault(r["method"], []).append(curve(Path(r["out"])))
    # 98% of centralized accuracy (of the best method when centralized was not run)
    central = max(statistics.mean(r["test_metric"] for r in rs) for n, rs in results.items()
                  if n == "centralized" or "centralized" not in results)
    summary = {n: summarize(n, results[n], curves[n], 0.98 * central) for n in results}
    return summary, results, curves, central


if __name__ == "__main__":
    main()
