"""float16 features (``grappa-partition --feature-dtype float16``): stored and
held at two bytes a value, computed in float32. Training on them equals
training on float32 shards of the same (float16-rounded) values, and the
boundary rows that carry features cost half the bytes."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.checkpoint import load_checkpoint

pytestmark = pytest.mark.mpi
PARTITION = ROOT / "data_prep/partition.py"


def partition(data, out, *flags):
    r = run_mpi(2, PARTITION, "--data", data, "--out", out, "--num-chunks", 8, "--no-progress", *flags)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def datasets(cora_dir, tmp_path_factory):
    """Cora's shards in float16, and float32 shards of the float16-rounded features."""
    tmp = tmp_path_factory.mktemp("f16")
    rounded = tmp / "cora-rounded"
    shutil.copytree(cora_dir, rounded)
    x = np.load(cora_dir / "x.npy")
    np.save(rounded / "x.npy", x.astype(np.float16).astype(np.float32))
    return partition(cora_dir, tmp / "f16", "--feature-dtype", "float16"), partition(rounded, tmp / "f32")


def test_float16_shards_hold_the_rounded_features_at_half_the_bytes(cora_dir, datasets):
    from grappa.shards.assemble import load_chunk_set
    from grappa.shards.validate import validate_dataset

    f16, f32 = datasets
    x = np.load(cora_dir / "x.npy")
    assert validate_dataset(f16)["feature_dtype"] == "float16"
    assert json.loads((f32 / "manifest.json").read_text())["feature_dtype"] == "float32"
    with h5py.File(f16 / "chunk-00003.h5", "r") as f:
        stored, ids = f["nodes/x"][()], f["nodes/global_id"][()]
    assert stored.dtype == np.float16 and np.array_equal(stored, x[ids].astype(np.float16))
    half, full = load_chunk_set(f16, [1, 5]), load_chunk_set(f32, [1, 5])
    assert half.x.dtype == torch.float16 and full.x.dtype == torch.float32
    assert torch.equal(half.x.float(), full.x) and half.x.nbytes * 2 == full.x.nbytes
    lean = load_chunk_set(f16, [1, 5], halo_hops=0, hold_in_edges=False)  # the streamed load
    assert lean.x.dtype == torch.float16 and torch.equal(lean.x.float(), load_chunk_set(f32, [1, 5], halo_hops=0).x)


def test_training_on_float16_shards_equals_float32_shards_of_the_same_values(datasets, tmp_path):
    """Grappa (halo read from the shards, the streamed evaluation: SAGE
    hidden 2048 sends its layer-0 rows unprojected) and RETEXO (features
    exchanged once): the same parameters; RETEXO's feature bytes halve."""
    runs = {"grappa": ["--model", "sage", "--hidden", 2048, "--epochs", 3, "--repartition-every", 2],
            "retexo": ["--model", "gcn", "--hidden", 16, "--epochs", 4]}
    for method, flags in runs.items():
        got = {}
        for name, data in zip(("f16", "f32"), datasets):
            out = tmp_path / f"{method}-{name}"
            r = run_mpi(2, "-m", "grappa.train", "--method", method, "--data", data, "--out", out, "--dropout", 0,
                        "--eval-every", 2, "--no-progress", *map(str, flags))
            assert r.returncode == 0, r.stderr
            res = json.loads((out / "result.json").read_text())
            got[name] = (load_checkpoint(sorted((out / "checkpoints").glob("ckpt-*.pt"))[-1])["model"], res)
        (p16, r16), (p32, r32) = got["f16"], got["f32"]
        assert max(float((p16[k] - p32[k]).abs().max()) for k in p32) < 1e-6, method
        assert r16["test_metric"] == r32["test_metric"], method
        if method == "retexo":
            b16, b32 = r16["train_bytes_by_category"], r32["train_bytes_by_category"]
            assert b16["train_feat"] * 2 == b32["train_feat"] > 0 and b16["train_grad"] == b32["train_grad"]


def test_features_beyond_float16_range_are_refused(cora_dir, tmp_path):
    big = tmp_path / "big"
    shutil.copytree(cora_dir, big)
    x = np.load(big / "x.npy")
    x[5, 3] = 1e5
    np.save(big / "x.npy", x)
    out = tmp_path / "out"
    r = run_mpi(2, PARTITION, "--data", big, "--out", out, "--num-chunks", 4, "--feature-dtype", "float16",
                "--no-progress")
    assert r.returncode == 2, r.stderr
    assert "x.npy" in r.stderr and "float16" in r.stderr and "--feature-dtype float32" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("edit, blamed", [("bfloat16", "manifest.json"), ("float16", "chunk-00000.h5")])
def test_a_manifest_that_misstates_the_feature_dtype_is_refused(datasets, tmp_path, edit, blamed):
    from grappa.errors import InputError
    from grappa.shards.validate import validate_dataset

    d = tmp_path / "ds"
    shutil.copytree(datasets[1], d)  # float32 shards
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "feature_dtype": edit}))
    with pytest.raises(InputError, match=blamed):
        validate_dataset(d)
