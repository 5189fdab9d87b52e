"""Grappa training under real mpirun: accuracy vs centralized, gradient-only
bytes, backends agree, checkpoint/resume (also with another world size),
and SIGUSR1 (a killed rank: tests/test_reliability.py's fault campaign)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, mpi_env, run_mpi
from grappa.checkpoint import load_checkpoint
from grappa.launch_env import local_mpirun

pytestmark = pytest.mark.mpi
TRAIN = ["-m", "grappa.train"]


def grappa(np_, data, out, *args, timeout=600):
    r = run_mpi(np_, *TRAIN, "--method", "grappa", "--data", data, "--out", out, "--no-progress", *map(str, args),
                timeout=timeout)
    return r


def result(out):
    return json.loads((out / "result.json").read_text())


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_gradient_only_bytes_equal_parameter_count(cora_k16, tmp_path):
    out = tmp_path / "run"
    r = grappa(4, cora_k16, out, "--epochs", 10, "--repartition-every", 5)
    assert r.returncode == 0, r.stderr
    res = result(out)
    params = 1433 * 16 + 16 + 16 * 7 + 7  # GCN 2 layers, hidden 16
    per_step = 2 * 3 / 4 * (params + 2) * 4  # ring allreduce of [w*grad, w, stop] float32
    assert set(res["train_bytes_by_category"]) == {"train_grad"}  # no features, no activations
    assert res["train_bytes_per_rank_per_epoch"] == pytest.approx(per_step, rel=1e-6)
    assert res["eval_bytes_total"] > 0 and res["world_size"] == 4
    for key in ("weighting", "schedule", "repartition_every", "num_chunks", "switch_time_s_total",
                "train_time_s_total"):
        assert key in res
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(set(row["bytes"]) == {"train_grad"} for row in rows)


def test_default_full_graph_training_is_centralized_training(cora_dir, cora_k16, tmp_path):
    """The default halo (--layers hops) makes every training node's output
    exact, so without dropout 4 ranks on changing chunk sets take the
    centralized steps: the same parameters after 12 epochs and 3
    repartitions. Isolated chunk sets (--halo-hops 0) do not."""
    common = ["--model", "gcn", "--layers", 3, "--dropout", 0, "--epochs", 12, "--eval-every", 6, "--no-progress"]
    r = run_mpi(1, *TRAIN, "--method", "centralized", "--data", cora_dir, "--out", tmp_path / "c", *common)
    assert r.returncode == 0, r.stderr
    ref = load_checkpoint(sorted((tmp_path / "c" / "checkpoints").glob("ckpt-*.pt"))[-1])["model"]
    errs = []
    for hops in ("-1", "0"):
        out = tmp_path / f"g{hops}"
        r = grappa(4, cora_k16, out, *common, "--repartition-every", 3, "--schedule", "shuffle", "--halo-hops", hops)
        assert r.returncode == 0, r.stderr
        got = load_checkpoint(sorted((out / "checkpoints").glob("ckpt-*.pt"))[-1])["model"]
        errs.append(max(float((got[k] - ref[k]).abs().max()) for k in ref))
    assert errs[0] < 1e-4 < errs[1], errs


def test_mini_batch_takes_the_global_batch_step_count(cora_k16, tmp_path):
    """--batch-size is the global batch: 140 training nodes / 32 = 5 steps an
    epoch on 4 ranks as in one process; --per-rank-batch takes the largest
    rank's ceil(n_p / 32)."""
    from grappa.graph.raw import SPLIT_TRAIN
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.schedule import chunk_sets

    params = 1433 * 16 + 16 + 16 * 7 + 7
    per_step = 2 * 3 / 4 * (params + 2) * 4
    sets = chunk_sets("sweep", 16, 4, 0, 0)  # the default schedule's first super-epoch, seed 0
    largest = max(int((load_chunk_set(cora_k16, c).split == SPLIT_TRAIN).sum()) for c in sets)
    for flags, steps in (([], 5), (["--per-rank-batch"], -(-largest // 32))):
        out = tmp_path / f"run{len(flags)}"
        r = grappa(4, cora_k16, out, "--epochs", 1, "--batch-size", 32, "--fanouts", 5, 5, *flags)
        assert r.returncode == 0, r.stderr
        assert result(out)["train_bytes_per_rank_per_epoch"] == pytest.approx(steps * per_step, rel=1e-6), flags
    assert -(-largest // 32) < 5


def test_backends_give_the_same_losses(cora_k16, tmp_path):
    runs = {}
    for backend in ("horovod", "gloo"):
        out = tmp_path / backend
        r = grappa(2, cora_k16, out, "--epochs", 8, "--repartition-every", 4, "--backend", backend)
        assert r.returncode == 0, r.stderr
        runs[backend] = losses(out)
    np.testing.assert_allclose(runs["horovod"], runs["gloo"], atol=1e-5)


def _params(out):
    return load_checkpoint(sorted((out / "checkpoints").glob("ckpt-*.pt"))[-1])["model"]


def test_resume_single_rank_is_bitwise(cora_k16, tmp_path):
    ref = tmp_path / "ref"
    assert grappa(1, cora_k16, ref, "--epochs", 12, "--repartition-every", 4).returncode == 0
    part = tmp_path / "part"
    assert grappa(1, cora_k16, part, "--epochs", 6, "--repartition-every", 4).returncode == 0
    # continue the same run to 12 epochs from its checkpoint at epoch 6
    r = grappa(1, cora_k16, part, "--epochs", 12, "--repartition-every", 4, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _params(ref), _params(part)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert result(ref)["final_model_sha256"] == result(part)["final_model_sha256"]


def test_resume_p4_checkpoint_with_p2(cora_k16, tmp_path):
    out = tmp_path / "run"
    assert grappa(4, cora_k16, out, "--epochs", 6, "--repartition-every", 3).returncode == 0
    r = grappa(2, cora_k16, out, "--epochs", 10, "--repartition-every", 3, "--resume")
    assert r.returncode == 0, r.stderr
    res = result(out)
    assert res["world_size"] == 2
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(10))  # 0-5 on 4 ranks, then 6-9 on 2 ranks: nothing repeated or lost
    rows = losses(out)
    assert rows[-1] < rows[0]


def _launch(np_, *args):
    cmd = [*local_mpirun(np_), sys.executable, *TRAIN, *map(str, args)]
    return subprocess.Popen(cmd, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_epochs(out, n, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        f = out / "metrics.jsonl"
        if f.exists() and len(f.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise TimeoutError


def test_sigusr1_checkpoints_and_exits_for_requeue(cora_k16, tmp_path):
    out = tmp_path / "run"
    proc = _launch(2, "--method", "grappa", "--data", cora_k16, "--out", out, "--no-progress", "--epochs", 400,
                   "--repartition-every", 1000)
    _wait_for_epochs(out, 3, proc)
    os.killpg(proc.pid, signal.SIGUSR1)  # what Slurm's --signal delivers to the ranks
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 99, err
    assert time.time() - t0 < 30
    ck = sorted((out / "checkpoints").glob("ckpt-*.pt"))
    assert ck, "no checkpoint written"
    done = len(losses(out))
    state = load_checkpoint(ck[-1])
    assert state["epoch"] in (done, done - 1) and state["epoch"] < 400  # within one step of the signal
    r = grappa(2, cora_k16, out, "--epochs", state["epoch"] + 3, "--repartition-every", 1000, "--resume")
    assert r.returncode == 0, r.stderr


# Grappa with its default flags (exact halo within the budget, global batch):
# Cora within 2 points (the Horovod issue's acceptance), and a sparse,
# low-homophily SBM with weak features, where isolated chunk sets lose 12
# points, within 1 (issue 13, item 2; docs/BENCHMARKS.md).
ACCURACY_CASES = {("gcn", "full"), ("sage", "full"), ("gcn", "mini"), ("sage", "mini")}
SPARSE_SBM = ["sbm", "--num-nodes", "6000", "--avg-degree", "8", "--homophily", "0.45", "--num-features", "32",
              "--feature-signal", "0.1", "--num-classes", "8", "--seed", "0"]
SPARSE_CASES = {("sage", "full"), ("sage", "mini")}
# The same graph where the exact halo does not fit (issue 29): a budget of a quarter of what a rank's exact
# 2-hop halo holds, so the default (--halo-mode auto) reads each group of steps' halo. Fan-outs 5 5 (centralized
# too): at 10 10 a single step's halo is over this budget (it is then read anyway, and counted).
# SAGE only, for the suite's time: GCN's figure is in docs/BENCHMARKS.md (42.50 vs 43.26 here, and the study).
PARTIAL_CASES = {("sage", "mini")}
HALO_FRACTION = 0.25


def _exact_halo_bytes(shards) -> float:
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.schedule import chunk_sets

    return float(sum(b for _, _, b in load_chunk_set(shards, chunk_sets("sweep", 16, 4, 0, 0)[0], 2).halo_read))


def _plan_cases(tmp, graph, raw, shards, cases, common, mini, grappa_flags=()):
    plans: dict[int, list] = {1: [], 4: []}
    for model, mode in sorted(cases):
        args = [*common, "--model", model, *(mini if mode == "mini" else [])]
        for method, data, ranks, flags in (("centralized", raw, 1, []), ("grappa", shards, 4, list(grappa_flags))):
            plans[ranks] += [{"out": str(tmp / graph / f"{model}-{mode}" / method / f"seed-{s}"),
                              "args": ["--method", method, "--data", str(data), *args, *flags, "--seed", str(s)]}
                             for s in range(3)]
    return plans


@pytest.fixture(scope="module")
def accuracy_runs(cora_dir, cora_k16, tmp_path_factory):
    """Every case's 3 seeds of centralized and of Grappa: two launches in all
    (bench/run_seeds.py plans), since process start-up, not training, is
    what costs on these graphs."""
    tmp = tmp_path_factory.mktemp("accuracy")
    sbm, sbm_k16 = tmp / "sbm-sparse", tmp / "sbm-sparse-k16"
    r = subprocess.run([sys.executable, "-m", "grappa.graph.generators_cli", *SPARSE_SBM, "--out", str(sbm),
                        "--quiet"], env=mpi_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", sbm, "--out", sbm_k16, "--num-chunks", 16,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    # 100 full-graph epochs, 50 mini-batch ones (5 steps an epoch: 250 steps), half the earlier budget, for the
    # suite's time: every gap there is within 0.3 points (docs/BENCHMARKS.md, "Accuracy on Cora")
    cora = _plan_cases(tmp, "cora", cora_dir, cora_k16, ACCURACY_CASES,
                       ["--epochs", "100", "--eval-every", "5", "--no-progress"],
                       ["--batch-size", "32", "--fanouts", "10", "10", "--epochs", "50"])
    sparse_args = ["--hidden", "64", "--epochs", "100", "--eval-every", "5", "--no-progress"]
    sparse = _plan_cases(tmp, "sbm-sparse", sbm, sbm_k16, SPARSE_CASES, sparse_args,
                         ["--batch-size", "256", "--fanouts", "10", "10"])
    budget = HALO_FRACTION * _exact_halo_bytes(sbm_k16)
    (tmp / "halo-budget.json").write_text(json.dumps(budget))
    partial = _plan_cases(tmp, "sbm-partial", sbm, sbm_k16, PARTIAL_CASES, sparse_args,
                          ["--batch-size", "256", "--fanouts", "5", "5"],
                          ["--halo-budget-mb", str(budget / 2**20)])  # the default halo mode
    # Both launches at once: the one-rank centralized runs leave part of the cores idle.
    procs = []
    for ranks in (1, 4):
        (tmp / f"plan-{ranks}.json").write_text(json.dumps(cora[ranks] + sparse[ranks] + partial[ranks]))
        cmd = [*local_mpirun(ranks), sys.executable, str(ROOT / "bench/run_seeds.py"),
               "--plan", str(tmp / f"plan-{ranks}.json")]
        procs.append(subprocess.Popen(cmd, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, err[-3000:]
    return tmp


def _means(runs, graph, model, mode):
    means = {m: float(np.mean([result(runs / graph / f"{model}-{mode}" / m / f"seed-{s}")["test_metric"]
                               for s in range(3)])) for m in ("centralized", "grappa")}
    print(f"{graph} {model}/{mode}: {means}")
    return means


@pytest.mark.slow
@pytest.mark.parametrize("model,mode", sorted(ACCURACY_CASES))
def test_cora_k16_p4_within_two_points_of_centralized(accuracy_runs, model, mode):
    means = _means(accuracy_runs, "cora", model, mode)
    assert means["grappa"] >= means["centralized"] - 0.02  # the acceptance: within 2 points


@pytest.mark.slow
@pytest.mark.parametrize("model,mode", sorted(SPARSE_CASES))
def test_sparse_low_homophily_sbm_default_within_one_point(accuracy_runs, model, mode):
    means = _means(accuracy_runs, "sbm-sparse", model, mode)
    assert means["grappa"] >= means["centralized"] - 0.01


@pytest.mark.slow
@pytest.mark.parametrize("model,mode", sorted(PARTIAL_CASES))
def test_halo_over_budget_default_reads_it_in_groups_within_one_point(accuracy_runs, model, mode):
    """Issue 29: the exact halo is 4x the budget; default Grappa (groups) ends within 1 point of centralized."""
    means = _means(accuracy_runs, "sbm-partial", model, mode)
    assert means["grappa"] >= means["centralized"] - 0.01
    budget = json.loads((accuracy_runs / "halo-budget.json").read_text())
    for s in range(3):
        res = result(accuracy_runs / "sbm-partial" / f"{model}-{mode}" / "grappa" / f"seed-{s}")
        assert all(load["ranks"] == {"groups": 4} for load in res["halo_read"]), res["halo_read"]
        assert res["halo_groups_over_budget"] == 0
        assert 0 < res["halo_group_held_bytes_max"] <= budget  # the mean over ranks of each rank's largest group
