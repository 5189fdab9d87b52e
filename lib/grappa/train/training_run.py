"""One training run, as ``grappa-train`` runs it and as a program calls it:

    from grappa.train.training_run import run
    result = run(cfg)            # cfg: grappa.train.config.TrainConfig

checks the input on every rank (one agreed error), loads the data the method
reads, builds the model and the method, resumes from the latest checkpoint
when asked, runs the epochs (grappa.train.loop), checkpoints at the method's
boundaries and at the end, and writes result.json. A stop signal checkpoints
and exits with REQUEUE_EXIT (99), which the job scripts turn into a requeue.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from grappa.atomic import prepare_output_dir
from grappa.checkpoint import (
    check_record,
    load_checkpoint,
    load_latest,
    rank_path,
    save_checkpoint,
    save_rank_state,
    training_record,
)
from grappa.cli_util import checked_everywhere
from grappa.comm import ByteCounter, Comm, make_comm
from grappa.comm.base import MIN, threads_per_rank
from grappa.errors import InputError
from grappa.memory import freed_pages_kept, reset_peak_rss
from grappa.models import import_layers, remove_generated_sources
from grappa.shards.format import load_manifest
from grappa.shards.validate import check_totals, validate_share
from grappa.train.config import TrainConfig, make_optimizer
from grappa.train.data import load_graph
from grappa.train.evaluate import resolve_metric
from grappa.train.loop import LoopState, StopRequested, build_result, check_finite, run_epochs, write_result
from grappa.train.method import ShardedData, raw_graph_hint, shards_hint
from grappa.train.metrics_log import MetricsLog
from grappa.train.registry import partition_spec, resolve

REQUEUE_EXIT = 99


def _agree_on_input(comm, fn):
    """Run ``fn`` on rank 0; if it raises InputError, every rank raises it."""
    err = None
    if comm.rank == 0:
        try:
            fn()
        except InputError as e:
            err = e
    flag = comm.broadcast(torch.tensor([1.0 if err else 0.0]), 0, "control")
    if err:
        raise err
    if float(flag[0]):
        raise SystemExit(2)


def check_data_present(cfg: TrainConfig, cls, world_size: int) -> None:
    """The --data the method reads exists, or a hint at the command that makes it."""
    d = Path(cfg.data)
    if cls.input == "raw":
        if not (d / "graph.json").exists():
            raise raw_graph_hint(d)
    elif not (d / "manifest.json").exists():  # suggest what the job scripts would make (registry)
        raise shards_hint(d, cls.name, *partition_spec(cls.name, world_size, getattr(cfg.options, "drop_parts", 0)))


def validate_together(comm, directory) -> None:
    """``validate_dataset`` with checksums, shared by the ranks: each reads
    1/P of the shards (a start or requeue used to read them all on rank 0).
    Every rank raises on the first problem in validation order; the rank
    that found it reports it."""
    try:
        m, problem, totals = validate_share(directory, comm.rank, comm.size)
    except InputError as e:  # the manifest itself: every rank finds it
        m, problem, totals = None, (-1, e), [0, 0, 0]
    key = (problem[0] + 1) * comm.size + comm.rank if problem else float("inf")
    first = float(comm.allreduce(torch.tensor([key], dtype=torch.float64), MIN, "control")[0])
    if first != float("inf"):
        if key == first:
            raise problem[1]
        raise SystemExit(2)
    totals = comm.allreduce(torch.tensor(totals, dtype=torch.float64), category="control").tolist()
    checked_everywhere(check_totals, directory, m, totals)


def check_input(cfg: TrainConfig, cls, world_size: int) -> None:
    """Everything else that can be wrong with the input, before anything is written."""
    d = Path(cfg.data)
    if cls.input != "raw":
        warning = cls.check_partition(ShardedData(d, load_manifest(d)), world_size,
                                      cls.parts_for(cfg.options, world_size))
        if warning:  # rank 0 only (_agree_on_input): once per job
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    ckpt_dir = Path(cfg.out) / "checkpoints"
    if not cfg.resume:
        prepare_output_dir(cfg.out, cfg.overwrite or _left_by_a_failed_run(Path(cfg.out)))
        return
    ck = load_latest(ckpt_dir)
    if ck is None:
        raise InputError(ckpt_dir, "--resume given but no checkpoint found", "drop --resume to start fresh")
    check_record(ck, ck["path"])
    if ck.get("method", cfg.method) != cfg.method:
        raise InputError(ck["path"], f"checkpoint of --method {ck['method']}, not {cfg.method}",
                         f"resume with --method {ck['method']} or choose another --out")
    if ck.get("dataset_id", dataset_id(d)) != dataset_id(d):
        raise InputError(ck["path"], f"checkpoint of another dataset than {d} (its manifest or graph.json differs)",
                         "resume with the --data it was trained on, or choose another --out")
    for key in MODEL_KEYS:
        if ck["config"].get(key) != getattr(cfg, key):
            raise InputError(ck["path"], f"checkpoint has --{key} {ck['config'].get(key)}, this run "
                             f"{getattr(cfg, key)}", f"resume with --{key} {ck['config'].get(key)}")
    if not cls.resume_any_world_size and ck["world_size"] != world_size:
        raise InputError(ck["path"], f"--method {cls.name} resumes only on the {ck['world_size']} ranks that "
                         f"wrote it, not {world_size}", f"launch with -np {ck['world_size']}")


MODEL_KEYS = ("model", "hidden", "layers", "heads")


def _left_by_a_failed_run(out: Path) -> bool:
    """An --out holding only what a run that failed before its first checkpoint
    writes (metrics, a half-written checkpoint's digest): reusable without
    --overwrite, since nothing in it can be resumed or reported."""
    if not out.is_dir():
        return False
    ours = {"metrics.jsonl", "metrics.csv", "tensorboard", "checkpoints"}
    ckpt = out / "checkpoints"
    return ({p.name for p in out.iterdir()} <= ours and
            (not ckpt.is_dir() or all(p.name.startswith(("ckpt-", ".ckpt-")) and not p.name.endswith(".pt")
                                      for p in ckpt.iterdir())))


def dataset_id(directory) -> str:
    """SHA-256 of the dataset's manifest.json (shards) or graph.json (raw graph)."""
    import hashlib

    d = Path(directory)
    f = d / "manifest.json" if (d / "manifest.json").exists() else d / "graph.json"
    return hashlib.sha256(f.read_bytes()).hexdigest()


def _install_stop_handlers() -> dict:
    import signal

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def run(cfg: TrainConfig, comm: Comm | None = None) -> dict:
    """Train as ``cfg`` says and return the result record. ``comm``: reuse an
    open communicator (several runs in one launch, as the benchmark does); it
    is left open and its byte counters restart from zero."""
    if comm is not None:
        comm.counter = ByteCounter()
        reset_peak_rss()
    t_start = time.perf_counter()
    cls = resolve(cfg.method)
    if cfg.options is None:
        cfg.options = cls.make_options({})
    own_comm = comm is None
    if own_comm:
        import_layers()  # before the communicator starts (grappa.models.import_layers says why)
    comm = comm or make_comm(cfg.backend, cfg.comm_timeout, cls.expected_wait_s(cfg.options))
    out, ckpt_dir = Path(cfg.out), Path(cfg.out) / "checkpoints"
    _agree_on_input(comm, lambda: check_data_present(cfg, cls, comm.size))
    if cls.input != "raw":
        validate_together(comm, cfg.data)
    _agree_on_input(comm, lambda: check_input(cfg, cls, comm.size))
    data, dims, name, task, extra = _load_data(cls, cfg)
    cfg.metric = checked_everywhere(resolve_metric, cfg.metric, task, dims[1])  # every rank reads the same data
    torch.set_num_threads(threads_per_rank())
    torch.manual_seed(cfg.seed)  # identical initial replicas on every rank
    np.random.seed(cfg.seed)
    model = cls.build_model(cfg, dims[0], dims[1])
    remove_generated_sources(model)  # a method's own convs (stage-wise models) too
    opt = make_optimizer(cfg, model.parameters())
    stop = _install_stop_handlers() if cls.stops_on_signal else {"flag": False}
    method = cls(cfg, comm, data, model, opt, stop_flag=lambda: stop["flag"])
    state = _resume(method, ckpt_dir, comm.rank) if cfg.resume else LoopState()
    phases = method.phases
    phases.mark("setup")  # imports, data, model, the method's own set-up, the resumed state
    _start_output(out, cfg.resume, comm)

    def checkpoint(epoch, step, st):
        _save(method, cfg, comm, ckpt_dir, epoch, step, st)

    log = MetricsLog(out, enabled=comm.rank == 0)
    if cfg.resume:
        log.keep_before(state.epoch)
    try:
        with freed_pages_kept():  # epochs reuse each other's freed pages instead of faulting them in again
            st = run_epochs(cfg, comm, method, log, state, checkpoint=checkpoint)
    except StopRequested:
        log.close()
        if own_comm:
            comm.shutdown()
        raise SystemExit(REQUEUE_EXIT) from None
    log.close()
    with phases.phase("checkpoint"):
        checkpoint(cfg.epochs, 0, st)  # the final state, so --resume after the end is a no-op
    result = build_result(cfg, comm, st, name, cfg.metric, time.perf_counter() - t_start,
                          method_label=cls.label, train_categories=list(cls.categories), **extra,
                          **method.result_extra(), bytes_total_by_category=dict(comm.counter.bytes),
                          final_model_sha256=_state_digest(model), phases=phases)
    _write_outputs(out, comm, result, st)
    if own_comm:
        comm.shutdown()
    return result


def _write_outputs(out: Path, comm: Comm, result: dict, st: LoopState) -> None:
    """result.json and the best-validation model, by rank 0."""
    if comm.rank == 0:
        write_result(out, result)
        if st.best_state is not None:
            torch.save(st.best_state, out / "best_model.pt")


def _start_output(out: Path, resume: bool, comm: Comm) -> None:
    """A fresh run starts from an empty ``out`` (a resumed one keeps its
    checkpoints and metrics); every rank waits until it exists."""
    if not resume and comm.rank == 0:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    comm.barrier()


def _load_data(cls, cfg: TrainConfig):
    """(data, (features, classes), dataset name, task, result keys) for the method's input."""
    if cls.input == "raw":
        data = load_graph(cfg.data)
        info = data.info
        return data, (info.num_features, info.num_classes), info.name, info.task, {}
    data = ShardedData(Path(cfg.data), load_manifest(cfg.data))
    m = data.manifest
    return (data, (m["num_features"], m["num_classes"]), m["graph"]["name"], m["task"],
            dict(num_chunks=m["num_chunks"], partition_method=m["method"]))


def _save(method, cfg, comm, ckpt_dir: Path, epoch: int, step: int, st: LoopState) -> None:
    """Per-rank state first (if any), then rank 0's main file: the commit point.
    Non-finite parameters are never saved: a checkpoint at an epoch's start
    follows the loop's check of the epoch before; a stop mid-epoch (``step``
    > 0) comes before it, so it is checked here."""
    if step:
        check_finite(comm, method, epoch, 0.0)
    mine = method.rank_state_dict()
    if mine is not None:
        save_rank_state(ckpt_dir, epoch, step, comm.rank, mine)
        comm.barrier()
    if comm.rank == 0:
        record = training_record(epoch=epoch, step=step, method=cfg.method, world_size=comm.size,
                                 config=cfg.to_dict(), dataset_id=dataset_id(cfg.data), loop=st.to_dict(),
                                 state=method.state_dict())
        save_checkpoint(ckpt_dir, record, keep=cfg.checkpoint_keep,
                        mid_write=lambda path: comm.fault_point("checkpoint", path))
    else:
        comm.fault_point("checkpoint")
    comm.barrier()


def _resume(method, ckpt_dir: Path, rank: int) -> LoopState:
    ck = load_latest(ckpt_dir)
    method.load_state_dict(ck)
    if method.rank_state_dict() is not None:
        method.load_rank_state_dict(load_checkpoint(rank_path(Path(ck["path"]), rank)))
    method.start_step = ck["step"]
    state = LoopState.from_dict(ck["loop"])
    state.epoch = ck["epoch"]
    return state


def _state_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()
