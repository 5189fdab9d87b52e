"""The epoch loop shared by every method: steps, evaluation, early stopping,
best-validation model, metrics, byte accounting and the result record.

A method (``grappa.train.method.Method``) supplies ``train_epoch(epoch) ->
float`` (mean loss), ``evaluate() -> (val_metric, test_metric)`` and
``is_boundary(epoch)`` (a checkpoint is due); the loop does the rest.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from grappa.atomic import atomic_write_bytes
from grappa.comm import MAX, Comm
from grappa.errors import Diverged
from grappa.memory import PhasePeaks
from grappa.train.config import TrainConfig
from grappa.train.metrics_log import MetricsLog

# What counts as training traffic; every method sends only in these categories.
TRAIN_CATEGORIES = ("train_grad", "train_feat", "train_act_grad", "train_param", "train_embed", "train_assign")


class StopRequested(Exception):
    """A rank got SIGUSR1/SIGTERM: every rank stops after the same step."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"stop requested at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


@dataclass
class LoopState:
    epoch: int = 0
    best_val: float = -math.inf
    best_epoch: int = -1
    test_at_best: float = float("nan")
    best_state: dict | None = None
    epoch_times: list = field(default_factory=list)
    eval_times: list = field(default_factory=list)  # each distributed evaluation's wall time
    train_bytes: dict = field(default_factory=dict)
    train_comm_s: dict = field(default_factory=dict)  # seconds inside training's communication calls (this rank)
    train_rounds: int = 0  # latency rounds of those calls (grappa.comm.base)
    since_best: int = 0
    elapsed_s: float = 0.0  # training + evaluation time so far (what "time to accuracy" uses)
    stopped_early: str = ""  # "time budget" | "method" | "patience": why training ended before --epochs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LoopState:
        return cls(**d)


def run_epochs(cfg: TrainConfig, comm: Comm, method, log: MetricsLog, state: LoopState | None = None,
               checkpoint: Callable[[int, int, LoopState], None] | None = None) -> LoopState:
    """Run ``method``'s epochs from ``state.epoch``. ``checkpoint(epoch, step,
    state)`` is called at every boundary the method declares (before it
    repartitions) and when the method raises ``StopRequested``, which then
    propagates."""
    phases = method.phases
    st = state or LoopState()
    bar = tqdm(range(st.epoch, cfg.epochs), desc=f"{cfg.method}/{cfg.model}", unit="epoch",
               disable=not cfg.progress or comm.rank != 0, initial=st.epoch, total=cfg.epochs)
    first = st.epoch
    for epoch in bar:
        periodic = cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0
        if checkpoint and epoch != first and (method.is_boundary(epoch) or periodic):
            with phases.phase("checkpoint"):
                checkpoint(epoch, 0, st)  # checkpoint barrier, then the method repartitions
        before = _training_comm(comm)
        t0 = time.perf_counter()
        elapsed0 = st.elapsed_s
        try:
            with phases.phase("train"):
                loss = method.train_epoch(epoch)
        except StopRequested as stop:
            st.epoch = stop.epoch
            if checkpoint:
                checkpoint(stop.epoch, stop.step, st)
            raise
        check_finite(comm, method, epoch, loss)
        dt = time.perf_counter() - t0
        st.epoch_times.append(dt)
        sent, comm_s = _add_training_comm(st, before, _training_comm(comm))
        row = {"epoch": epoch, "loss": loss, "epoch_time_s": dt, "comm_time_s": comm_s, "bytes": sent}
        out_of_time = cfg.time_budget > 0 and comm.allreduce_object_max(elapsed0 + dt) >= cfg.time_budget
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1 or method.finished or out_of_time:
            evaluate(cfg, method, st, row, epoch)
            bar.set_postfix(loss=f"{loss:.4f}", val=f"{row['val_metric']:.4f}", best_test=f"{st.test_at_best:.4f}")
        st.elapsed_s = elapsed0 + time.perf_counter() - t0
        row["elapsed_s"] = st.elapsed_s
        if comm.rank == 0:
            log.log(row)
        st.epoch = epoch + 1
        if method.stop_pending:  # stop arrived on the epoch's last step
            if checkpoint:
                checkpoint(epoch + 1, 0, st)
            raise StopRequested(epoch + 1, 0)
        if method.finished or out_of_time or (cfg.patience and st.since_best >= cfg.patience):
            st.stopped_early = "time budget" if out_of_time else "method" if method.finished else "patience"
            break
    bar.close()
    return st


def evaluate(cfg: TrainConfig, method, st: LoopState, row: dict, epoch: int) -> None:
    """Evaluate ``method`` after ``epoch``: the scores into ``row``, the best-validation model into ``st``."""
    t_eval = time.perf_counter()
    with method.phases.phase("eval"):
        sync_norm_statistics(method.comm, method.model)
        val, test = method.evaluate()
    st.eval_times.append(time.perf_counter() - t_eval)
    row.update(val_metric=val, test_metric=test, eval_time_s=st.eval_times[-1])
    if method.provisional:  # not the final model (RETEXO's earlier stages): readers of the curve skip it
        row["provisional"] = True
    if val > st.best_val and not method.provisional:
        st.best_val, st.best_epoch, st.test_at_best = val, epoch, test
        st.best_state = copy.deepcopy(method.model.state_dict())
        st.since_best = 0
    else:
        st.since_best += cfg.eval_every


def sync_norm_statistics(comm: Comm, model: torch.nn.Module) -> None:
    """Batch norm's running statistics, averaged over the ranks before an
    evaluation (``eval`` bytes): each rank gathered its own over the rows it
    trained on, and the evaluation must use one model. Nothing without batch norm."""
    bufs = [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var) if b is not None]
    if not bufs or comm.size == 1:
        return
    mean = comm.allreduce(torch.cat([b.reshape(-1) for b in bufs]), category="eval") / comm.size
    for b, v in zip(bufs, mean.split([b.numel() for b in bufs])):
        b.copy_(v.view_as(b))


def _training_comm(comm: Comm) -> tuple[dict, dict, int]:
    """Training's bytes and seconds by category and its latency rounds, so far."""
    c = comm.counter
    return ({k: v for k, v in c.bytes.items() if k.startswith("train")},
            {k: v for k, v in c.seconds.items() if k.startswith("train")},
            sum(v for k, v in c.rounds.items() if k.startswith("train")))


def _add_training_comm(st: LoopState, before: tuple, after: tuple) -> tuple[dict, float]:
    """Add one epoch's training communication to ``st``; returns (its bytes by category, its seconds)."""
    sent = {k: v - before[0].get(k, 0) for k, v in after[0].items() if v - before[0].get(k, 0)}
    for k, v in sent.items():
        st.train_bytes[k] = st.train_bytes.get(k, 0) + v
    spent = {k: v - before[1].get(k, 0.0) for k, v in after[1].items()}
    for k, v in spent.items():
        st.train_comm_s[k] = st.train_comm_s.get(k, 0.0) + v
    st.train_rounds += after[2] - before[2]
    return sent, sum(spent.values())


def nonfinite(model: torch.nn.Module, loss: float) -> bool:
    """This rank's loss or parameters hold NaN or infinity."""
    return not math.isfinite(loss) or not all(bool(torch.isfinite(p).all()) for p in model.parameters())


def check_finite(comm: Comm, method, epoch: int, loss: float) -> None:
    """Raise ``Diverged`` on every rank when any rank's loss or parameters are
    NaN or infinite (ranks of local-training methods hold their own
    parameters, and a fault may strike one rank's copy: one control scalar
    lets them agree, unless the epoch's own last collective already carried
    each rank's flag: ``method.nonfinite_ranks``). Before the epoch is logged
    or evaluated, so no checkpoint or result holds the bad state."""
    bad = nonfinite(method.model, loss)
    agreed, method.nonfinite_ranks = method.nonfinite_ranks, None
    if agreed is None:  # no flag rode on the epoch's collectives: ask the ranks
        agreed = comm.allreduce_object_max(1.0 if bad else 0.0)
    if agreed > 0 or bad:
        what = f"the loss is {loss}" if not math.isfinite(loss) else "the parameters hold NaN or infinity"
        raise Diverged(epoch, what + ("" if bad else " on another rank"), method.divergence_fix())


def build_result(cfg: TrainConfig, comm: Comm, st: LoopState, dataset: str, metric: str,
                 wall_s: float, phases: PhasePeaks | None = None, **extra) -> dict:
    epochs_run = max(len(st.epoch_times), 1)
    unknown = set(st.train_bytes) - set(TRAIN_CATEGORIES)
    if unknown:
        raise ValueError(f"training bytes in unregistered categories {sorted(unknown)}: add them to TRAIN_CATEGORIES")
    # Ranks can send different amounts (halo exchange): report the mean and the max over ranks.
    n = len(TRAIN_CATEGORIES)  # [bytes by category, seconds by category]
    mine = torch.tensor([float(st.train_bytes.get(c, 0)) for c in TRAIN_CATEGORIES]
                        + [st.train_comm_s.get(c, 0.0) for c in TRAIN_CATEGORIES], dtype=torch.float64)
    mean = comm.allreduce(mine, category="control") / comm.size
    mx = comm.allreduce(torch.stack([mine[:n].sum(), mine[n:].sum()]), MAX, "control")
    by_cat = {c: float(v) / epochs_run for c, v in zip(TRAIN_CATEGORIES, mean[:n].tolist()) if v}
    phases = phases or PhasePeaks()
    rss = comm.allreduce(torch.tensor([phases.overall(), *phases.vector()], dtype=torch.float64), MAX, "control")
    result = {
        "method": cfg.method, "model": cfg.model, "dataset": dataset, "world_size": comm.size,
        "backend": comm.name, "epochs": cfg.epochs, "epochs_run": len(st.epoch_times), "seed": cfg.seed,
        "metric": metric, "test_metric": st.test_at_best, "val_metric": st.best_val,
        "best_epoch": st.best_epoch, "stopped_early": st.stopped_early, "elapsed_s": st.elapsed_s,
        "train_bytes_per_rank_per_epoch": sum(by_cat.values()),
        "train_bytes_per_rank_per_epoch_max": float(mx[0]) / epochs_run,
        "train_bytes_per_rank_per_epoch_by_category": by_cat,
        "train_bytes_by_category": st.train_bytes,  # this rank (rank 0), whole run
        # measured seconds inside training's communication calls per epoch (waits for slower ranks included)
        "comm_time_s_per_epoch": float(mean[n:].sum()) / epochs_run,
        "comm_time_s_per_epoch_max": float(mx[1]) / epochs_run,
        "comm_time_s_per_epoch_by_category": {c: float(v) / epochs_run for c, v in zip(
            TRAIN_CATEGORIES, mean[n:].tolist()) if v},
        "train_rounds_per_epoch": st.train_rounds / epochs_run,  # rank 0's
        "eval_bytes_total": comm.counter.bytes.get("eval", 0),
        "epoch_time_s_median": statistics.median(st.epoch_times) if st.epoch_times else 0.0,
        "train_time_s_total": sum(st.epoch_times),
        "eval_time_s_median": statistics.median(st.eval_times) if st.eval_times else 0.0,
        "wall_s": wall_s, "peak_rss_mb_max": float(rss[0]),
        "peak_rss_mb_by_phase": {k: float(v) for k, v in zip(phases.ORDER, rss[1:].tolist()) if v},
        "mode": "mini-batch" if cfg.batch_size else "full-graph",
        "config": cfg.to_dict(),
    }
    result.update(extra)
    return result


def write_result(out_dir, result: dict) -> None:
    atomic_write_bytes(f"{out_dir}/result.json", (json.dumps(result, indent=2) + "\n").encode())
