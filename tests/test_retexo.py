"""RETEXO under real mpirun: training bytes equal, exactly, the boundary rows
sent once per stage (features, then embeddings) plus the per-round gradient
allreduces, computed from the partition alone; a rank killed mid-stage ends
the job fast and --resume ends with the uninterrupted run's parameters."""
from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import torch
from conftest import cmdline, descendants, run_mpi
from grappa.checkpoint import list_checkpoints, load_checkpoint
from grappa.graph.raw import RawGraph
from grappa.shards.schedule import chunk_sets, owner_of_chunks
from test_grappa_training import _launch, _wait_for_epochs

pytestmark = pytest.mark.mpi
F, C, H = 1433, 7, 16


def rows_sent(raw_dir, data, ranks: int, seed: int = 0) -> list[int]:
    """Per rank: (owned node, other rank that has it as an in-neighbour) pairs."""
    raw = RawGraph(raw_dir)
    src, dst = raw.load_edges()
    k = json.loads((data / "manifest.json").read_text())["num_chunks"]
    owner = owner_of_chunks(chunk_sets("fixed", k, ranks, 0, seed), k)[np.load(data / "node_chunk.npy")]
    cross = owner[src] != owner[dst]
    pairs = np.unique(np.stack([src[cross], owner[dst[cross]]]), axis=1)
    return np.bincount(owner[pairs[0]], minlength=ranks).tolist()


def test_bytes_are_boundary_rows_once_per_stage_plus_gradients(cora_dir, cora_k8, tmp_path):
    out, rounds, ranks = tmp_path / "run", 3, 2
    r = run_mpi(ranks, "-m", "grappa.train", "--method", "retexo", "--data", cora_k8, "--out", out, "--no-progress",
                "--model", "gcn", "--hidden", H, "--layers", 2, "--epochs", 2 * rounds)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    params = [F * H + H + 2 * H + H * C + C, H * C + C]  # conv + LayerNorm + aux head; the final conv
    assert res["num_params_by_stage"] == params and res["rounds_per_stage"] == rounds
    assert res["stage_lr"] == res["config"]["lr"] == 0.01  # --stage-lr 0: the --lr every method shares
    rows = rows_sent(cora_dir, cora_k8, ranks)
    assert res["halo_rows_sent"] == rows[0]
    ring = 2 * (ranks - 1) / ranks
    grads = [rounds * round(ring * 4 * (p + 2)) for p in params]  # + the loss sum and the stop flag
    assert res["train_bytes_by_category"] == {"train_feat": rows[0] * F * 4, "train_embed": rows[0] * H * 4,
                                              "train_grad": sum(grads)}  # rank 0, whole run
    assert res["train_bytes_by_stage"] == [{"train_feat": rows[0] * F * 4, "train_embed": rows[0] * H * 4,
                                            "train_grad": grads[0]}, {"train_grad": grads[1]}]
    every_rank = sum(rows) * (F + H) * 4 / ranks + sum(grads)
    assert res["train_bytes_per_rank_per_epoch"] == pytest.approx(every_rank / (2 * rounds))


def _final(out):
    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]


def test_killed_rank_mid_stage_fails_fast_then_resume_is_exact(cora_k8, tmp_path):
    args = ["--method", "retexo", "--data", cora_k8, "--no-progress", "--model", "sage", "--hidden", H,
            "--dropout", 0, "--epochs", 40, "--rounds-per-stage", 20, "--checkpoint-every", 4]
    out = tmp_path / "run"
    proc = _launch(2, *args, "--out", out)
    _wait_for_epochs(out, 9, proc)  # past the checkpoint at round 8, inside stage 0
    ranks = [p for p in descendants(proc.pid) if "grappa.train" in cmdline(p)]  # this mpirun's ranks only
    assert ranks
    os.kill(max(ranks), signal.SIGKILL)
    t0 = time.time()
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.time() - t0 < 60  # no hang
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert done < 20, "the kill landed after stage 0: the test proves less than it says"
    r = run_mpi(2, "-m", "grappa.train", *map(str, args), "--out", out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    ref = tmp_path / "ref"
    r = run_mpi(2, "-m", "grappa.train", *map(str, args), "--out", ref)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _final(ref), _final(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
    rows = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(rows)) == list(range(40))


def test_retexo_refuses_a_model_without_stages(cora_k8, tmp_path):
    r = run_mpi(2, "-m", "grappa.train", "--method", "retexo", "--data", cora_k8, "--out", tmp_path / "o",
                "--model", "gin", "--no-progress")
    assert r.returncode != 0 and "--model gcn, sage or gat" in r.stderr
    assert not (tmp_path / "o").exists()



def test_one_rank_and_two_ranks_train_the_same_stages(cora_k8, tmp_path):
    """Full-batch stages with the global mean loss and exact boundary rows:
    the ranks only split the work, so P = 1 and P = 2 end with the same
    parameters (dropout 0), stage switch and best-round selection included."""
    args = ["-m", "grappa.train", "--method", "retexo", "--data", cora_k8, "--no-progress", "--model", "gcn",
            "--hidden", H, "--dropout", 0, "--epochs", 8, "--rounds-per-stage", 4]
    for p in (1, 2):
        r = run_mpi(p, *args, "--out", tmp_path / f"p{p}")
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = _final(tmp_path / "p1"), _final(tmp_path / "p2")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4, msg=k)
