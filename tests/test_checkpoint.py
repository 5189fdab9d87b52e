"""Checkpoints are plain data: loading never runs code, and an unreadable or
altered latest checkpoint falls back to the previous one, naming the bad file."""
from __future__ import annotations

import os

import torch
from conftest import MakesAFile
from grappa.checkpoint import list_checkpoints, load_latest, save_checkpoint, save_rank_state


def _state(epoch):
    return {"epoch": epoch, "step": 0, "model": {"w": torch.full((3,), float(epoch))}}


def test_truncated_latest_falls_back_to_previous(tmp_path, capsys):
    for e in (1, 2):
        save_checkpoint(tmp_path, _state(e))
    latest = list_checkpoints(tmp_path)[-1]
    latest.write_bytes(latest.read_bytes()[:100])
    ck = load_latest(tmp_path)
    assert ck["epoch"] == 1 and torch.equal(ck["model"]["w"], torch.ones(3))
    assert str(latest) in capsys.readouterr().err


def test_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    save_checkpoint(tmp_path, _state(1))
    victim = tmp_path / "created-by-unpickling"
    bad = tmp_path / "ckpt-000002-000000.pt"
    torch.save({"epoch": 2, "step": 0, "model": MakesAFile(str(victim))}, bad)
    ck = load_latest(tmp_path)
    assert not victim.exists()
    assert ck["epoch"] == 1 and str(bad) in capsys.readouterr().err


def test_keep_removes_old_rank_files_too(tmp_path):
    for e in range(1, 5):
        save_rank_state(tmp_path, e, 0, 1, {"optimizer": {"x": e}})
        save_checkpoint(tmp_path, _state(e), keep=2)
    names = sorted(n for n in os.listdir(tmp_path) if not n.endswith(".sha256"))
    assert names == ["ckpt-000003-000000.pt", "ckpt-000003-000000.pt.rank1",
                     "ckpt-000004-000000.pt", "ckpt-000004-000000.pt.rank1"]
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".sha256")) == sorted(n + ".sha256" for n in names)


def test_a_flipped_byte_falls_back_to_previous(tmp_path, capsys):
    for e in (1, 2):
        save_checkpoint(tmp_path, _state(e))
    latest = list_checkpoints(tmp_path)[-1]
    data = bytearray(latest.read_bytes())
    at = data.index(torch.full((3,), 2.0).numpy().tobytes())  # the tensor's bytes: still a loadable file
    data[at] ^= 0x01
    latest.write_bytes(bytes(data))
    assert torch.load(latest, weights_only=True)["epoch"] == 2  # torch alone would not notice
    ck = load_latest(tmp_path)
    assert ck["epoch"] == 1
    err = capsys.readouterr().err
    assert str(latest) in err and "sha256" in err
