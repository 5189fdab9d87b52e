"""Fair budgets (bench/compare.py --budget): each method spends epochs=N or
seconds=S in its own terms, and the table says which runs had not converged.
Real mpirun ranks, real compare.py invocations."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, mpi_env

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("budget-work")


def compare(cora_dir, work, out, *args):
    r = subprocess.run([sys.executable, str(ROOT / "bench/compare.py"), "--raw", str(cora_dir), "--ranks", "2",
                        "--seeds", "0", "--work", str(work), "--out", str(out), *args], env=mpi_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads((out / "bench.json").read_text())


def test_retexo_epochs_budget_trains_every_stage_that_many_rounds(cora_dir, work, tmp_path):
    """epochs=N: N rounds of each of RETEXO's L stages (a round trains one layer),
    where --epochs N alone left N / L a stage; the averaging methods take N periods."""
    b = compare(cora_dir, work, tmp_path / "ep", "--methods", "retexo", "random-tma", "--budget", "epochs=6", "--",
                "--model", "gcn", "--layers", "2", "--eval-every", "2", "--hidden", "8")
    ret = b["runs"]["RETEXO"][0]
    assert ret["stages_trained"] == 2 and ret["rounds_by_stage"] == [6, 6] and ret["epochs_run"] == 12
    assert ret["config"]["options"]["rounds_per_stage"] == 6
    tma = b["runs"]["RandomTMA"][0]
    assert tma["epochs_run"] == 6 and tma["averagings"] == 6  # one averaging per period of 5 local steps
    assert tma["local_steps_per_rank"] == [30, 30]
    # the first stage's evaluations score a provisional model: marked, so the flag skips them
    evals = [json.loads(x) for x in (tmp_path / "ep/runs/retexo/seed-0/metrics.jsonl").read_text().splitlines()]
    evals = [(r["epoch"], r.get("provisional", False)) for r in evals if "val_metric" in r]
    assert [e for e, p in evals if p] == [1, 3] and len(evals) == 6, evals  # after round 5 stage 2 is scored
    md = (tmp_path / "ep" / "bench.md").read_text()
    assert "budget epochs=6" in md and "--rounds-per-stage 6" in md and "| converged |" in md


def test_seconds_budget_stops_each_method_within_ten_percent(cora_dir, work, tmp_path):
    """seconds=S: every method trains and evaluates S seconds (all ranks stop
    after the same epoch); RETEXO gives each stage S / L."""
    s = 6.0
    b = compare(cora_dir, work, tmp_path / "sec", "--methods", "grappa", "retexo", "--budget", f"seconds={s:g}",
                "--", "--model", "gcn", "--layers", "2", "--eval-every", "2")
    for name, (res,) in b["runs"].items():
        assert abs(res["elapsed_s"] - s) <= 0.1 * s, (name, res["elapsed_s"])  # rank 0's clock; the slowest decides
        assert res["stopped_early"] == "time budget" and res["epochs_run"] > 10, name
    ret = b["runs"]["RETEXO"][0]
    assert ret["stages_trained"] == 2 and min(ret["rounds_by_stage"]) > 5
    for row in b["summary"].values():
        assert row["not_converged_seeds"] in (0, 1)


def test_budget_is_refused_beside_epochs_and_when_malformed(cora_dir, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    from compare import main  # in process: argparse's exit, without a torch import per case

    for args, what in ((["--budget", "epochs=2.5"], "epochs=N"), (["--budget", "hours=1"], "epochs=N"),
                       (["--budget", "seconds=-1"], "epochs=N"),
                       (["--budget", "epochs=5", "--", "--epochs", "3"], "drop them after --")):
        with pytest.raises(SystemExit) as e:
            main(["--raw", str(cora_dir), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and what in err, (args, e.value.code, err[-500:])
        assert not (tmp_path / "o").exists()


def test_a_flag_one_planned_method_refuses_fails_before_any_run(cora_dir, work, tmp_path, capsys):
    """A RETEXO flag after `--` beside centralized: refused in the seconds before the first
    launch (it used to be found by the analysis after every run had finished)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from compare import main

    with pytest.raises(SystemExit) as e:
        main(["--raw", str(cora_dir), "--ranks", "2", "--work", str(work), "--out", str(tmp_path / "o"),
              "--methods", "centralized", "retexo", "--", "--stage-lr", "0.01"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "centralized" in err and "--stage-lr" in err, err[-500:]
    assert not (tmp_path / "o").exists()


def test_methods_all_leaves_out_a_method_that_refuses_the_training_arguments(cora_dir, capsys):
    """`--methods all` with the hetero preset's residual blocks: RETEXO (which trains its own
    stages) is left out and said so; named explicitly, it is refused (exit 2)."""
    import argparse

    sys.path.insert(0, str(ROOT / "bench"))
    from compare import check_plans

    def plans():
        return {False: [{"method": "centralized", "args": ["--data", str(cora_dir), "--method", "centralized",
                                                           "--residual", "--norm", "layer"]}],
                True: [{"method": "RETEXO", "args": ["--data", str(cora_dir), "--method", "retexo", "--residual",
                                                     "--norm", "layer"]}]}

    p, kept = argparse.ArgumentParser(), plans()
    left = check_plans(argparse.Namespace(methods=["all"]), kept, p)
    assert list(left) == ["RETEXO"] and "--residual" in left["RETEXO"]
    assert kept[True] == [] and [r["method"] for r in kept[False]] == ["centralized"]
    assert "left out RETEXO" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        check_plans(argparse.Namespace(methods=["centralized", "retexo"]), plans(), p)
    assert e.value.code == 2 and "RETEXO: --residual" in capsys.readouterr().err


def _curve(vals, provisional=0):
    """metrics.jsonl rows: an evaluation every 5 epochs, the first ``provisional`` marked so."""
    return [{"epoch": 5 * i + 4, "val_metric": v, **({"provisional": True} if i < provisional else {})}
            for i, v in enumerate(vals)]


def test_not_converged_flag_reads_a_rise_not_noise():
    sys.path.insert(0, str(ROOT / "bench"))
    from compare import converged

    rng = np.random.default_rng(0)
    plateau = list(0.80 + 0.004 * rng.standard_normal(40))
    assert converged(_curve(plateau))
    # noise that happens to peak on the last evaluation is still a plateau
    assert converged(_curve(plateau[:-1] + [max(plateau) + 0.005]))
    # a jump of more than 1 point at the end is not
    assert not converged(_curve(plateau[:-1] + [max(plateau) + 0.02]))
    # a steady climb over the last quarter (2 points, no single jump) is not
    climb = plateau[:30] + [0.80 + 0.002 * k for k in range(1, 11)]
    assert not converged(_curve(climb))
    # a falling curve (overfitting) has converged
    assert converged(_curve([0.6 + 0.02 * k for k in range(10)] + [0.8 - 0.002 * k for k in range(30)]))
    # RETEXO: a provisional stage's plateau, then the final stage still climbing from scratch
    stages = plateau[:20] + [0.3 + 0.02 * k for k in range(20)]
    assert not converged(_curve(stages, provisional=20))
    assert converged(_curve(plateau[:20] + [0.3 + 0.02 * k for k in range(10)] + [0.5] * 10,
                            provisional=20))


def test_not_converged_jump_is_scaled_to_the_runs_own_noise():
    sys.path.insert(0, str(ROOT / "bench"))
    from compare import converged, eval_noise

    rng = np.random.default_rng(1)
    noisy = list(0.74 + 0.015 * rng.standard_normal(40))
    assert 0.01 < eval_noise(np.array(noisy)) < 0.02  # the differences' spread over sqrt(2): about the 0.015
    # LLCG on Cora, seed 2 at epochs=500 (docs/BENCHMARKS.md): its last 14 evaluations swing by 2 to 4
    # points and the final 77 is 2 above the rest; noise, not a climb
    llcg = [0.75, 0.73, 0.74, 0.71, 0.74, 0.73, 0.72, 0.75, 0.73, 0.73, 0.75, 0.75, 0.72, 0.77]
    curve = _curve([0.30 + 0.03 * k for k in range(14)] + llcg)
    assert converged(curve)
    assert not converged(curve, sigmas=0)  # the 1-point jump rule alone flags it
    # on the same noise a jump of many times it is still a jump
    assert not converged(_curve(noisy[:39] + [max(noisy) + 0.08]))
    # and on a quiet curve the 1-point floor rules, as before
    quiet = list(0.80 + 0.001 * rng.standard_normal(40))
    assert not converged(_curve(quiet[:39] + [max(quiet) + 0.012]))
