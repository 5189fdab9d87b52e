"""Atomic checkpoints: write to a temporary name, fsync, rename; keep the last N.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) and is
loaded with ``torch.load(weights_only=True)``: a checkpoint file can never
run code. It holds what every rank needs to continue identically: the
method's state (model, optimizer, ...; identical on every rank, so rank 0
saves one copy), the position (epoch, step), the loop's bookkeeping and the
configuration. A method whose ranks hold different state (local optimizers
between model averagings) also writes one ``.rankR`` file per rank, before
rank 0 writes the main file, which is the commit point. Randomness is derived
from (seed, epoch, rank, step), so most methods need no RNG state.

Each file has a ``.sha256`` beside it, written first: a latest checkpoint
that cannot be read, or whose bytes no longer match their recorded hash (a
bit flipped on disk, a copy cut short), falls back to the previous one, with
a warning naming the bad file.
"""
from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path

import torch

from grappa.atomic import atomic_write_bytes
from grappa.errors import InputError

_NAME = re.compile(r"ckpt-(\d{6})-(\d{6})\.pt$")

FORMAT = "grappa-checkpoint/1"  # a new number when the record's keys change meaning
RESERVED = ("format", "epoch", "step", "method", "world_size", "config", "dataset_id", "loop")


def training_record(*, epoch: int, step: int, method: str, world_size: int, config: dict, dataset_id: str,
                    loop: dict, state: dict) -> dict:
    """A training checkpoint: where the run stands (epoch, step, the loop's
    bookkeeping), what it was (method, ranks, configuration, dataset), and
    the method's own ``state`` (which may not use those keys)."""
    clash = set(state) & set(RESERVED)
    if clash:
        raise ValueError(f"a method's checkpoint state may not use the keys {sorted(clash)}")
    return {"format": FORMAT, "epoch": epoch, "step": step, "method": method, "world_size": world_size,
            "config": config, "dataset_id": dataset_id, "loop": loop, **state}


def check_record(ck: dict, path) -> None:
    """Refuse (``InputError``) a file that is not a training checkpoint of this format."""
    found = ck.get("format") if isinstance(ck, dict) else None
    if found != FORMAT:
        what = "has no checkpoint format tag" if found is None else f"has format {found!r}"
        raise InputError(path, f"{what}; this grappa reads {FORMAT}",
                         "resume with the grappa version that wrote it, or start afresh in another --out")


def _atomic_save(obj, path: Path, mid_write=None) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(_digest_path(path), hashlib.sha256(data).hexdigest().encode() + b"\n")  # first: the file commits
    try:
        if mid_write:  # fault injection (grappa.faults): fail with the digest written and the data not
            mid_write(path)
        atomic_write_bytes(path, data)
    except BaseException:
        _digest_path(path).unlink(missing_ok=True)  # a digest alone is harmless, but leave nothing
        raise


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def checkpoint_path(directory, epoch: int, step: int) -> Path:
    return Path(directory) / f"ckpt-{epoch:06d}-{step:06d}.pt"


def rank_path(main: Path, rank: int) -> Path:
    return main.with_name(f"{main.name}.rank{rank}")


def save_rank_state(directory, epoch: int, step: int, rank: int, state: dict) -> Path:
    """One rank's own state; call on every rank before ``save_checkpoint``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = rank_path(checkpoint_path(d, epoch, step), rank)
    _atomic_save(state, path)
    return path


def save_checkpoint(directory, state: dict, keep: int = 3, mid_write=None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(d, state["epoch"], state["step"])
    _atomic_save(state, path, mid_write)
    for old in list_checkpoints(d)[:-keep]:
        for f in [old, *old.parent.glob(old.name + ".*")]:  # rank files and digests
            f.unlink(missing_ok=True)
    return path


def list_checkpoints(directory) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(tuple(map(int, m.groups())), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path) -> dict:
    """Load one checkpoint file (no code runs: weights_only), checking its
    recorded SHA-256 when it has one (ValueError on a mismatch)."""
    data = Path(path).read_bytes()
    digest = _digest_path(Path(path))
    if digest.exists() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise ValueError(f"its bytes do not match {digest.name}")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_latest(directory) -> dict | None:
    """The newest readable checkpoint (``path`` added), or None."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state = load_checkpoint(path)
        except Exception as e:  # truncated, corrupt or not a plain-data checkpoint
            print(f"warning: {path}: cannot load checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                  "falling back to the previous one", file=sys.stderr)
            continue
        state["path"] = str(path)
        return state
    return None
