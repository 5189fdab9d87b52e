"""grappa-train: train a GNN with one of grappa's methods and write result.json.

    grappa-train --data data/cora --method centralized --model gcn --out runs/cora-gcn
    grappa-train --data data/cora --model sage --batch-size 64 --fanouts 10 10

Outputs in --out: result.json (summary), metrics.jsonl and metrics.csv (one
row per epoch: loss, metrics, time, bytes sent by category).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import time

import numpy as np
import torch

from grappa.atomic import prepare_output_dir
from grappa.cli_util import reports_input_errors
from grappa.comm import BACKENDS, make_comm
from grappa.comm.base import threads_per_rank
from grappa.errors import InputError
from grappa.models import MODELS, build_model
from grappa.train.centralized import CentralizedMethod
from grappa.train.config import TrainConfig
from grappa.train.data import load_graph
from grappa.train.evaluate import metric_name
from grappa.train.loop import build_result, run_epochs, write_result
from grappa.train.metrics_log import MetricsLog

METHODS = {"centralized": CentralizedMethod}


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="grappa-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph directory (grappa-import / grappa-generate)")
    p.add_argument("--out", default=d.out, help="output directory (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--method", default=d.method, choices=sorted(METHODS))
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
    return p


def config_from_args(a) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in fields})
    cfg.progress = not a.no_progress
    if cfg.layers < 1 or cfg.epochs < 1:
        raise InputError("--layers/--epochs", "must be at least 1")
    if cfg.batch_size and len(cfg.fanouts) < cfg.layers:
        raise InputError("--fanouts", f"needs one fan-out per layer ({cfg.layers}), got {cfg.fanouts}")
    return cfg


def run(cfg: TrainConfig) -> dict:
    t_start = time.perf_counter()
    data = load_graph(cfg.data)  # validates before anything is written
    out = prepare_output_dir(cfg.out, cfg.overwrite)
    comm = make_comm(cfg.backend)
    torch.set_num_threads(threads_per_rank())
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    info = data.info
    model = build_model(cfg.model, info.num_features, cfg.hidden, info.num_classes, cfg.layers,
                        cfg.dropout, cfg.heads)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    method = METHODS[cfg.method](cfg, comm, data, model, opt)
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
    comm.shutdown()
    return result


@reports_input_errors
def main(argv=None) -> None:
    cfg = config_from_args(build_parser().parse_args(argv))
    result = run(cfg)
    print(f"{result['method']} {result['model']} on {result['dataset']}: test {result['metric']} "
          f"{result['test_metric']:.4f} (val {result['val_metric']:.4f}, best epoch {result['best_epoch']}), "
          f"{result['epoch_time_s_median'] * 1000:.1f} ms/epoch -> {cfg.out}/result.json")


if __name__ == "__main__":
    main()
