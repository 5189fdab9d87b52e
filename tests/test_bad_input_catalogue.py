"""The bad-input catalogue (docs/RELIABILITY.md lists every case and its test):
each command's entry point, called as the console script calls it, exits
with status 2 and one line naming the file, the problem and the fix, and
leaves no output behind. Multi-rank cases run under real mpirun."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, run_mpi
from grappa.graph import generators_cli, importers_cli
from grappa.shards import validate
from grappa.train import cli as train_cli


def refused(main, argv, capsys, named: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert named in err, err
    return err


# ---------------------------------------------------------------- generate
@pytest.mark.parametrize("argv,named", [
    (["rmat", "--scale", -3], "--scale"), (["rmat", "--scale", 41], "--scale"),
    (["rmat", "--a", 0.9, "--b", 0.3], "--a/--b/--c"), (["rmat", "--edge-factor", 0], "--edge-factor"),
    (["rmat", "--noise", 1.5], "--noise"), (["sbm", "--avg-degree", -5], "--avg-degree"),
    (["sbm", "--num-nodes", 5, "--num-classes", 8], "--num-nodes"), (["sbm", "--homophily", 1.5], "--homophily"),
    (["sbm", "--num-features", 0], "--num-features"), (["sbm", "--num-classes", 0], "--num-classes")],
    ids=lambda v: " ".join(map(str, v)) if isinstance(v, list) else None)
def test_generator_flags(tmp_path, capsys, argv, named):
    refused(generators_cli.main, [*argv, "--out", tmp_path / "g"], capsys, named)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- import
def _edges(tmp_path, text="0 1\n1 2\n2 0\n"):
    (tmp_path / "e.txt").write_text(text)
    return tmp_path / "e.txt"


def test_empty_edge_list_names_the_edge_list(tmp_path, capsys):
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    refused(importers_cli.main, ["edgelist", _edges(tmp_path, ""), "--labels", tmp_path / "y.npy",
                                 "--out", tmp_path / "o"], capsys, "e.txt: holds no edges")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("labels", [[0.5, 1.0, 2.0], [0, 1, -5], [[0], [1], [2]]], ids=["fraction", "negative", "2-d"])
def test_labels_that_are_not_class_indices_name_the_labels_file(tmp_path, capsys, labels):
    np.save(tmp_path / "lab.npy", np.array(labels))
    refused(importers_cli.main, ["edgelist", _edges(tmp_path), "--labels", tmp_path / "lab.npy",
                                 "--out", tmp_path / "o"], capsys, "lab.npy")


def test_edge_list_without_labels_asks_for_them(tmp_path, capsys):
    refused(importers_cli.main, ["edgelist", _edges(tmp_path), "--out", tmp_path / "o"], capsys, "--labels")


def test_nan_features_name_the_users_file_not_a_temporary_one(tmp_path, capsys):
    np.save(tmp_path / "lab.npy", np.arange(3))
    np.save(tmp_path / "feat.npy", np.array([[1.0], [np.nan], [0.0]], np.float32))
    err = refused(importers_cli.main, ["edgelist", _edges(tmp_path), "--labels", tmp_path / "lab.npy",
                                       "--features", tmp_path / "feat.npy", "--out", tmp_path / "o"], capsys,
                  "feat.npy: features contain NaN")
    assert ".tmp" not in err


def test_planetoid_test_index_cut_in_half(tmp_path, capsys):
    for f in (ROOT / "datasets/cora").glob("ind.cora.*"):
        shutil.copy(f, tmp_path / f.name)
    idx = tmp_path / "ind.cora.test.index"
    idx.write_bytes(idx.read_bytes()[: len(idx.read_bytes()) // 2])
    refused(importers_cli.main, ["planetoid", tmp_path, "--name", "cora", "--out", tmp_path / "o"], capsys,
            "ind.cora.test.index")
    assert not (tmp_path / "o").exists()


def _npz(path, n=6, train_cols=6):
    np.savez(path, node_features=np.ones((n, 2), np.float32), node_labels=np.arange(n) % 2,
             edges=np.array([[i, i + 1] for i in range(n - 1)]), train_masks=np.ones((2, train_cols), bool),
             val_masks=np.zeros((2, n), bool), test_masks=np.zeros((2, n), bool))
    return path


@pytest.mark.parametrize("argv,named", [(["--split-index", 5], "--split-index: 5 is out of range"),
                                        (["--split-index", -1], "--split-index: -1 is out of range")],
                         ids=["5", "-1"])
def test_npz_split_index_out_of_range(tmp_path, capsys, argv, named):
    refused(importers_cli.main, ["npz", _npz(tmp_path / "g.npz"), *argv, "--out", tmp_path / "o"], capsys, named)


def test_npz_mask_of_the_wrong_length(tmp_path, capsys):
    refused(importers_cli.main, ["npz", _npz(tmp_path / "g.npz", train_cols=5), "--out", tmp_path / "o"], capsys,
            "g.npz: train_masks has shape (2, 5)")


# ---------------------------------------------------------------- validate
def _copy(src, tmp_path, name="d"):
    d = tmp_path / name
    shutil.copytree(src, d)
    return d


def test_edited_manifest_count_blames_the_manifest(cora_k8, tmp_path, capsys):
    d = _copy(cora_k8, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["num_nodes"] += 1
    (d / "manifest.json").write_text(json.dumps(m))
    refused(validate.main, [d], capsys, "manifest.json: says num_nodes 2709")


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_missing_or_renamed_shard(cora_k8, tmp_path, capsys, how):
    d = _copy(cora_k8, tmp_path)
    shard = d / "chunk-00003.h5"
    shard.unlink() if how == "deleted" else shard.rename(d / "chunk-3.h5")
    refused(validate.main, [d], capsys, "chunk-00003.h5: file listed in manifest.json is missing")


def test_shard_from_another_partition(cora_k8, cora_k16, tmp_path, capsys):
    d = _copy(cora_k8, tmp_path)
    shutil.copy(cora_k16 / "chunk-00002.h5", d / "chunk-00002.h5")
    refused(validate.main, [d], capsys, "chunk-00002.h5")


def test_raw_graph_given_to_validate(cora_dir, capsys):
    refused(validate.main, [cora_dir], capsys, "manifest.json")


# ---------------------------------------------------------------- train
@pytest.mark.parametrize("flags,named", [
    (["--batch-size", 8, "--fanouts", 10, 10, 10], "--fanouts"), (["--comm-timeout", 0], "--comm-timeout"),
    (["--checkpoint-every", -1], "--checkpoint-every"), (["--layers", 0], "--layers"),
    (["--weight-decay", -1], "--weight-decay"), (["--patience", -1], "--patience"),
    (["--checkpoint-keep", 0], "--checkpoint-keep"), (["--eval-batch-size", 0], "--eval-batch-size")],
    ids=lambda v: " ".join(map(str, v)) if isinstance(v, list) else None)
def test_train_flags(cora_dir, tmp_path, capsys, flags, named):
    refused(train_cli.main, ["--data", cora_dir, "--out", tmp_path / "o", "--no-progress", *flags], capsys, named)
    assert not (tmp_path / "o").exists()


def test_resume_without_a_checkpoint(cora_dir, tmp_path, capsys):
    refused(train_cli.main, ["--data", cora_dir, "--out", tmp_path / "o", "--resume", "--no-progress"], capsys,
            "no checkpoint found")


@pytest.mark.parametrize("method", ["grappa", "halo"])
def test_fewer_chunks_than_ranks(cora_k8, tmp_path, method):
    """K = 8 chunks cannot feed 16 ranks (the world size is the only thing
    faked here: starting 16 ranks on this machine would only be slow)."""
    from grappa.errors import InputError
    from grappa.train.registry import resolve

    cfg = train_cli.config_from_args(train_cli.build_parser().parse_args(
        ["--method", method, "--data", str(cora_k8), "--out", str(tmp_path / "o")]))
    with pytest.raises(InputError, match="partition.py"):
        train_cli.check_input(cfg, resolve(method), 16)


def test_an_argparse_error_under_mpirun_is_printed_once(cora_k8, tmp_path):
    r = run_mpi(2, "-m", "grappa.train", "--data", cora_k8, "--out", tmp_path / "o", "--no-such-flag", timeout=120)
    assert r.returncode == 2 and r.stderr.count("unrecognized arguments") == 1, r.stderr


def test_an_existing_unrelated_out_is_kept_but_a_failed_runs_leftover_is_reused(cora_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    refused(train_cli.main, ["--data", cora_dir, "--out", mine, "--epochs", 1, "--no-progress"], capsys,
            "already exists")
    assert (mine / "notes.txt").read_text() == "precious"
    left = tmp_path / "left"
    (left / "checkpoints").mkdir(parents=True)
    (left / "metrics.jsonl").write_text('{"epoch": 0}\n')
    (left / "checkpoints" / "ckpt-000004-000000.pt.sha256").write_text("x\n")  # a write cut short
    train_cli.main(["--data", str(cora_dir), "--out", str(left), "--epochs", "2", "--no-progress"])
    assert (left / "result.json").exists() and len((left / "metrics.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------- several ranks, full disks
def test_a_flag_error_under_mpirun_is_printed_once(cora_k8, tmp_path):
    r = run_mpi(3, "-m", "grappa.train", "--method", "grappa", "--data", cora_k8, "--out", tmp_path / "o",
                "--lr", -1, timeout=120)
    assert r.returncode == 2 and r.stderr.count("error: --lr") == 1, r.stderr


def test_disk_full_during_a_checkpoint(cora_k8, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["-m", "grappa.train", "--method", "grappa", "--data", cora_k8, "--out", out, "--epochs", 12,
            "--repartition-every", 4, "--dropout", 0, "--no-progress"]
    monkeypatch.setenv("GRAPPA_FAULT", "0:checkpoint:2::enospc")  # rank 0's second checkpoint (epoch 8)
    r = run_mpi(2, *args, timeout=180)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ckpt-000008-000000.pt: No space left on device" in errors[0], r.stderr
    left = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert left == ["ckpt-000004-000000.pt", "ckpt-000004-000000.pt.sha256"]  # nothing half-written
    monkeypatch.delenv("GRAPPA_FAULT")
    r = run_mpi(2, *args, "--resume", timeout=180)  # space again: it continues from epoch 4
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(12))


def test_disk_full_during_a_shard_write(cora_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPPA_FAULT", "1:shard:2::enospc")
    out = tmp_path / "parts"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", 8,
                "--no-progress", timeout=180)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "chunk-00003.h5: No space left on device" in errors[0], r.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no temporary directory


@pytest.mark.parametrize("command", ["import", "generate", "train"])
def test_an_unwritable_out_is_one_line_naming_it(cora_dir, tmp_path, capsys, command):
    """/sys refuses new directories (EPERM or EROFS), even to root: a real read-only place."""
    out = "/sys/grappa-catalogue-out"
    if command == "import":
        np.save(tmp_path / "lab.npy", np.arange(3))
        refused(importers_cli.main, ["edgelist", _edges(tmp_path), "--labels", tmp_path / "lab.npy", "--out", out],
                capsys, "/sys/")
    elif command == "generate":
        refused(generators_cli.main, ["sbm", "--num-nodes", 100, "--out", out, "--quiet"], capsys, "/sys/")
    else:
        refused(train_cli.main, ["--data", cora_dir, "--out", out, "--epochs", 1, "--no-progress"], capsys, out)


def test_partitioned_dataset_given_to_the_partitioner(cora_k8, tmp_path):
    r = run_mpi(1, ROOT / "data_prep/partition.py", "--data", cora_k8, "--out", tmp_path / "o", "--num-chunks", 4,
                "--no-progress", timeout=120)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "graph.json" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
