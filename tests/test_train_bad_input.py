"""grappa-train refuses bad flags and mismatched resumes with one clear line,
exit status 2, and no output directory."""
from __future__ import annotations

import shutil

import pytest
from conftest import run_cli

BAD_FLAGS = [(["--lr", "-0.1"], "--lr"), (["--lr", "0"], "--lr"), (["--hidden", "0"], "--hidden"),
             (["--dropout", "1.5"], "--dropout"), (["--batch-size", "-8"], "--batch-size"),
             (["--batch-size", "8", "--fanouts", "10", "-3"], "--fanouts"), (["--eval-every", "0"], "--eval-every"),
             (["--heads", "0"], "--heads"), (["--epochs", "0"], "--epochs"),
             (["--repartition-every", "-3", "--method", "grappa"], "--repartition-every"),
             (["--shrinkage-lambda", "7", "--method", "grappa"], "--shrinkage-lambda"),
             (["--assign-cycle", "0", "--method", "adaqp"], "--assign-cycle"),
             (["--variance-weight", "1.5", "--method", "adaqp"], "--variance-weight"),
             (["--average-every-seconds", "0", "--method", "random-tma"], "--average-every-seconds")]


@pytest.mark.parametrize("flags,named", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_refused_where_it_enters(cora_dir, tmp_path, flags, named):
    from grappa.errors import InputError
    from grappa.train.cli import build_parser, config_from_args

    with pytest.raises(InputError) as e:
        config_from_args(build_parser().parse_args(["--data", str(cora_dir), "--out", str(tmp_path), *flags]))
    assert str(e.value).startswith(named)


@pytest.mark.parametrize("flags,named", [BAD_FLAGS[0], BAD_FLAGS[-1]], ids=["lr", "average-every-seconds"])
def test_bad_flag_through_the_cli_is_one_line_and_exit_2(cora_dir, tmp_path, flags, named):
    out = tmp_path / "out"
    r = run_cli("grappa.train", "--data", cora_dir, "--out", out, "--no-progress", *flags)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith(f"error: {named}"), r.stderr
    assert not out.exists()


def test_resume_with_another_model_or_dataset_is_refused(cora_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("grappa.train", "--data", cora_dir, "--out", out, "--epochs", 2, "--no-progress").returncode == 0
    r = run_cli("grappa.train", "--data", cora_dir, "--out", out, "--epochs", 4, "--resume", "--hidden", 32)
    assert r.returncode == 2 and "--hidden 16" in r.stderr and "ckpt-" in r.stderr
    other = tmp_path / "other"
    shutil.copytree(cora_dir, other)
    (other / "graph.json").write_text((other / "graph.json").read_text().replace('"cora"', '"cora-b"'))
    r = run_cli("grappa.train", "--data", other, "--out", out, "--epochs", 4, "--resume")
    assert r.returncode == 2 and "another dataset" in r.stderr
    r = run_cli("grappa.train", "--data", cora_dir, "--out", out, "--epochs", 4, "--resume", "--method", "halo")
    assert r.returncode == 2 and "raw graph" in r.stderr  # halo reads shards: the input check comes first


def test_resume_from_a_checkpoint_of_another_format_is_refused(cora_dir, tmp_path):
    """An old or foreign file in checkpoints/: one line naming it and the format, exit 2, the file kept."""
    import torch
    from grappa.checkpoint import FORMAT, list_checkpoints

    out = tmp_path / "out"
    assert run_cli("grappa.train", "--data", cora_dir, "--out", out, "--epochs", 2, "--no-progress").returncode == 0
    latest = list_checkpoints(out / "checkpoints")[-1]
    for fmt in ("grappa-checkpoint/0", None):
        ck = torch.load(latest, weights_only=True)
        ck.pop("format") if fmt is None else ck.update(format=fmt)
        torch.save(ck, latest)
        latest.with_name(latest.name + ".sha256").unlink(missing_ok=True)  # not a corrupt file: another format
        r = run_cli("grappa.train", "--data", cora_dir, "--out", out, "--epochs", 4, "--resume")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert latest.name in r.stderr and FORMAT in r.stderr and (fmt or "no checkpoint format") in r.stderr
        assert latest.exists()


@pytest.mark.parametrize("name", ["../outside.h5", "/etc/passwd", "sub/chunk.h5", ".."])
def test_manifest_file_names_must_stay_inside_the_dataset(cora_k8, tmp_path, name):
    import json

    d = tmp_path / "data"
    shutil.copytree(cora_k8, d)
    m = json.loads((d / "manifest.json").read_text())
    m["chunks"][1]["file"] = name
    (d / "manifest.json").write_text(json.dumps(m))
    r = run_cli("grappa.shards.validate", d)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "manifest.json" in r.stderr and repr(name) in r.stderr


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_ranks_share_the_validation_and_report_the_first_problem_once(cora_k8, tmp_path):
    """At a start, rank r checksums and checks the shards c = r mod P (rank 0
    used to read them all); the first problem in validation order is
    reported once, by the rank that found it, and every rank exits 2."""
    from conftest import run_mpi
    from grappa.shards.validate import validate_dataset, validate_share

    d = tmp_path / "data"
    shutil.copytree(cora_k8, d)
    for c in (6, 3):
        _flip_a_byte(d / f"chunk-0000{c}.h5")
    found = [validate_share(d, r, 4)[1] for r in range(4)]
    assert [p is not None for p in found] == [False, False, True, True]  # chunk 6 on rank 2, chunk 3 on rank 3
    assert all("SHA-256" in str(p[1]) for p in found if p)
    with pytest.raises(Exception, match="chunk-00003.h5"):  # the same first problem as one process finds
        validate_dataset(d)
    r = run_mpi(4, "-m", "grappa.train", "--method", "grappa", "--data", d, "--out", tmp_path / "run",
                "--epochs", 1, "--no-progress")
    assert r.returncode == 2 and r.stderr.count("error:") == 1, r.stderr
    assert "chunk-00003.h5: SHA-256 differs" in r.stderr and not (tmp_path / "run").exists()
