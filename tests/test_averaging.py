"""Model averaging (PSGD-PA, RandomTMA, SuperTMA) under real mpirun: each
averaging with plain SGD equals a step of synchronous gradient averaging;
bytes equal the parameter vector per averaging; the time-based mode lets a
slow rank take fewer steps; dropped parts are never trained."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.mpi
SEED, BS, FANOUTS, LR = 3, 16, [4, 3], 0.2


@pytest.fixture(scope="module")
def cora_r4(cora_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("avg") / "cora-random-k4"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", 4,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    return out


def train(np_, method, data, out, *args):
    r = run_mpi(np_, "-m", "grappa.train", "--method", method, "--data", data, "--out", out, "--no-progress",
                "--seed", SEED, *map(str, args))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def reference_sgd(data, steps_wanted, ranks=2):
    """Synchronous SGD with uniform weights over the ranks' local batches: the
    same partition, seeds and samples, computed in this one process."""
    # One intra-op thread, as each rank runs: a ReLU kink makes 20 SGD steps at lr 0.2 sensitive to the
    # float summation order (2 threads against 1 moved the parameters by 9e-4 on this machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_sgd(data, steps_wanted, ranks)
    finally:
        torch.set_num_threads(threads)


def _reference_sgd(data, steps_wanted, ranks):
    from grappa.graph.raw import SPLIT_TRAIN
    from grappa.models import build_model
    from grappa.sampling import NeighborSampler
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.schedule import chunk_sets
    from grappa.train.evaluate import loss_fn
    from grappa.train.methods.averaging import batch_seeds, epoch_order

    locals_ = [load_chunk_set(data, s) for s in chunk_sets("fixed", 4, ranks, 0, SEED)]
    train_nodes = [np.flatnonzero(lg.split == SPLIT_TRAIN) for lg in locals_]
    steps = max(math.ceil(len(t) / BS) for t in train_nodes)
    epochs = math.ceil(steps_wanted / steps)
    torch.manual_seed(SEED)
    model = build_model("sage", 1433, 16, 7, 2, 0.0)
    params = list(model.parameters())
    for epoch in range(epochs):
        orders = [epoch_order(t, SEED, epoch, r) for r, t in enumerate(train_nodes)]
        for step in range(steps):
            grads = []
            for r, lg in enumerate(locals_):
                sampler = NeighborSampler(lg.csr, FANOUTS, 0)
                sampler.rng = np.random.default_rng([SEED, epoch, r, step, 2])
                sub = sampler.sample(batch_seeds(orders[r], BS, step))
                nodes = torch.from_numpy(sub.nodes)
                model.zero_grad()
                out = model(lg.x[nodes], sub.edge_index)[: sub.num_seeds]
                loss_fn("multiclass", out, lg.y[nodes[: sub.num_seeds]]).backward()
                grads.append([p.grad.clone() for p in params])
            with torch.no_grad():
                for i, p in enumerate(params):
                    p -= LR * sum(g[i] for g in grads) / len(grads)
    return model.state_dict(), epochs, epochs * steps


def test_averaging_every_step_equals_synchronous_sgd(cora_r4, tmp_path):
    ref, epochs, steps = reference_sgd(cora_r4, 20)
    assert steps >= 20
    out = tmp_path / "tma"
    res = train(2, "random-tma", cora_r4, out, "--model", "sage", "--hidden", 16, "--dropout", 0, "--optimizer",
                "sgd", "--lr", LR, "--weight-decay", 0, "--batch-size", BS, "--fanouts", *FANOUTS,
                "--average-every-steps", 1, "--epochs", epochs, "--eval-every", epochs)
    got = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=0, msg=k)
    # Bytes: the flat parameter vector (float32) per averaging, ring allreduce, nothing else.
    assert res["averagings"] == steps
    p = res["num_params"]
    assert p == sum(v.numel() for v in ref.values())
    assert res["train_bytes_by_category"] == {"train_param": steps * p * 4 * 2 * (2 - 1) // 2}


@pytest.mark.parametrize("method,partition,k", [("psgd-pa", "metis", 2), ("super-tma", "metis-super", 4)])
def test_bytes_equal_parameters_times_averagings(cora_dir, tmp_path, method, partition, k):
    data = tmp_path / "data"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", data, "--num-chunks", k,
                "--method", partition, "--no-progress")
    assert r.returncode == 0, r.stderr
    res = train(2, method, data, tmp_path / "run", "--batch-size", 20, "--average-every-steps", 3, "--epochs", 3)
    steps = res["local_steps_per_rank"][0]
    per_epoch = steps // 3
    # every 3rd step, plus each epoch's end when it is not one already
    expected = len({s for s in range(1, steps + 1) if s % 3 == 0 or s % per_epoch == 0})
    assert res["averagings"] == expected
    ring = 2 * (2 - 1) / 2
    assert res["train_bytes_by_category"]["train_param"] == round(expected * res["num_params"] * 4 * ring)
    assert set(res["train_bytes_per_rank_per_epoch_by_category"]) == {"train_param"}


@pytest.mark.parametrize("backend", ["horovod", "gloo"])
def test_time_based_averaging_lets_a_slow_rank_take_fewer_steps(cora_r4, tmp_path, backend):
    period, budget = 1.0, 6.0
    res = train(2, "random-tma", cora_r4, tmp_path / "run", "--batch-size", 8, "--average-every-seconds", period,
                "--time-budget", budget, "--epochs", 1000, "--slow-rank-delay", 0.03, "--eval-every", 1000,
                "--backend", backend)
    assert res["backend"] == backend
    fast, slow = res["local_steps_per_rank"]
    assert fast > 1.5 * slow > 0, res["local_steps_per_rank"]
    wall = res["train_time_s_averaging"]
    assert abs(res["averagings"] - wall / period) <= 1, (res["averagings"], wall)
    assert res["epochs_run"] == res["averagings"] < 1000  # the budget ended it, with a final averaging
    assert budget <= wall < budget + 2 * period
    ring = 2 * (2 - 1) / 2
    assert res["train_bytes_by_category"]["train_param"] == round(res["averagings"] * res["num_params"] * 4 * ring)


def test_drop_parts_trains_on_p_of_p_plus_d_parts(cora_dir, tmp_path):
    data = tmp_path / "metis3"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", data, "--num-chunks", 3,
                "--method", "metis", "--no-progress")
    assert r.returncode == 0, r.stderr
    res = train(2, "psgd-pa", data, tmp_path / "run", "--drop-parts", 1, "--average-every-steps", 1,
                "--epochs", 20)
    assert res["parts"] == 3 and res["drop_parts"] == 1 and res["test_metric"] > 0.3
    r = run_mpi(2, "-m", "grappa.train", "--method", "psgd-pa", "--data", data, "--out", tmp_path / "x",
                "--no-progress")  # without --drop-parts, 3 parts do not fit 2 ranks
    assert r.returncode != 0 and "--num-chunks 2 --method metis" in r.stderr
