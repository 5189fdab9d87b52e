#!/usr/bin/env python
"""Kill a random rank at N random moments, resume each time, compare with an uninterrupted run.

    python bench/fault_campaign.py --kills 20 --out bench_results/faults
    python bench/fault_campaign.py --kills 5 --methods all --ranks 4 --out DIR

For each method: one uninterrupted run, then one run that is killed N times.
Kill i picks a phase (the method's phases in turn: a step, a training
collective, a checkpoint write, a repartition, an evaluation; see
``grappa.faults``), a random rank and a random arrival at that phase; the
rank dies by SIGKILL, the job must end with a non-zero status within
``--detect-limit`` seconds, and the next launch resumes (``--resume``) with
the next fault armed. A last launch finishes the run. The final parameters
must equal the uninterrupted run's (full-graph, dropout 0, within 1e-5) and
``metrics.jsonl`` must hold every epoch exactly once.

Prints a table (phase, time to detect, time to resume, equal?) and writes
``campaign.json``. Every process it signals is its own mpirun's child: the
victim kills itself, chosen through ``GRAPPA_FAULT``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from grappa.atomic import atomic_write_bytes  # noqa: E402
from grappa.checkpoint import list_checkpoints, load_checkpoint, load_latest  # noqa: E402
from grappa.faults import PHASES  # noqa: E402
from grappa.launch_env import local_mpirun  # noqa: E402
from grappa.train.registry import FAULT_DEFAULT, METHODS, partition_spec  # noqa: E402

# Highest arrival drawn per phase: every fault lands within a few epochs of
# the resumed run's start (checkpoints every 4 epochs, evaluation every 2).
MAX_COUNT = {"step": 8, "allreduce": 8, "checkpoint": 2, "repartition": 2, "eval": 6}
MULTI_RANK = [m for m in METHODS if METHODS[m].world_size != "one"]


class CampaignError(Exception):
    """A launch that should have succeeded failed, or a fault was not reached."""


def prepare_data(method: str, raw: Path, ranks: int, work: Path) -> Path:
    """The dataset the method trains on: the raw graph or a partition of it (made once)."""
    spec = partition_spec(method, ranks)
    if spec is None:
        return raw
    out = work / f"data-{spec[0]}-{spec[1]}"
    if not (out / "manifest.json").exists():
        cmd = ["mpirun", "-np", "2", "--oversubscribe", sys.executable, str(ROOT / "data_prep/partition.py"),
               "--data", str(raw), "--out", str(out), "--num-chunks", str(spec[1]), "--method", spec[0],
               "--no-progress", "--overwrite"]
        subprocess.run(cmd, check=True, env=_env(), capture_output=True)
    return out


def _env(fault: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lib'}:{os.environ.get('PYTHONPATH', '')}"}
    env.pop("GRAPPA_FAULT", None)
    if fault:
        env["GRAPPA_FAULT"] = fault
    return env


def train_cmd(a, method: str, data: Path, out: Path) -> list[str]:
    """As the job scripts do: --resume when a checkpoint exists, else start afresh."""
    cmd = [*local_mpirun(a.ranks), sys.executable, "-m", "grappa.train",
           "--method", method, "--data", str(data), "--out", str(out), "--epochs", str(a.epochs),
           "--dropout", "0", "--eval-every", "2", "--checkpoint-every", "4", "--seed", str(a.seed), "--no-progress"]
    # Method.fault_flags: what makes it replay exactly after a resume, with its boundaries in a short run
    resume = ["--resume"] if list_checkpoints(out / "checkpoints") else ["--overwrite"]
    return cmd + list(METHODS[method].fault_flags) + resume


def _rows(out: Path) -> list[str]:
    f = out / "metrics.jsonl"
    return [r for r in f.read_text().split("\n")[:-1] if r] if f.exists() else []  # whole lines only


def launch(cmd: list[str], out: Path, fault: str | None, timeout: float) -> dict:
    """Run one launch; time its first new epoch (the resume) and its end."""
    ck = load_latest(out / "checkpoints")
    start_epoch = ck["epoch"] if ck else 0
    old = {json.loads(r)["epoch"]: r for r in _rows(out)}.get(start_epoch)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=_env(fault), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def resumed() -> bool:  # every row: a short epoch can append several between two polls
        return any(json.loads(r)["epoch"] == start_epoch and r != old for r in _rows(out))

    first = None
    while proc.poll() is None and time.time() - t0 < timeout:
        if first is None and resumed():
            first = time.time() - t0
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()  # our own mpirun: past the limit it counts as a hang
    if first is None and resumed():  # it trained and ended within the last poll
        first = time.time() - t0
    log = proc.communicate()[0]
    return {"rc": proc.returncode, "end": time.time(), "resume_s": first, "start_epoch": start_epoch,
            "log_tail": log[-2000:]}


def final_params(out: Path) -> dict:
    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def plan_kills(n: int, phases: list[str], ranks: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """(phase, rank, arrival) per kill: the phases in turn, the rest at random."""
    turn = [phases[i % len(phases)] for i in range(n)]
    return [(ph, int(rng.integers(ranks)), int(rng.integers(1, MAX_COUNT[ph] + 1))) for ph in turn]


def campaign(a, method: str, data: Path, work: Path) -> dict:
    """The uninterrupted run, then the killed-and-resumed one; the kill table and the verdict."""
    ref, run = work / method / "uninterrupted", work / method / "killed"
    r = launch(train_cmd(a, method, data, ref), ref, None, a.run_timeout)
    if r["rc"] != 0:
        raise CampaignError(f"{method}: the uninterrupted run failed:\n{r['log_tail']}")
    phases = [p for p in a.phases if p != "repartition" or METHODS[method].has_repartition_phase]
    kills, rows = plan_kills(a.kills, phases, a.ranks, np.random.default_rng([a.seed, len(method)])), []
    record = work / method / "faults.jsonl"
    for i, (phase, rank, count) in enumerate([*kills, ("", 0, 0)]):  # the last launch: no fault
        fault = f"{rank}:{phase}:{count}:{record}" if phase else None
        r = launch(train_cmd(a, method, data, run), run, fault, a.run_timeout)
        if rows:
            rows[-1]["resume_s"] = r["resume_s"]  # this launch resumed the previous kill
        if fault is None:
            break
        deaths = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
        died = deaths[-1] if len(deaths) > len(rows) else None
        rows.append({"kill": i + 1, "phase": phase, "rank": rank, "arrival": count, "rc": r["rc"],
                     "from_epoch": r["start_epoch"], "reached": died is not None,
                     "detect_s": r["end"] - died["time"] if died else None, "resume_s": None})
        if died is None:
            raise CampaignError(f"{method}: kill {i + 1} ({phase} #{count} on rank {rank}) was not reached "
                                f"(exit {r['rc']}; if the run had ended, give more --epochs):\n{r['log_tail']}")
    if r["rc"] != 0:
        raise CampaignError(f"{method}: the final resume failed:\n{r['log_tail']}")
    epochs = [json.loads(line)["epoch"] for line in _rows(run)]
    diff = max_diff(final_params(ref), final_params(run))
    return {"method": method, "kills": rows, "max_abs_diff": diff, "equal": diff <= 1e-5,
            "metrics_continuous": epochs == list(range(a.epochs)),
            "all_detected": all(k["rc"] != 0 and k["detect_s"] < a.detect_limit for k in rows)}


def print_table(results: list[dict]) -> None:
    print(f"{'method':<12} {'kill':>4} {'phase':<12} {'rank':>4} {'from ep':>7} {'detect s':>9} {'resume s':>9}")
    for res in results:
        for k in res["kills"]:
            resume = "-" if k["resume_s"] is None else f"{k['resume_s']:.1f}"
            print(f"{res['method']:<12} {k['kill']:>4} {k['phase']:<12} {k['rank']:>4} {k['from_epoch']:>7} "
                  f"{k['detect_s']:>9.1f} {resume:>9}")
        print(f"{res['method']:<12} final parameters equal: {res['equal']} (max |diff| {res['max_abs_diff']:.2e}), "
              f"metrics continuous: {res['metrics_continuous']}, every kill ended the job within the limit: "
              f"{res['all_detected']}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, required=True, help="kills per method")
    p.add_argument("--methods", nargs="+", default=list(FAULT_DEFAULT), choices=MULTI_RANK + ["all"],
                   help=f"registered multi-rank methods, or all (default: {' '.join(FAULT_DEFAULT)})")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--data", type=Path, help="raw graph directory (default: Cora, imported from datasets/cora)")
    p.add_argument("--epochs", type=int, help="epochs of each run (default 8 per kill + 16, so that every "
                   "kill lands before the run ends: a kill rolls the run back to its last checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="training seed and the kills' random draw")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    p.add_argument("--detect-limit", type=float, default=60.0, help="seconds a kill may take to end the job")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds one launch may take")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    a.epochs = a.epochs or 8 * a.kills + 16
    if a.kills < 1 or a.ranks < 2 or a.epochs < 8:
        p.error("needs --kills >= 1, --ranks >= 2 and --epochs >= 8")
    a.out.mkdir(parents=True, exist_ok=True)
    raw = a.data or _import_cora(a.out / "cora")
    results = []
    for m in (MULTI_RANK if a.methods == ["all"] else a.methods):
        try:
            results.append(campaign(a, m, prepare_data(m, raw, a.ranks, a.out), a.out))
        except CampaignError as e:
            print(e, file=sys.stderr)
            results.append({"method": m, "error": str(e)[:300], "kills": [], "equal": False,
                            "metrics_continuous": False, "all_detected": False, "max_abs_diff": float("nan")})
    print_table(results)
    atomic_write_bytes(a.out / "campaign.json", (json.dumps(results, indent=2) + "\n").encode())
    ok = all(r["equal"] and r["metrics_continuous"] and r["all_detected"] for r in results)
    raise SystemExit(0 if ok else 1)


def _import_cora(out: Path) -> Path:
    from grappa.graph.importers import import_planetoid

    if not (out / "graph.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        import_planetoid(ROOT / "datasets" / "cora", out, name="cora")
    return out


if __name__ == "__main__":
    main()
