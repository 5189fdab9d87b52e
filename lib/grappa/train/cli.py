"""grappa-train: train a GNN with one of grappa's methods and write result.json.

    grappa-train --data data/cora --method centralized --model gcn --out runs/cora-gcn
    grappa-train --data data/cora --model sage --batch-size 64 --fanouts 10 10
    mpirun -np 4 grappa-train --method grappa --data data/cora-k16 --out runs/cora-grappa
    mpirun -np 4 grappa-train --method random-tma --data data/cora-k16 --average-every-seconds 5

Methods (grappa.train.registry; each declares the input it reads):
{methods}
When the dataset does not fit the method, the error names the partition
command to run. Each method's own flags are in its section below.

Every method checkpoints at its natural boundary into OUT/checkpoints (and
at the end); --resume continues from the latest one (with another number of
ranks where the method allows it). SIGUSR1 or SIGTERM makes every rank of a
distributed method checkpoint after the current step and exit with status
99, which jobs/train_grappa.slurm turns into a requeue.

Outputs in --out: result.json (summary), metrics.jsonl and metrics.csv (one
row per epoch: loss, metrics, time, bytes sent by category).
"""
from __future__ import annotations

import argparse
import dataclasses

from grappa.cli_util import checked_everywhere, parse_args_once, reports_input_errors
from grappa.comm import BACKENDS
from grappa.comm.base import env_rank_size
from grappa.errors import InputError, check_options
from grappa.models import MODELS, NORMS
from grappa.train.config import OPTIMIZERS, TrainConfig
from grappa.train.evaluate import METRICS
from grappa.train.method import add_option_flags, options_from_args
from grappa.train.registry import METHODS, option_groups, resolve

# the programmatic driver lives in training_run; grappa.train.cli.run stays importable
from grappa.train.training_run import REQUEUE_EXIT, check_input, run  # noqa: F401


def methods_help() -> str:
    """One line a registered method: its name, what it reads, its class docstring's first line."""
    lines = []
    for name, cls in METHODS.items():
        reads = "a raw graph" if cls.input == "raw" else (
            f"{cls.partition} chunks, K {'=' if cls.chunks_per_rank_exact else '>='} P")
        doc = (cls.__doc__ or "").strip().splitlines()[0].rstrip(".") if cls.__doc__ else cls.label
        lines.append(f"  {name:<22} {doc} ({reads})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="grappa-train", description=__doc__.replace("{methods}", methods_help()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph or partitioned dataset directory (the method says which)")
    p.add_argument("--out", default=d.out, help="output directory (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--method", default=d.method, choices=list(METHODS))
    p.add_argument("--model", default=d.model, choices=list(MODELS))
    p.add_argument("--hidden", type=int, default=d.hidden, help="hidden width (GAT: per head)")
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--heads", type=int, default=d.heads, help="GAT attention heads")
    p.add_argument("--residual", action="store_true",
                   help="the heterophilous benchmark's blocks: input projection, then h + dropout(ReLU(conv(norm(h)))) "
                        "per layer, output projection (docs/METHODS.md, 'Models')")
    p.add_argument("--norm", default=d.norm, choices=NORMS,
                   help="normalisation before each conv, in the same blocks: layer (per node, exchanges nothing) or "
                        "batch (statistics of each rank's rows; running statistics averaged over ranks before "
                        "each evaluation); default %(default)s")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="sgd: plain SGD, no momentum")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="epochs; what one is depends on the method (its section of --help; default %(default)s)")
    p.add_argument("--time-budget", type=float, default=d.time_budget,
                   help="stop after the epoch in which this many seconds of training and evaluation have passed "
                        "(all ranks agree), evaluating it; 0 = --epochs only (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="seeds per mini-batch; 0 = full-graph")
    p.add_argument("--fanouts", type=int, nargs="+",
                   help="neighbours sampled per layer, one value per layer (default 10 for each layer)")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping (epochs); 0 = off")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--metric", default=d.metric, choices=METRICS,
                   help="auto: ROC-AUC for two-class and multilabel tasks (class 1 is positive), else accuracy")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                   help="centralized evaluation of models over edge lists (GAT): nodes per layer-wise inference "
                        "batch on graphs larger than this (models over a sparse adjacency run one no-grad forward)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backend", default=d.backend, choices=BACKENDS, help="communication backend")
    p.add_argument("--comm-timeout", type=float, default=d.comm_timeout,
                   help="seconds a collective waits for a silent peer before the job fails (gloo timeout, "
                        "Horovod stall shutdown; a dead rank is caught by the launcher at once; default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--checkpoint-keep", type=int, default=d.checkpoint_keep, help="checkpoints kept")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="epochs (rounds) between checkpoints, besides the method's own boundaries (repartitions, "
                        "stages, cycles), a stop signal and the end; 0 = only those (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(option_fields=add_option_flags(p, option_groups()))
    return p


def config_from_args(a) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"options"}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in fields and v is not None})
    if a.fanouts is None:
        cfg.fanouts = [10] * cfg.layers
    cfg.progress = not a.no_progress
    cfg.options = options_from_args(resolve(cfg.method), a, a.option_fields)
    validate_numbers(cfg)
    wait = resolve(cfg.method).expected_wait_s(cfg.options)
    if wait >= cfg.comm_timeout:  # the timeout would end a legal round as a hung rank
        raise InputError("--comm-timeout", f"must exceed the longest legitimate wait of --method {cfg.method} "
                         f"({wait:g} s: its averaging period), got {cfg.comm_timeout:g}",
                         f"raise --comm-timeout above {wait:g}, or average more often")
    resolve(cfg.method).check_config(cfg)
    if cfg.batch_size and len(cfg.fanouts) != cfg.layers:
        raise InputError("--fanouts", f"needs one fan-out per layer ({cfg.layers}), got {cfg.fanouts}",
                         f"give {cfg.layers} values, or leave --fanouts out for 10 per layer")
    return cfg


def validate_numbers(cfg: TrainConfig) -> None:
    """Every numeric flag at the boundary where it enters: one clear error, not a
    traceback later (``check_options`` also refuses NaN and infinity in every float)."""
    checks = [("--layers", cfg.layers >= 1, "at least 1"), ("--epochs", cfg.epochs >= 1, "at least 1"),
              ("--hidden", cfg.hidden >= 1, "at least 1"), ("--heads", cfg.heads >= 1, "at least 1"),
              ("--lr", cfg.lr > 0, "a positive number"),
              ("--weight-decay", cfg.weight_decay >= 0, "0 or more"),
              ("--dropout", 0 <= cfg.dropout < 1, "in [0, 1)"),
              ("--batch-size", cfg.batch_size >= 0, "0 (full-graph) or a positive number of seeds"),
              ("--fanouts", all(f > 0 or f == -1 for f in cfg.fanouts), "positive, or -1 for all neighbours"),
              ("--time-budget", cfg.time_budget >= 0, "0 (none) or more seconds"),
              ("--patience", cfg.patience >= 0, "0 (off) or more"), ("--eval-every", cfg.eval_every >= 1, "at least 1"),
              ("--eval-batch-size", cfg.eval_batch_size >= 1, "at least 1"),
              ("--checkpoint-keep", cfg.checkpoint_keep >= 1, "at least 1"),
              ("--checkpoint-every", cfg.checkpoint_every >= 0, "0 (only the method's boundaries) or more"),
              ("--comm-timeout", cfg.comm_timeout > 0, "a positive number of seconds")]
    check_options(cfg, checks)


@reports_input_errors
def main(argv=None) -> None:
    cfg = checked_everywhere(config_from_args, parse_args_once(build_parser(), argv))
    result = run(cfg)
    if env_rank_size()[0] != 0:
        return
    print(f"{result['method']} {result['model']} on {result['dataset']}: test {result['metric']} "
          f"{result['test_metric']:.4f} (val {result['val_metric']:.4f}, best epoch {result['best_epoch']}), "
          f"{result['epoch_time_s_median'] * 1000:.1f} ms/epoch -> {cfg.out}/result.json")


if __name__ == "__main__":
    main()
