"""Atomic checkpoints: write to a temporary name, fsync, rename; keep the last N.

A checkpoint holds what every rank needs to continue identically: model and
optimizer state (replicas are identical under gradient allreduce, so rank 0
saves one copy), the position (epoch, step), the loop's bookkeeping and the
metrics so far. Randomness is derived from (seed, epoch, rank, step), so no
RNG state needs saving and a different world size resumes cleanly.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"ckpt-(\d{6})-(\d{6})\.pt$")


def save_checkpoint(directory, state: dict, keep: int = 3) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{state['epoch']:06d}-{state['step']:06d}.pt"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(d)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(directory) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(tuple(map(int, m.groups())), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(directory) -> dict | None:
    ckpts = list_checkpoints(directory)
    if not ckpts:
        return None
    return torch.load(ckpts[-1], weights_only=False)
