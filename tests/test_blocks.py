"""The heterophilous benchmark's blocks (--residual, --norm) under the
distributed methods, with real mpirun ranks: Grappa's gradient is
centralized's with layer norm, batch norm's statistics are averaged over the
ranks, every method trains them, RETEXO refuses them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, mpi_env, run_mpi
from grappa.checkpoint import load_checkpoint

pytestmark = pytest.mark.mpi
TRAIN = ["-m", "grappa.train"]


def last_params(out):
    return load_checkpoint(sorted((out / "checkpoints").glob("ckpt-*.pt"))[-1])["model"]


def test_residual_layer_norm_grappa_gradient_is_the_centralized_one(cora_dir, cora_k8, tmp_path):
    """LayerNorm normalises each node alone, so with the --layers-hop halo the
    2 ranks' combined gradient is centralized's: one plain SGD step of lr 1
    moves the parameters by exactly the gradient. Isolated chunk sets do not."""
    common = ["--model", "gcn", "--layers", 2, "--hidden", 16, "--residual", "--norm", "layer", "--dropout", 0,
              "--optimizer", "sgd", "--lr", 1, "--weight-decay", 0, "--epochs", 1, "--no-progress"]
    r = run_mpi(1, *TRAIN, "--method", "centralized", "--data", cora_dir, "--out", tmp_path / "c", *common)
    assert r.returncode == 0, r.stderr
    ref = last_params(tmp_path / "c")
    assert any(k.startswith("norms.") for k in ref) and "input_lin.weight" in ref
    errs = []
    for hops in ("-1", "0"):
        out = tmp_path / f"g{hops}"
        r = run_mpi(2, *TRAIN, "--method", "grappa", "--data", cora_k8, "--out", out, *common, "--halo-hops", hops)
        assert r.returncode == 0, r.stderr
        got = last_params(out)
        errs.append(max(float((got[k] - ref[k]).abs().max()) for k in ref))
    assert errs[0] < 1e-5 < 1e-3 < errs[1], errs


def test_batch_norm_running_statistics_are_averaged_over_the_ranks(tmp_path):
    r = run_mpi(2, ROOT / "tests/mpi/norm_sync_check.py", tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    for row in rows:
        assert row["norms"] == 3 and row["eval_bytes"] > 0  # one before each conv and one before the output
        assert all(v == 0.5 for m in row["means"] for v in m) and all(v == 2.0 for m in row["vars"] for v in m)


def test_every_distributed_method_trains_the_blocks(cora_dir, tmp_path):
    """`--methods all` with --residual --norm batch, in one compare.py invocation: every
    registered method but RETEXO (its own stages), which is left out and says what to drop."""
    from grappa.train.registry import METHODS

    names = [n for n in METHODS if n != "retexo"]
    r = subprocess.run([sys.executable, str(ROOT / "bench/compare.py"), "--raw", str(cora_dir), "--ranks", "2",
                        "--seeds", "0", "--methods", "all", "--work", str(tmp_path / "w"), "--out",
                        str(tmp_path / "o"), "--", "--epochs", "3", "--eval-every", "3", "--hidden", "8",
                        "--residual", "--norm", "batch"], env=mpi_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    bench = json.loads((tmp_path / "o" / "bench.json").read_text())
    runs, pred, summary = bench["runs"], bench["analytic"], bench["summary"]
    assert sorted(res["config"]["method"] for (res,) in runs.values()) == sorted(names)
    assert "left out RETEXO: --residual" in r.stdout
    assert "Left out of `--methods all`: RETEXO (--residual" in (tmp_path / "o" / "bench.md").read_text()
    # the byte model knows the blocks: hidden-wide layer inputs, and the input projection's halo gradient
    assert summary["halo"]["train_bytes_per_rank_per_epoch"] == pytest.approx(pred["halo_bytes_per_rank_per_epoch"])
    assert summary["grappa"]["train_bytes_per_rank_per_epoch"] == pytest.approx(pred["grappa_bytes_per_rank_per_epoch"])
    assert pred["layer_input_dims"] == [8, 8]
    for label, (res,) in runs.items():
        assert res["config"]["residual"] and res["config"]["norm"] == "batch", label
        assert 0.0 < res["test_metric"] <= 1.0 and res["epochs_run"] == 3, label
    r = run_mpi(2, *TRAIN, "--method", "retexo", "--data", next((tmp_path / "w").glob("*-random-k8")), "--out",
                tmp_path / "r", "--residual", "--epochs", 4, "--no-progress")
    assert r.returncode == 2 and "--residual" in r.stderr and "drop --residual and --norm" in r.stderr, r.stderr
