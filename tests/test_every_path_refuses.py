"""Every path refuses what the entry point refuses (issue 31): one set of
dataset checks run by import, partition, validate and training start alike;
every float flag finite; a diverging run is an error that keeps its last
good checkpoint; the partitioner's disk errors are one line; a method on a
partition it is not meant for warns once; edge lists and job scripts check
their input first. docs/RELIABILITY.md lists each case with its test."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, mpi_env, run_mpi
from grappa.graph import importers_cli
from grappa.launch_env import local_mpirun
from grappa.shards.format import sha256_file
from test_bad_input_catalogue import refused

PARTITION = ROOT / "data_prep/partition.py"


def one_error(r: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """Exit ``status``, exactly one ``error:`` line holding every needle, no traceback or MPI abort."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == status and len(errors) == 1, r.stderr
    assert all(n in errors[0] for n in needles), r.stderr
    assert "Traceback" not in r.stderr and "MPI_ABORT" not in r.stderr, r.stderr
    return errors[0]


def _raw_copy(cora_dir, tmp_path, edit) -> str:
    d = tmp_path / "raw"
    shutil.copytree(cora_dir, d)
    edit(d)
    return d


def _set_label(d, node, label):
    y = np.load(d / "y.npy")
    y[node] = label
    np.save(d / "y.npy", y)


def _no_training_nodes(d):
    s = np.load(d / "split.npy")
    s[s == 1] = 0
    np.save(d / "split.npy", s)


def _edit_shards(cora_k8, tmp_path, key, edit, chunks=range(8)):
    """A copy of the dataset whose shards' ``key`` is edited, the manifest updated to
    match (as a partition written before these checks, or by another tool, would be)."""
    d = tmp_path / "data"
    shutil.copytree(cora_k8, d)
    m = json.loads((d / "manifest.json").read_text())
    for c in chunks:
        p = d / f"chunk-{c:05d}.h5"
        with h5py.File(p, "r+") as f:
            f[key][...] = edit(f[key][()])
        entry = next(e for e in m["files"] if e["name"] == p.name)
        entry.update(size=p.stat().st_size, sha256=sha256_file(p))
    (d / "manifest.json").write_text(json.dumps(m, indent=2))
    return d


def _label_99(y):
    y[0] = 99
    return y


# ------------------------------------------------- one set of dataset checks
@pytest.mark.parametrize("edit,needles", [
    (lambda d: _set_label(d, 5, 99), ["y.npy", "label 99 of node 5", "outside [0, 7)"]),
    (_no_training_nodes, ["split.npy", "no training nodes"])], ids=["label out of range", "no training nodes"])
def test_the_partitioner_refuses_what_import_refuses(cora_dir, tmp_path, edit, needles):
    raw = _raw_copy(cora_dir, tmp_path, edit)
    r = run_mpi(2, PARTITION, "--data", raw, "--out", tmp_path / "parts", "--num-chunks", 4, "--no-progress",
                timeout=180)
    one_error(r, 2, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no output, no temporary directory


@pytest.mark.parametrize("key,edit,needles", [
    ("nodes/y", _label_99, ["chunk-00002.h5 (nodes/y)", "label 99 of node 0"]),
    ("nodes/split", lambda s: np.where(s == 1, 0, s).astype(s.dtype), ["(nodes/split)", "no training nodes"])],
    ids=["label out of range", "no training nodes"])
def test_validate_and_training_refuse_what_import_refuses(cora_k8, tmp_path, key, edit, needles):
    """Shards whose checksums match but whose labels or split are bad (before
    this check, Grappa died with IndexError on every rank, or exited 0 with
    loss 0.0): grappa-validate and a 2-rank Grappa start refuse them alike."""
    from grappa.shards import validate

    chunks = [2] if key == "nodes/y" else range(8)
    d = _edit_shards(cora_k8, tmp_path, key, edit, chunks)
    with pytest.raises(Exception, match=needles[-1]):
        validate.validate_dataset(d)
    r = run_mpi(2, "-m", "grappa.train", "--method", "grappa", "--data", d, "--out", tmp_path / "run",
                "--epochs", 1, "--no-progress")
    one_error(r, 2, *needles)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------- finite numeric flags
BAD_FLOATS = [(["--weight-decay", "inf"], "--weight-decay"), (["--lr", "nan"], "--lr"),
              (["--dropout", "nan"], "--dropout"), (["--comm-timeout", "inf"], "--comm-timeout"),
              (["--method", "retexo", "--stage-lr", "inf"], "--stage-lr"),
              (["--method", "llcg", "--server-lr", "nan"], "--server-lr"),
              (["--method", "llcg", "--rho", "inf"], "--rho"),
              (["--method", "random-tma", "--average-every-seconds", "nan"], "--average-every-seconds"),
              (["--method", "random-tma", "--time-budget", "nan"], "--time-budget"),
              (["--time-budget", "inf"], "--time-budget"), (["--time-budget", "-1"], "--time-budget"),
              (["--method", "retexo", "--stage-seconds", "inf"], "--stage-seconds"),
              (["--method", "random-tma", "--steps-per-epoch", "-1"], "--steps-per-epoch"),
              (["--method", "random-tma", "--slow-rank-delay", "inf"], "--slow-rank-delay"),
              (["--method", "grappa", "--halo-budget-mb", "inf"], "--halo-budget-mb"),
              (["--method", "grappa", "--shrinkage-lambda", "nan"], "--shrinkage-lambda"),
              (["--method", "adaqp", "--variance-weight", "nan"], "--variance-weight"),
              (["--method", "random-tma", "--average-every-seconds", "900"], "--comm-timeout")]


@pytest.mark.parametrize("flags,named", BAD_FLOATS, ids=[" ".join(f) for f, _ in BAD_FLOATS])
def test_every_float_flag_is_finite_where_it_enters(cora_dir, tmp_path, flags, named):
    """NaN passes ``x > 0`` checks as False and infinity as True: before, --weight-decay
    inf trained to a NaN loss and exited 0, --average-every-seconds nan hung, and
    --comm-timeout inf overflowed on every rank."""
    from grappa.errors import InputError
    from grappa.train.cli import build_parser, config_from_args

    with pytest.raises(InputError) as e:
        config_from_args(build_parser().parse_args(["--data", str(cora_dir), "--out", str(tmp_path), *flags]))
    assert str(e.value).startswith(named), e.value


@pytest.mark.parametrize("flags,named", [(["--comm-timeout", "inf"], "--comm-timeout"),
                                         (["--method", "random-tma", "--average-every-seconds", "nan"],
                                          "--average-every-seconds")], ids=["comm-timeout", "average-every-seconds"])
def test_a_non_finite_flag_under_mpirun_is_one_line(cora_k8, tmp_path, flags, named):
    r = run_mpi(2, "-m", "grappa.train", "--data", cora_k8, "--out", tmp_path / "run", "--no-progress", *flags)
    one_error(r, 2, named, "finite")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,named", [(["sbm", "--homophily", "nan"], "--homophily"),
                                        (["sbm", "--avg-degree", "inf"], "--avg-degree"),
                                        (["rmat", "--noise", "nan"], "--noise")])
def test_generator_floats_are_finite(tmp_path, capsys, argv, named):
    from grappa.graph import generators_cli

    refused(generators_cli.main, [*argv, "--out", tmp_path / "g", "--quiet"], capsys, named)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------ divergence
def _latest_checkpoint_epoch(out) -> int:
    return max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*.pt"))


def test_a_nan_mid_run_stops_keeps_the_last_good_checkpoint_and_resumes(cora_k8, tmp_path):
    """Rank 0's gradient allreduce returns NaN in epoch 5 (GRAPPA_FAULT ...::nan;
    rank 1 stays finite): exit 1, one line naming the epoch and --lr, no
    result.json, the checkpoints before it finite; --resume then finishes."""
    from grappa.checkpoint import load_latest

    out = tmp_path / "run"
    common = ["-m", "grappa.train", "--method", "grappa", "--data", cora_k8, "--out", out, "--epochs", 8,
              "--checkpoint-every", 2, "--repartition-every", 4, "--no-progress"]
    env = mpi_env()
    steps_per_epoch = 1  # full-graph: one gradient allreduce per epoch
    env["GRAPPA_FAULT"] = f"0:step:{5 * steps_per_epoch + 1}::nan"  # the allreduce of epoch 5
    r = subprocess.run([*local_mpirun(2), "python", *map(str, common)], env=env,
                       capture_output=True, text=True, timeout=300)
    one_error(r, 1, "training diverged in epoch", "--lr 0.01")
    assert not (out / "result.json").exists() and not (out / "best_model.pt").exists()
    epoch = _latest_checkpoint_epoch(out)
    assert 2 <= epoch <= 6, epoch
    ck = load_latest(out / "checkpoints")
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    logged = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(max(logged) + 1)) and max(logged) < 6  # no row for the diverged epoch
    r = run_mpi(2, *common, "--resume")
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "result.json").read_text())
    assert np.isfinite(result["test_metric"]) and result["epochs_run"] == 8  # the resumed state's epochs too
    logged = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(8))


@pytest.mark.parametrize("method,flags", [("random-tma", ["--average-every-steps", 5, "--steps-per-epoch", 5]),
                                          ("grappa", [])])
def test_a_nan_in_one_ranks_copy_ends_every_rank_in_that_epoch(cora_k8, tmp_path, method, flags):
    """Rank 0's parameters (its averaging's result, its gradient allreduce's) turn NaN in epoch 5
    and rank 1's stay finite: the flag that rides on the epoch's last collective
    (``Method.nonfinite_ranks``) ends both ranks there, with one error line and no result."""
    out = tmp_path / "run"
    env = mpi_env()
    env["GRAPPA_FAULT"] = "0:step:6::nan"  # the 6th training collective on rank 0: epoch 5's
    r = subprocess.run([*local_mpirun(2), "python", "-m", "grappa.train", "--method", method,
                        *map(str, flags), "--data", str(cora_k8), "--out", str(out), "--epochs", "8",
                        "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    one_error(r, 1, "training diverged in epoch 5", "--lr 0.01")
    assert not (out / "result.json").exists()
    logged = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(5))


# ------------------------------------------------- the partitioner's disk errors
@pytest.fixture(params=["full", "read-only"])
def small_fs(request, tmp_path):
    """A real 2 MB tmpfs, mounted read-only or left to fill up (root only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = "size=2m" + (",ro" if request.param == "read-only" else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield request.param, mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_the_partitioner_on_a_full_or_read_only_disk_is_one_line(cora_dir, small_fs):
    """Cora's node spill (15 MB of features) fills a 2 MB file system on
    whichever rank writes first; a read-only one refuses the temporary
    directory on rank 0. Before: tracebacks and MPI_ABORT, exit 1."""
    kind, mnt = small_fs
    r = run_mpi(2, PARTITION, "--data", cora_dir, "--out", mnt / "parts", "--num-chunks", 4, "--no-progress",
                timeout=180)
    line = one_error(r, 2, str(mnt), "No space left on device" if kind == "full" else "Read-only file system")
    assert "(fix: " in line
    assert list(mnt.iterdir()) == []  # nothing half-written, no temporary directory


# ------------------------------------------------- partitions a method is not meant for
def test_halo_on_a_random_partition_warns_once_naming_the_command(cora_dir, tmp_path):
    parts = tmp_path / "random-k2"
    assert run_mpi(2, PARTITION, "--data", cora_dir, "--out", parts, "--num-chunks", 2, "--no-progress").returncode == 0
    r = run_mpi(2, "-m", "grappa.train", "--method", "halo", "--data", parts, "--out", tmp_path / "run",
                "--epochs", 1, "--no-progress")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert "meant for a metis partition and this one is random" in warnings[0]
    assert "--method metis" in warnings[0] and "--num-chunks 2" in warnings[0]


# ------------------------------------------------------------ edge lists
def test_a_three_column_edge_list_names_the_line(tmp_path, capsys):
    """With an even count of ids, it used to import silently with wrong edges."""
    (tmp_path / "e.txt").write_text("src dst weight\n0 1 5\n1 2 7\n2 3 1\n3 0 2\n")
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    err = refused(importers_cli.main, ["edgelist", tmp_path / "e.txt", "--labels", tmp_path / "y.npy",
                                       "--out", tmp_path / "g"], capsys, "e.txt")
    assert "line 2 has 3 columns, expected 2" in err and "drop weights" in err
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------ job scripts
def _job(script, tmp_path, **env_vars) -> subprocess.CompletedProcess:
    """A job script run as a user would outside Slurm (no allocation, no Slurm config)."""
    env = {k: v for k, v in mpi_env().items() if not k.startswith("SLURM_") and k != "GRAPPA_ROOT"}
    env.update(SLURM_CONF=str(tmp_path / "no-slurm.conf"), **{k: str(v) for k, v in env_vars.items()})
    return subprocess.run(["bash", str(ROOT / "jobs" / script)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_a_job_outside_the_repository_names_grappa_root(tmp_path):
    r = _job("train_grappa.slurm", tmp_path)
    one_error(r, 2, f"GRAPPA_ROOT={tmp_path}", "set GRAPPA_ROOT")


@pytest.mark.parametrize("script,var", [("train_centralized.slurm", "DATA"), ("partition.slurm", "DATA"),
                                        ("train.slurm", "RAW"), ("train_grappa.slurm", "DATASET")])
def test_a_misspelt_input_is_refused_not_replaced_by_cora(tmp_path, script, var):
    typo = tmp_path / "work_data" / "my-grpah"
    r = _job(script, tmp_path, GRAPPA_ROOT=ROOT, **{var: typo})
    one_error(r, 2, f"{var}={typo}")
    assert not typo.exists()


def test_the_centralized_job_runs_outside_slurm(cora_dir, tmp_path):
    """It used to call srun always; outside an allocation it now starts the one rank with mpirun."""
    out = tmp_path / "run"
    r = _job("train_centralized.slurm", tmp_path, GRAPPA_ROOT=ROOT, DATA=cora_dir, EPOCHS=2, OUT=out)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "result.json").read_text())["epochs_run"] == 2


# ------------------------------------------------------------ Horovod's stall warning
def test_a_legal_time_mode_round_raises_no_stall_warning(cora_k8, tmp_path):
    """Ranks post the round's broadcast at its start and rank 0 answers T
    seconds later: Horovod used to warn "... which will cause deadlock" after
    60 s (here 2 s, set by the user) during a legal round. The stall check is
    now raised past the method's expected round time."""
    pytest.importorskip("horovod.torch")
    env = mpi_env()
    env["HOROVOD_STALL_CHECK_TIME_SECONDS"] = "2"
    cmd = [*local_mpirun(2), "python", "-m", "grappa.train", "--method", "random-tma",
           "--data", cora_k8, "--out", tmp_path / "run", "--backend", "horovod", "--average-every-seconds", 5,
           "--epochs", 1, "--no-progress"]
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "deadlock" not in r.stderr and "stalled" not in r.stderr.lower(), r.stderr
    assert os.path.exists(tmp_path / "run" / "result.json")
