"""grappa-train: train a GNN with one of grappa's methods and write result.json.

    grappa-train --data data/cora --method centralized --model gcn --out runs/cora-gcn
    grappa-train --data data/cora --model sage --batch-size 64 --fanouts 10 10
    mpirun -np 4 grappa-train --method grappa --data data/cora-k16 --out runs/cora-grappa

--method centralized reads a raw graph (grappa-import / grappa-generate);
--method grappa reads a partitioned dataset (data_prep/partition.py);
--method halo (exact distributed full-graph training with halo exchange,
the reference) reads one partitioned with --method metis --num-chunks P.
A grappa run checkpoints at every super-epoch boundary into OUT/checkpoints;
--resume continues from the latest one (any number of ranks). SIGUSR1 or
SIGTERM makes every rank checkpoint after the current step and exit with
status 99, which jobs/train_grappa.slurm turns into a requeue.

Outputs in --out: result.json (summary), metrics.jsonl and metrics.csv (one
row per epoch: loss, metrics, time, bytes sent by category).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from grappa.atomic import prepare_output_dir
from grappa.checkpoint import load_latest, save_checkpoint
from grappa.cli_util import reports_input_errors
from grappa.comm import BACKENDS, ByteCounter, Comm, make_comm
from grappa.comm.base import env_rank_size, threads_per_rank
from grappa.errors import InputError
from grappa.models import MODELS, build_model
from grappa.partition.schedule import SCHEDULES
from grappa.train.centralized import CentralizedMethod
from grappa.train.config import TrainConfig
from grappa.train.data import load_graph
from grappa.train.evaluate import metric_name
from grappa.train.grappa_method import WEIGHTINGS, GrappaMethod, StopRequested
from grappa.train.halo_method import HaloMethod
from grappa.train.loop import LoopState, build_result, reset_peak_rss, run_epochs, write_result
from grappa.train.metrics_log import MetricsLog

METHODS = ("centralized", "grappa", "halo")
REQUEUE_EXIT = 99


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="grappa-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph directory (grappa-import / grappa-generate)")
    p.add_argument("--out", default=d.out, help="output directory (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--method", default=d.method, choices=METHODS)
    p.add_argument("--model", default=d.model, choices=MODELS)
    p.add_argument("--hidden", type=int, default=d.hidden, help="hidden width (GAT: per head)")
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--heads", type=int, default=d.heads, help="GAT attention heads")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="seeds per mini-batch; 0 = full-graph")
    p.add_argument("--fanouts", type=int, nargs="+", default=d.fanouts, help="neighbours sampled per layer")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping (epochs); 0 = off")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                   help="nodes per layer-wise inference batch (graphs larger than this use it)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backend", default=d.backend, choices=BACKENDS, help="communication backend")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("grappa")
    g.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help="chunk sets per super-epoch")
    g.add_argument("--repartition-every", type=int, default=d.repartition_every,
                   help="epochs per super-epoch (0 = never repartition)")
    g.add_argument("--weighting", default=d.weighting, choices=WEIGHTINGS, help="gradient aggregation weights")
    g.add_argument("--shrinkage-lambda", type=float, default=d.shrinkage_lambda)
    g.add_argument("--halo-hops", type=int, default=d.halo_hops, choices=[0, 1],
                   help="1: also read 1-hop halo features from shards (file I/O at repartition)")
    g.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    g.add_argument("--checkpoint-keep", type=int, default=d.checkpoint_keep)
    return p


def config_from_args(a) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in fields})
    cfg.progress = not a.no_progress
    if cfg.layers < 1 or cfg.epochs < 1:
        raise InputError("--layers/--epochs", "must be at least 1")
    if cfg.method == "halo" and cfg.batch_size:
        raise InputError("--batch-size", "--method halo is full-graph training", "use --batch-size 0")
    if cfg.batch_size and len(cfg.fanouts) < cfg.layers:
        raise InputError("--fanouts", f"needs one fan-out per layer ({cfg.layers}), got {cfg.fanouts}")
    return cfg


def run(cfg: TrainConfig, comm: Comm | None = None) -> dict:
    """Train as ``cfg`` says and return the result record. ``comm``: reuse an
    open communicator (several runs in one launch, as the benchmark does); it
    is left open and its byte counters restart from zero."""
    if comm is not None:
        comm.counter = ByteCounter()
        reset_peak_rss()
    if cfg.method in ("grappa", "halo"):
        return run_distributed(cfg, comm)
    t_start = time.perf_counter()
    data = load_graph(cfg.data)  # validates before anything is written
    out = prepare_output_dir(cfg.out, cfg.overwrite)
    own_comm = comm is None
    comm = comm or make_comm(cfg.backend)
    torch.set_num_threads(threads_per_rank())
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    info = data.info
    model = build_model(cfg.model, info.num_features, cfg.hidden, info.num_classes, cfg.layers,
                        cfg.dropout, cfg.heads)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    method = CentralizedMethod(cfg, comm, data, model, opt)
    if comm.rank == 0:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    log = MetricsLog(out, enabled=comm.rank == 0)
    try:
        st = run_epochs(cfg, comm, model, method.train_epoch, method.evaluate, log)
    finally:
        log.close()
    result = build_result(cfg, comm, st, info.name, metric_name(info.task), time.perf_counter() - t_start)
    if comm.rank == 0:
        write_result(out, result)
    if own_comm:
        comm.shutdown()
    return result


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


def run_distributed(cfg: TrainConfig, comm: Comm | None = None) -> dict:
    """Grappa or halo-exchange training on a partitioned dataset, under mpirun/srun."""
    import signal

    from grappa.shards.format import load_manifest
    from grappa.shards.validate import validate_dataset

    t_start = time.perf_counter()
    own_comm = comm is None
    comm = comm or make_comm(cfg.backend)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"

    def check():
        validate_dataset(cfg.data)
        if cfg.resume and load_latest(ckpt_dir) is None:
            raise InputError(ckpt_dir, "--resume given but no checkpoint found", "drop --resume to start fresh")
        if not cfg.resume:
            prepare_output_dir(out, cfg.overwrite)

    _agree_on_input(comm, check)
    manifest = load_manifest(cfg.data)
    torch.set_num_threads(threads_per_rank())
    torch.manual_seed(cfg.seed)  # identical initial replicas on every rank
    model = build_model(cfg.model, manifest["num_features"], cfg.hidden, manifest["num_classes"], cfg.layers,
                        cfg.dropout, cfg.heads)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    method_cls = GrappaMethod if cfg.method == "grappa" else HaloMethod
    method = method_cls(cfg, comm, cfg.data, manifest, model, opt, stop_flag=lambda: stop["flag"])
    state = LoopState()
    if cfg.resume:
        ck = load_latest(ckpt_dir)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["loop"]
        state.epoch = ck["epoch"]
        method.start_step = ck["step"]
    elif comm.rank == 0:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    comm.barrier()

    def checkpoint(epoch, step, st):
        if comm.rank == 0:
            save_checkpoint(ckpt_dir, {"epoch": epoch, "step": step, "model": model.state_dict(),
                                       "optimizer": opt.state_dict(), "loop": st, "config": cfg.to_dict(),
                                       "world_size": comm.size}, keep=cfg.checkpoint_keep)
        comm.barrier()

    log = MetricsLog(out, enabled=comm.rank == 0)
    try:
        st = run_epochs(cfg, comm, model, method.train_epoch, method.evaluate, log, state,
                        checkpoint=checkpoint, is_boundary=method.is_boundary,
                        stop_pending=lambda: method.stop_pending)
    except StopRequested:
        log.close()
        if own_comm:
            comm.shutdown()
        raise SystemExit(REQUEUE_EXIT) from None
    log.close()
    checkpoint(cfg.epochs, 0, st)  # the final state, so --resume after the end is a no-op
    extra = {}
    if cfg.method == "grappa":
        extra = dict(weighting=cfg.weighting, schedule=cfg.schedule, repartition_every=cfg.repartition_every,
                     switch_time_s_total=sum(method.switch_times))
    else:
        rows = comm.allreduce(torch.tensor([float(method.plan.rows_sent)], dtype=torch.float64), category="control")
        extra = dict(halo_rows_sent_per_layer_mean=float(rows[0]) / comm.size)
    result = build_result(cfg, comm, st, manifest["graph"]["name"], metric_name(manifest["task"]),
                          time.perf_counter() - t_start, num_chunks=manifest["num_chunks"],
                          partition_method=manifest["method"], **extra,
                          bytes_total_by_category=dict(comm.counter.bytes),
                          final_model_sha256=_state_digest(model))
    if comm.rank == 0:
        write_result(out, result)
        if st.best_state is not None:
            torch.save(st.best_state, out / "best_model.pt")
    if own_comm:
        comm.shutdown()
    return result


def _state_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


@reports_input_errors
def main(argv=None) -> None:
    cfg = config_from_args(build_parser().parse_args(argv))
    result = run(cfg)
    if env_rank_size()[0] != 0:
        return
    print(f"{result['method']} {result['model']} on {result['dataset']}: test {result['metric']} "
          f"{result['test_metric']:.4f} (val {result['val_metric']:.4f}, best epoch {result['best_epoch']}), "
          f"{result['epoch_time_s_median'] * 1000:.1f} ms/epoch -> {cfg.out}/result.json")


if __name__ == "__main__":
    main()
