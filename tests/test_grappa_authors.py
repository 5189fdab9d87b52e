"""``--method grappa-authors``: the authors' configuration of Grappa (METHODS.md
section 1). Hand-checked chunk sets and coverage values, then real mpirun
ranks on Cora against a reference computed here from the raw graph: the
(1/P) sum_p c_p g_p aggregation with a_v = (g + 1) / (g + 2), step by step,
and its bytes; and the distributed evaluation against a centralized one."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.checkpoint import list_checkpoints, load_checkpoint
from grappa.shards.schedule import base_variable_sets
from grappa.train.methods.grappa_authors import authors_coverage

SEED, BS, FANOUTS, LR, P = 5, 16, [4, 3], 0.5, 3


def test_base_variable_sets_by_hand():
    assert base_variable_sets(1, 0) == [[0]]
    assert base_variable_sets(2, 0) == base_variable_sets(2, 7) == [[0, 1], [1, 0]]
    assert base_variable_sets(3, 0) == [[0, 1], [1, 2], [2, 0]]
    assert base_variable_sets(3, 1) == [[0, 2], [1, 0], [2, 1]]
    assert base_variable_sets(3, 2) == base_variable_sets(3, 0)
    assert base_variable_sets(4, 2) == [[0, 3], [1, 0], [2, 1], [3, 2]]
    for p in (3, 4, 5):
        met = set()
        for s in range(p - 1):
            sets = base_variable_sets(p, s)
            assert sorted(c for st in sets for c in st) == sorted(list(range(p)) * 2)  # each chunk in two sets
            met |= {frozenset(st) for st in sets}
        assert len(met) == p * (p - 1) // 2  # every pair within P - 1 super-epochs


def test_authors_coverage_by_hand():
    # in-degrees without the self-loop; a_v = min(1, (local + 1) / (global + 1 + 1))
    got = authors_coverage(np.array([3, 1, 0, 5]), np.array([3, 3, 0, 3]))
    np.testing.assert_allclose(got, [4 / 5, 2 / 5, 1 / 2, 1.0])


@pytest.fixture(scope="module")
def cora_k3(cora_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("authors") / "cora-random-k3"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", P,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    return out


def reference(cora_dir, data, epochs):
    """Plain SGD on G = (1/P) sum_p c_p g_p, computed in this one process from
    hand-written chunk sets and the raw graph's degrees; also the normalised
    variant sum c_p g_p / sum c_p, which the method must *not* match."""
    from grappa.graph.raw import SPLIT_TRAIN, RawGraph
    from grappa.models import build_model
    from grappa.sampling import NeighborSampler
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.format import load_manifest
    from grappa.train.batches import epoch_order
    from grappa.train.evaluate import loss_fn

    raw_deg = np.bincount(np.asarray(RawGraph(cora_dir).dst), minlength=2708)
    sizes = [c["num_nodes"] for c in load_manifest(data)["chunks"]]
    hand_sets = [[[0, 1], [1, 2], [2, 0]], [[0, 2], [1, 0], [2, 1]]]
    models = []
    for _ in range(2):
        torch.manual_seed(SEED)
        models.append(build_model("sage", 1433, 16, 7, 2, 0.0))
    steps_run = 0
    for epoch in range(epochs):
        locals_ = [load_chunk_set(data, s, halo_hops=1) for s in hand_sets[epoch % 2]]  # --repartition-every 1
        seeds = [np.flatnonzero(lg.split[: sizes[r]] == SPLIT_TRAIN) for r, lg in enumerate(locals_)]
        cov = [(raw_deg[lg.global_id[: lg.num_owned]] + 1) / (raw_deg[lg.global_id[: lg.num_owned]] + 2)
               for lg in locals_]
        steps = max(math.ceil(len(t) / BS) for t in seeds)
        orders = [epoch_order(t, SEED, epoch, r) for r, t in enumerate(seeds)]
        for step in range(steps):
            grads, cs = [[], []], []
            for r, lg in enumerate(locals_):
                n = len(orders[r])
                batch = orders[r][step * n // steps:(step + 1) * n // steps]
                cs.append(float(cov[r][batch].mean()))
                for j, model in enumerate(models):
                    sampler = NeighborSampler(lg.csr, FANOUTS, 0)
                    sampler.rng = np.random.default_rng([SEED, epoch, r, step, 2])
                    sub = sampler.sample(batch)
                    nodes = torch.from_numpy(sub.nodes)
                    model.zero_grad()
                    out = model(lg.x[nodes], sub.edge_index)[: sub.num_seeds]
                    loss_fn("multiclass", out, lg.y[nodes[: sub.num_seeds]]).backward()
                    grads[j].append([p.grad.clone() for p in model.parameters()])
            with torch.no_grad():
                for j, (model, div) in enumerate(zip(models, (P, sum(cs)))):
                    for i, p in enumerate(model.parameters()):
                        p -= LR * sum(c * g[i] for c, g in zip(cs, grads[j])) / div
            steps_run += 1
    return [m.state_dict() for m in models], steps_run


def test_unnormalised_aggregation_equals_reference_and_bytes(cora_dir, cora_k3, tmp_path):
    epochs = 2
    (ref, normalised), steps = reference(cora_dir, cora_k3, epochs)
    out = tmp_path / "authors"
    r = run_mpi(P, "-m", "grappa.train", "--method", "grappa-authors", "--data", cora_k3, "--out", out,
                "--no-progress", "--seed", SEED, "--model", "sage", "--hidden", 16, "--dropout", 0, "--optimizer",
                "sgd", "--lr", LR, "--weight-decay", 0, "--batch-size", BS, "--fanouts", *FANOUTS,
                "--repartition-every", 1, "--epochs", epochs, "--eval-every", 1)
    assert r.returncode == 0, r.stderr[-3000:]
    got = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=0, msg=k)
    assert max(float((got[k] - normalised[k]).abs().max()) for k in ref) > 1e-3  # the test tells them apart
    # Bytes: per step one allreduce of the parameters and the stop flag, nothing else.
    res = json.loads((out / "result.json").read_text())
    num_params = sum(v.numel() for v in ref.values())
    want = steps * (num_params + 1) * 4 * 2 * (P - 1) / P
    assert res["train_bytes_by_category"] == {"train_grad": pytest.approx(want, rel=1e-12)}
    assert res["schedule"] == "base+variable" and res["weighting"] == "authors"


def test_distributed_evaluation_equals_centralized(cora_dir, cora_k3, tmp_path):
    """The chunk sets overlap; each rank evaluates its base chunk, and the
    whole graph is scored once."""
    from grappa.models import build_model
    from grappa.train.data import load_graph
    from grappa.train.evaluate import compute_metric

    out = tmp_path / "eval"
    r = run_mpi(P, "-m", "grappa.train", "--method", "grappa-authors", "--data", cora_k3, "--out", out,
                "--no-progress", "--epochs", 20, "--eval-every", 5, "--repartition-every", 5)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    assert res["test_metric"] > 0.5  # a trained model, not a constant prediction
    g = load_graph(cora_dir)
    model = build_model("gcn", 1433, 16, 7).eval()
    model.load_state_dict(torch.load(out / "best_model.pt", weights_only=True))
    with torch.no_grad():
        logits = model(g.x, g.edge_index)
    assert compute_metric("accuracy", logits[g.test_idx], g.y[g.test_idx]) == pytest.approx(res["test_metric"],
                                                                                           abs=1e-6)
    assert compute_metric("accuracy", logits[g.val_idx], g.y[g.val_idx]) == pytest.approx(res["val_metric"],
                                                                                         abs=1e-6)
