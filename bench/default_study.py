#!/usr/bin/env python
"""Grappa's default flags against centralized training, cell by cell (issues 13 and 29).

    python bench/default_study.py --preset sbm-sparse --out DIR [--models gcn sage] [--layers 2 3]
                                  [--modes full mini] [--seeds 0 1 2] [--grappa-args "..."]
                                  [--variants NAME="FLAGS" ...] [--halo-fraction F]

Every cell (mode x model x layers) runs centralized and Grappa with the given
seeds on one of bench/compare.py's presets: all centralized runs in one
launch, then all Grappa runs in one P-rank launch (bench/run_seeds.py), so
the epoch times are not taken while the other method runs. ``--variants``
runs Grappa once per flag set (default: one, ``grappa`` with
``--grappa-args``); ``--halo-fraction F`` gives every variant
``--halo-budget-mb`` at F times the bytes a rank's exact halo holds in that
cell (its first chunk set), so the halo does not fit (a variant's own
``--halo-budget-mb`` comes later and wins). Writes DIR/study.json and
DIR/study.md: test metric (mean +- std), the gap, and Grappa's cost: epoch
time, shard bytes read per rank over the run, peak RSS per rank, the halo
hops read and what of the halo was read (issue 29).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (bench/ is scripts, not a package)

# Mini-batch seeds per rank (and per centralized step): the size that the
# preset's earlier studies used (docs/BENCHMARKS.md).
BATCH = {"cora": 32, "sbm-sparse": 512, "sbm": 1024}


def cell_args(preset: str, model: str, layers: int, mode: str, epochs: int | None = None) -> list[str]:
    args = [*compare.PRESETS[preset]["train"], "--model", model, "--layers", str(layers), "--no-progress"]
    args += ["--epochs", str(epochs)] if epochs else []
    if mode == "mini":
        args += ["--batch-size", str(BATCH[preset]), "--fanouts", *["10"] * layers]
    return args


def exact_halo_mb(shards: Path, layers: int, ranks: int) -> float:
    """What a rank's exact L-hop halo holds, in MB (its first chunk set)."""
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.format import load_manifest
    from grappa.shards.schedule import chunk_sets

    sets = chunk_sets("sweep", load_manifest(shards)["num_chunks"], ranks, 0, 0)
    return sum(b for _, _, b in load_chunk_set(shards, sets[0], layers).halo_read) / 2**20


def plans(a, raw: Path, shards: Path, out: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {"centralized": [], "grappa": []}
    for mode, model, layers in itertools.product(a.modes, a.models, a.layers):
        cell = out / f"{mode}-{model}-{layers}"
        budget = ["--halo-budget-mb", f"{a.halo_fraction * exact_halo_mb(shards, layers, a.ranks):.6f}"] \
            if a.halo_fraction else []
        setups = [("centralized", "centralized", raw, [])] + \
            [(name, "grappa", shards, [*budget, *flags.split()]) for name, flags in a.variants.items()]
        for name, method, data, flags in setups:
            runs[method] += [{"out": str(cell / name / f"seed-{s}"), "args": [
                "--method", method, "--data", str(data), *cell_args(a.preset, model, layers, mode, a.epochs), *flags,
                "--seed", str(s)]} for s in a.seeds]
    return runs


def halo_read(results: list[dict]) -> tuple[str, float]:
    """What the runs' ranks read of their halos: the kinds (ranks x loads) and the mean bytes held per load."""
    loads = [load for r in results for load in r.get("halo_read", [])]
    kinds: dict[str, int] = {}
    for load in loads:
        for kind, ranks in load["ranks"].items():
            kinds[kind] = kinds.get(kind, 0) + ranks
    held = statistics.mean(sum(h["bytes"] for h in load["per_hop_mean"]) for load in loads) if loads else 0.0
    groups = max((r.get("halo_group_held_bytes_max", 0.0) for r in results), default=0.0)  # its largest group
    return ", ".join(f"{k} {v}" for k, v in kinds.items()), max(held, groups)


def summarize(a, out: Path) -> list[dict]:
    rows = []
    for mode, model, layers in itertools.product(a.modes, a.models, a.layers):
        cell = out / f"{mode}-{model}-{layers}"
        res = {m: [json.loads((cell / m / f"seed-{s}" / "result.json").read_text()) for s in a.seeds]
               for m in ("centralized", *a.variants)}
        acc = {m: [100 * r["test_metric"] for r in rs] for m, rs in res.items()}
        for name in a.variants:
            g = res[name]
            kinds, held = halo_read(g)
            rows.append({"mode": mode, "model": model, "layers": layers, "variant": name, "metric": g[0]["metric"],
                         **{f"{k}_mean": statistics.mean(acc[m]) for k, m in (("centralized", "centralized"),
                                                                               ("grappa", name))},
                         **{f"{k}_std": statistics.pstdev(acc[m]) for k, m in (("centralized", "centralized"),
                                                                                ("grappa", name))},
                         "gap": statistics.mean(acc[name]) - statistics.mean(acc["centralized"]),
                         "centralized_epoch_s": statistics.median(r["epoch_time_s_median"]
                                                                  for r in res["centralized"]),
                         "grappa_epoch_s": statistics.median(r["epoch_time_s_median"] for r in g),
                         "shard_bytes_read_per_rank": statistics.mean(r["shard_bytes_read_per_rank"] for r in g),
                         "peak_rss_mb": max(r["peak_rss_mb_max"] for r in g),
                         "halo_hops_read": statistics.mean(h for r in g for h in r["halo_hops_read"]),
                         "halo_read": kinds, "halo_held_bytes": held})
    return rows


def markdown(a, rows: list[dict], wall: float) -> str:
    flags = "; ".join(f"{k}: `{v}`" for k, v in a.variants.items())
    lines = [f"`python bench/default_study.py {' '.join(sys.argv[1:])}` ({wall:.0f} s), seeds {a.seeds}, "
             f"P = {a.ranks}, grappa variants: {flags}", "",
             "| mode | model | layers | variant | centralized | grappa | gap | epoch (centralized / grappa) "
             "| shard bytes read / rank | peak RSS / rank | halo hops read | halo read (ranks x loads) "
             "| halo held / rank |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['model']} | {r['layers']} | {r['variant']} | {r['centralized_mean']:.2f} ± "
                     f"{r['centralized_std']:.2f} | {r['grappa_mean']:.2f} ± {r['grappa_std']:.2f} | "
                     f"{r['gap']:+.2f} | {1e3 * r['centralized_epoch_s']:.0f} / {1e3 * r['grappa_epoch_s']:.0f} ms | "
                     f"{compare.fmt_bytes(r['shard_bytes_read_per_rank'])} | {r['peak_rss_mb']:.0f} MB | "
                     f"{r['halo_hops_read']:.2f} | {r['halo_read'] or '-'} | "
                     f"{compare.fmt_bytes(r['halo_held_bytes'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(compare.PRESETS), required=True)
    p.add_argument("--models", nargs="+", default=["gcn", "sage"])
    p.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    p.add_argument("--modes", nargs="+", choices=["full", "mini"], default=["full", "mini"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--epochs", type=int, help="per run (default: grappa-train's)")
    p.add_argument("--chunks-per-rank", type=int, default=4, help="grappa's K = this x P random chunks")
    p.add_argument("--grappa-args", default="", help="grappa's flags (default: none, its defaults)")
    p.add_argument("--variants", nargs="+", metavar='NAME="FLAGS"', default=[],
                   help="Grappa once per flag set (default: grappa=--grappa-args)")
    p.add_argument("--halo-fraction", type=float, default=0.0,
                   help="every variant's --halo-budget-mb at this fraction of a rank's exact halo (0: off)")
    p.add_argument("--work", default="work_data/bench", help="datasets (reused between invocations)")
    p.add_argument("--out", required=True, help="output directory")
    a = p.parse_args(argv)
    a.raw = None
    a.variants = dict(v.split("=", 1) for v in a.variants) if a.variants else {"grappa": a.grappa_args}
    t0 = time.perf_counter()
    raw = compare.prepare_raw(a)
    shards = compare.prepare_partition(raw, Path(a.work), "random", a.chunks_per_rank * a.ranks, 2)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for method, plan in plans(a, raw, shards, out).items():
        (out / f"plan-{method}.json").write_text(json.dumps(plan, indent=1))
        cmd = [sys.executable, str(compare.ROOT / "bench/run_seeds.py"), "--plan", str(out / f"plan-{method}.json")]
        compare.sh([*compare.mpirun(a.ranks), *cmd] if method == "grappa" else cmd)
        print(f"[study] {len(plan)} {method} runs done at {time.perf_counter() - t0:.0f} s", flush=True)
    rows = summarize(a, out)
    (out / "study.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    md = markdown(a, rows, time.perf_counter() - t0)
    (out / "study.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
