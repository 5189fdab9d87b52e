"""compare.py --network: every distributed method on each link (issue 28).

Centralized runs once (it sends nothing); the distributed methods run on
each profile: ``shm`` with mpirun on this machine, any other in an emulated
cluster of ``--nodes`` network namespaces (grappa.emulated_cluster) made for
it and removed after it, ranks spread evenly over the nodes. Per link it
reports epoch time, time to 98% of centralized, bytes per rank, the measured
seconds per epoch inside communication calls beside what
grappa.analysis.comm_model predicts from the counted bytes and rounds and
the link as measured, and the wire bytes against the counted ones. Writes,
in --out: network.md, network.json, time_to_accuracy_vs_link.png, and each
link's runs under net-PROFILE/. `python bench/network_compare.py OUT` redoes
the analysis of a finished study (the model, tables and plot) from its
network.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import compare
from grappa.analysis.comm_model import comm_time
from grappa.emulated_cluster import PROFILES, Cluster, down, in_node, measure_link, mpi_env, rate_bits, up


def link_order(profile: str) -> float:
    """Slowest link first; shm (shared memory) last."""
    spec = PROFILES[profile]
    return float("inf") if spec is None else rate_bits(spec[0]) / (1 + 1000 * spec[1])


def run_on_link(a, profile: str, plan: list[dict]) -> dict:
    """The distributed plan on one link; returns the link as measured (None for shm)."""
    out = Path(a.out)
    if PROFILES[profile] is None:
        compare.run_plan(a, out, True, plan, tag=f"-{profile}")
        return {}
    rate, delay = PROFILES[profile]
    c = Cluster(f"cmp{os.getpid()}", a.nodes, rate, delay)
    try:
        up(c)
        link = measure_link(c)
        per_node = a.ranks // a.nodes
        hosts = ",".join(f"{h}:{per_node}" for h in c.hosts())
        launch = in_node(c, 0, ["mpirun", "--host", hosts, "-np", str(a.ranks), "--bind-to", "none"])
        compare.run_plan(a, out, True, plan, launch=launch, env=mpi_env(c), tag=f"-{profile}")
    finally:
        left = down(c)
        if left:
            print(f"warning: could not remove {left}", file=sys.stderr)
    return {**link, "rate": rate, "delay_ms": delay}


def wire(plan: list[dict]) -> dict:
    """Per method: wire and counted bytes summed over its seeds (run_seeds.py's wire.json)."""
    totals: dict[str, list[float]] = {}
    for r in plan:
        f = Path(r["out"]) / "wire.json"
        if f.exists():
            w = json.loads(f.read_text())
            t = totals.setdefault(r["method"], [0.0, 0.0])
            t[0], t[1] = t[0] + w["wire_tx_bytes"], t[1] + w["counted_bytes"]
    return {m: {"wire_tx_bytes": w, "counted_bytes": c, "ratio": w / c if c else None} for m, (w, c) in totals.items()}


def predicted(s: dict, link: dict, a) -> float | None:
    """comm_model's seconds per epoch on ``link`` as `up` measured it (bandwidth and round trip)."""
    if not link:
        return None
    return comm_time(s["train_bytes_per_rank_per_epoch"], s["train_rounds_per_epoch"], link["gbit_s"] * 1e9,
                     link["rtt_us"] * 1e-6, a.ranks, a.ranks // a.nodes)


def run(a, raw: Path, plans: dict, metis_dir: Path, train_args: list[str], t0: float) -> None:
    out = Path(a.out)
    compare.run_plan(a, out, False, plans[False])
    profiles = sorted(a.network, key=link_order)
    per_link = {}
    for profile in profiles:
        plan = [{**r, "out": r["out"].replace(str(out / "runs"), str(out / f"net-{profile}" / "runs"))}
                for r in plans[True]]
        link = run_on_link(a, profile, plan)
        summary, results, curves, central = compare.summaries({False: plans[False], True: plan})
        metric = next(iter(results.values()))[0]["metric"]
        per_link[profile] = {"link": link, "summary": summary, "wire": wire(plan), "curves": curves,
                             "target": 0.98 * central}
        print(f"[bench] {profile}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    record = {"args": vars(a), "command": " ".join(sys.argv[1:]), "train_args": train_args, "raw": str(raw),
              "metric": metric, "links": per_link, "wall_s": time.perf_counter() - t0}
    print(analyse(out, record))
    print(f"[bench] wrote {out}/network.json, network.md, time_to_accuracy_vs_link.png ({record['wall_s']:.0f} s)")


def analyse(out: Path, record: dict) -> str:
    """The model's predictions, the tables and the plot of a finished study (``record``: what
    network.json holds); writes network.json, network.md and the PNG; returns the Markdown."""
    a = argparse.Namespace(**record["args"])
    for d in record["links"].values():
        for name, s in d["summary"].items():
            s["comm_time_predicted_s_per_epoch"] = predicted(s, d["link"], a) if name != "centralized" else None
    add_floor(record["links"])
    md = network_report(a, Path(record["raw"]), record, record["metric"])
    (out / "network.md").write_text(md)
    (out / "network.json").write_text(json.dumps(record, indent=2) + "\n")
    plot_links(out, record["links"])
    return md


def add_floor(per_link: dict) -> None:
    """Model + the communication time measured on shared memory (waits for slower ranks and the
    calls' CPU time, which the link model leaves out), where shm was run."""
    if "shm" not in per_link:
        return
    for d in per_link.values():
        for name, s in d["summary"].items():
            model, floor = s.get("comm_time_predicted_s_per_epoch"), per_link["shm"]["summary"][name]
            s["comm_time_predicted_with_floor_s_per_epoch"] = (
                None if model is None else model + floor["comm_time_s_per_epoch"])


def _ms(x) -> str:
    return "-" if x is None else f"{1000 * x:.1f}"


def _s(x) -> str:
    return "not reached" if x is None else f"{x:.2f}"


def link_label(profile: str, link: dict) -> str:
    if not link:
        return f"{profile} (shared memory)"
    return f"{profile} ({link['gbit_s']:.2f} Gbit/s, RTT {link['rtt_us'] / 1000:.2f} ms)"


def network_report(a, raw: Path, record: dict, metric: str) -> str:
    per_link, wall, train_args = record["links"], record["wall_s"], record["train_args"]
    info = json.loads((raw / "graph.json").read_text())
    profiles = list(per_link)
    methods = [m for m in next(iter(per_link.values()))["summary"] if m != "centralized"]
    head = "| method | " + " | ".join(profiles) + " |\n| --- |" + " ---: |" * len(profiles)
    lines = [f"# Across the network: {info['name']} ({info['num_nodes']:,} nodes, {info['num_edges']:,} edges), "
             f"P = {a.ranks} on {a.nodes} nodes of {a.ranks // a.nodes}", "",
             f"Command: `python bench/compare.py {record.get('command', '')}`  ",
             f"Training arguments: `{' '.join(train_args)}`; seeds {a.seeds}. Links as measured: "
             + "; ".join(link_label(p, per_link[p]["link"]) for p in profiles) + f". Total time {wall:.0f} s.", ""]
    tables = [("Epoch time (ms, median)", lambda s: _ms(s["epoch_time_s_median"])),
              ("Time to 98% of centralized (s, training + evaluation)", lambda s: _s(s["time_to_98pct_s_median"])),
              (f"Test {metric} (%)", lambda s: f"{100 * s['test_mean']:.2f}"),
              ("Communication time per epoch (ms): measured / comm_model / comm_model + shm's measured",
               lambda s: f"{_ms(s['comm_time_s_per_epoch'])} / {_ms(s['comm_time_predicted_s_per_epoch'])} / "
                         f"{_ms(s.get('comm_time_predicted_with_floor_s_per_epoch'))}")]
    for title, cell in tables:
        lines += [f"### {title}", "", head]
        lines += [f"| {m} | " + " | ".join(cell(per_link[p]["summary"][m]) for p in profiles) + " |" for m in methods]
        lines.append("")
    lines += ["### Bytes per rank per epoch (counted; the same on every link)", "",
              "| method | bytes | rounds per epoch |", "| --- | ---: | ---: |"]
    s0 = per_link[profiles[0]]["summary"]
    lines += [f"| {m} | {compare.fmt_bytes(s0[m]['train_bytes_per_rank_per_epoch'])} | "
              f"{s0[m]['train_rounds_per_epoch']:.0f} |" for m in methods] + [""]
    lines += wire_table(per_link, methods, a.ranks, a.nodes) + crossovers(per_link, profiles, methods)
    return "\n".join(lines)


def wire_table(per_link: dict, methods: list[str], ranks: int, nodes: int) -> list[str]:
    r = ranks // nodes
    off_node = (ranks - r) / (ranks - 1)
    rows = [(p, m, w) for p, d in per_link.items() for m, w in d["wire"].items() if m in methods]
    if not rows:
        return []
    lines = ["### Wire bytes (all nodes' eth0) against counted bytes (all ranks, every category, whole run)", "",
             f"Off node: the counted bytes' share addressed to ranks on other nodes, (P - r) / (P - 1) = "
             f"{off_node:.3f} with r = {r} ranks a node (the rest moves in shared memory).", "",
             "| link | method | wire | counted | counted off node | wire / off node |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {p} | {m} | {compare.fmt_bytes(w['wire_tx_bytes'])} | {compare.fmt_bytes(w['counted_bytes'])} | "
              f"{compare.fmt_bytes(w['counted_bytes'] * off_node)} | "
              f"{w['wire_tx_bytes'] / (w['counted_bytes'] * off_node):.3f} |" for p, m, w in rows]
    return lines + [""]


def beats(per_link: dict, profile: str, a: str, b: str) -> bool | None:
    """Does ``a`` reach 98% sooner than ``b`` on this link (epoch time when neither reaches it)?"""
    s = per_link[profile]["summary"]
    if a not in s or b not in s:
        return None
    ta, tb = s[a]["time_to_98pct_s_median"], s[b]["time_to_98pct_s_median"]
    if ta is None and tb is None:
        return s[a]["epoch_time_s_median"] < s[b]["epoch_time_s_median"]
    return tb is None or (ta is not None and ta < tb)


def crossovers(per_link: dict, profiles: list[str], methods: list[str]) -> list[str]:
    """From which link (slowest first) one method beats another."""
    def where(a, b):
        won = [p for p in profiles if beats(per_link, p, a, b)]
        return ", ".join(won) if won else "none"

    lines = ["### Crossovers (time to 98% of centralized; epoch time where neither reaches it)", "",
             "| method | beats halo on | Grappa beats it on |", "| --- | --- | --- |"]
    for m in methods:
        lines.append(f"| {m} | {'-' if m == 'halo' else where(m, 'halo')} | "
                     f"{'-' if m == 'grappa' else where('grappa', m)} |")
    return lines + [""]


def plot_links(out: Path, per_link: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = list(per_link)
    methods = [m for m in per_link[profiles[0]]["summary"] if m != "centralized"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    reached = False
    for i, m in enumerate(methods):
        ys = [per_link[p]["summary"][m]["time_to_98pct_s_median"] for p in profiles]
        reached = reached or any(y is not None for y in ys)
        ax.plot(range(len(profiles)), [y if y is not None else float("nan") for y in ys],
                "o-" if i < 10 else "s--", color=f"C{i % 10}",
                label=m if any(y is not None for y in ys) else f"{m} (not reached)")
    ax.set_xticks(range(len(profiles)), [link_label(p, per_link[p]["link"]).replace(" (", "\n(") for p in profiles],
                  fontsize=7)
    if reached:
        ax.set_yscale("log")
    ax.set_xlabel("link (slowest first)")
    ax.set_ylabel("time to 98% of centralized (s)")
    ax.set_title("Time to accuracy against the link (missing: not reached)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "time_to_accuracy_vs_link.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Redo the analysis of a finished `compare.py --network` study "
                                "(the model, the tables, the plot) from its network.json.")
    p.add_argument("out", help="the study's --out directory")
    out = Path(p.parse_args(argv).out)
    print(analyse(out, json.loads((out / "network.json").read_text())))


if __name__ == "__main__":
    main()
