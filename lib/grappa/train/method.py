"""The method interface: what every training method declares and implements.

A method is one class in one file of ``grappa/train/methods/``, registered
by name in ``grappa.train.registry`` (or, outside grappa, by
``@register_method`` in a ``GRAPPA_PLUGINS`` module). The shared loop (``grappa.train.loop``) runs it:

    for epoch in ...:
        if method.is_boundary(epoch): checkpoint     # the method's natural boundary
        loss = method.train_epoch(epoch)
        val, test = method.evaluate()                # every --eval-every epochs
    result.update(method.result_extra())

A subclass declares:

- ``name``, ``label`` (benchmark tables) and ``Options``: its own dataclass,
  from which ``grappa-train`` generates the method's flags and ``--help``
  section (``field(metadata={"help": ..., "choices": ...})``); a variant
  subclass (``grappa-uw``) sets other ``defaults`` for the same options.
- ``input``: ``"raw"`` (a raw graph directory) or ``"shards"`` (a partitioned
  dataset), and for shards the ``partition`` it expects (``"random"``,
  ``"metis"``, ``"metis-super"``) with ``chunks_per_rank_exact`` when it needs
  exactly one chunk per part; ``strict_partition`` makes another partition an
  error that names the ``data_prep/partition.py`` command to run.
- ``categories``: the byte categories its training traffic uses.
- ``world_size``: ``"one"`` (a single process) or ``"any"``;
  ``resume_any_world_size``: whether a checkpoint resumes with another P.
- for the benchmarks: ``bench_family`` and ``bench_flags`` (the flags
  ``bench/compare.py`` gives the family unless ``--method-args FAMILY=...``),
  ``fault_flags`` (``bench/fault_campaign.py``'s), and the hooks
  ``bench_runs`` (extra variants), ``bench_summary`` and ``bench_lines``
  (the method's own summary keys and analysis lines), ``budget_flags``
  (how it spends ``bench/compare.py --budget epochs=N|seconds=S``).

and implements ``train_epoch``, ``evaluate``, ``state_dict`` /
``load_state_dict`` (identical on every rank, saved once by rank 0) and, if
ranks hold different state (local optimizers), ``rank_state_dict`` /
``load_rank_state_dict`` (one file per rank).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from grappa.comm import Comm
from grappa.errors import InputError
from grappa.memory import PhasePeaks

EPOCHS_CAP = 10**6  # --epochs under a time budget: the budget, not the count, ends training


@dataclass
class NoOptions:
    """A method without options of its own."""


@dataclass
class ShardedData:
    """A partitioned dataset: its directory and manifest."""

    directory: Path
    manifest: dict

    @property
    def num_chunks(self) -> int:
        return int(self.manifest["num_chunks"])


class Method:
    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    defaults: ClassVar[dict] = {}  # a variant's option values (explicit flags still win)
    input: ClassVar[str] = "shards"  # "raw" | "shards"
    partition: ClassVar[str | None] = "random"
    strict_partition: ClassVar[bool] = False
    chunks_per_rank_exact: ClassVar[bool] = False  # K must equal the number of parts
    categories: ClassVar[tuple[str, ...]] = ("train_grad",)
    world_size: ClassVar[str] = "any"  # "one" | "any"
    stops_on_signal: ClassVar[bool] = True  # SIGUSR1/SIGTERM: checkpoint, exit 99 (requeue)
    resume_any_world_size: ClassVar[bool] = True
    full_graph_only: ClassVar[bool] = False  # refuses --batch-size (the halo exchange runs whole layers)
    rate_flags: ClassVar[tuple[str, ...]] = ("lr", "weight_decay")  # what a diverged run should lower
    provisional: bool = False  # evaluate() scores something other than the final model: not a best
    bench_family: ClassVar[str] = ""  # --method-args FAMILY=... of bench/compare.py reaches it (default: name)
    bench_flags: ClassVar[tuple[str, ...]] = ()  # bench/compare.py's flags for the family
    fault_flags: ClassVar[tuple[str, ...]] = ()  # bench/fault_campaign.py's (boundaries within a short run)
    has_repartition_phase: ClassVar[bool] = False  # grappa.faults' "repartition" fault point is on its path

    @classmethod
    def build_model(cls, cfg, in_dim: int, out_dim: int) -> torch.nn.Module:
        """The model this method trains (RETEXO stacks its own stages)."""
        from grappa.models import build_model

        try:
            return build_model(cfg.model, in_dim, cfg.hidden, out_dim, cfg.layers, cfg.dropout, cfg.heads,
                               cfg.residual, cfg.norm)
        except ValueError as e:
            raise InputError("--model", str(e),
                             "drop --residual and --norm, or choose gcn, sage, gat, gin or mlp") from None


    def __init__(self, cfg, comm: Comm, data, model: torch.nn.Module, optimizer, stop_flag=lambda: False):
        self.cfg, self.comm, self.data, self.model, self.opt = cfg, comm, data, model, optimizer
        self.opts = cfg.options if isinstance(cfg.options, self.Options) else self.make_options({})
        self.stop_flag = stop_flag
        self.start_step = 0  # set when resuming mid-epoch
        self.stop_pending = False  # a stop arrived on an epoch's last step
        self.finished = False  # the method ended training early (a time budget)
        # ranks whose loss or parameters went non-finite, when train_epoch's last collective (after its
        # last step) summed each rank's flag (grappa.train.loop.nonfinite); None: the loop asks the ranks
        self.nonfinite_ranks: int | None = None
        self.phases = PhasePeaks()  # peak RSS per phase; the CLI marks start-up as "setup"

    # ------------------------------------------------------------------ hooks
    def train_epoch(self, epoch: int) -> float:
        """One epoch of training; returns the mean loss (the same on every rank)."""
        raise NotImplementedError

    def evaluate(self) -> tuple[float, float]:
        """(validation, test) metric over the whole graph, the same on every rank."""
        raise NotImplementedError

    def is_boundary(self, epoch: int) -> bool:
        """True when a checkpoint is due before ``epoch`` (the method's natural boundary)."""
        return False

    @classmethod
    def parts_for(cls, options, world_size: int) -> int:
        """How many parts the partition must have (model averaging: P + dropped parts)."""
        return world_size

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refuse flags that do not go together for this method (an ``InputError``):
        called once the options are parsed, before anything is read or started."""
        if cls.full_graph_only and cfg.batch_size:
            raise InputError("--batch-size", f"--method {cfg.method} is full-graph training", "use --batch-size 0")

    @classmethod
    def expected_wait_s(cls, options) -> float:
        """The longest a rank may legitimately wait in one collective (a round of
        time-based averaging): the stall warning and --comm-timeout must exceed it."""
        return 0.0

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])

    def rank_state_dict(self) -> dict | None:
        """State that differs between ranks (None: nothing)."""
        return None

    def load_rank_state_dict(self, state: dict) -> None:
        pass

    def divergence_fix(self) -> str:
        """What to tell a user whose run diverged: the flags to lower, with their values."""
        values = [f"{flag(k)} {getattr(self.opts, k, getattr(self.cfg, k, None))}" for k in self.rate_flags]
        return (f"lower {' or '.join(values)} and start again; the last good checkpoint stays in "
                f"{self.cfg.out}/checkpoints")

    def result_extra(self) -> dict:
        """Method-specific keys for result.json."""
        return {}

    # ------------------------------------------------------ benchmark hooks
    @classmethod
    def family(cls) -> str:
        return cls.bench_family or cls.name

    @classmethod
    def budget_flags(cls, kind: str, value: float, layers: int) -> list[str]:
        """The grappa-train flags that spend a budget in this method's own terms
        (bench/compare.py --budget): ``kind`` "epochs" gives ``value`` epochs as
        the method counts them (its ``bench_flags`` say what one is), "seconds"
        gives ``value`` seconds of training and evaluation (``--time-budget``),
        ``--epochs`` then only a cap that is never reached."""
        if kind == "epochs":
            return ["--epochs", str(int(value))]
        return ["--time-budget", f"{value:g}", "--epochs", str(EPOCHS_CAP)]

    @classmethod
    def bench_runs(cls, flags: list[str], drop_parts: int = 0) -> list[tuple[str, str, list[str]]]:
        """(run id, table label, flags) of this method's runs in bench/compare.py."""
        return [(cls.name, cls.label, flags)]

    @classmethod
    def bench_summary(cls, runs: list[dict]) -> dict:
        """Keys of this method's own to add to its benchmark summary (from its result.json files)."""
        return {}

    @classmethod
    def bench_lines(cls, summary: dict, metric: str, predicted: dict) -> list[str]:
        """Analysis lines about this method for bench.md (``summary``: every method's, by label)."""
        return []

    # -------------------------------------------------------------- helpers
    @classmethod
    def make_options(cls, given: dict) -> Any:
        return cls.Options(**{**cls.defaults, **given})

    @classmethod
    def check_partition(cls, data: ShardedData, world_size: int, parts: int) -> str | None:
        """Raise an InputError naming the partition command when ``data`` does
        not fit this method at ``world_size`` ranks; return a warning (one line,
        naming the command) when it fits but is not the partition the method is
        meant for (halo exchange on random chunks runs exactly, sending several
        times the bytes), else None."""
        m = data.manifest
        k, method = data.num_chunks, m.get("method")
        want_k = parts if cls.chunks_per_rank_exact else max(parts, k)
        command = partition_command(m.get("graph", {}).get("source", "RAW_GRAPH_DIR"), cls.partition, want_k, then=True)
        wrong_method = method != cls.partition
        if k < parts or (cls.strict_partition and wrong_method) or (cls.chunks_per_rank_exact and k != parts):
            raise InputError(data.directory, f"--method {cls.name} on {world_size} ranks needs a "
                             f"{cls.partition} partition with {'exactly' if cls.chunks_per_rank_exact else 'at least'}"
                             f" {parts} chunks; this one is {method} with {k}", command)
        if wrong_method:
            return (f"{data.directory}: --method {cls.name} is meant for a {cls.partition} partition and this one is "
                    f"{method}: it runs, but its bytes and accuracy are not the method's own (fix: {command})")
        return None


def partition_command(raw, method: str, k: int, then: bool = False) -> str:
    """The data_prep/partition.py command that makes ``method`` with K = ``k``
    from the raw graph ``raw`` (``then``: and how to point --data at it)."""
    out = f"{Path(raw).as_posix().rstrip('/')}-{method}-k{k}"
    cmd = f"mpirun -np 2 python data_prep/partition.py --data {raw} --out {out} --num-chunks {k} --method {method}"
    return f"{cmd}, then --data {out}" if then else cmd


def raw_graph_hint(directory) -> InputError:
    d = Path(directory)
    if (d / "manifest.json").exists():
        return InputError(d, "this is a partitioned dataset; the method reads a raw graph",
                          "pass the raw graph directory it was partitioned from (manifest.json: graph.source)")
    return InputError(d, "no graph.json: not a raw graph directory", "create one with grappa-import or grappa-generate")


def shards_hint(directory, method: str, partition: str | None, parts: int) -> InputError:
    d = Path(directory)
    cmd = partition_command(d, partition or "random", parts)
    if (d / "graph.json").exists():
        return InputError(d, f"--method {method} reads a partitioned dataset and this is a raw graph",
                          f"partition it first: {cmd}")
    return InputError(d, "no manifest.json: not a partitioned dataset", f"partition a raw graph: {cmd}")


# --------------------------------------------------------- options <-> flags
def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option_flags(parser: argparse.ArgumentParser, groups: dict[type, list[str]]) -> dict[str, list[str]]:
    """One argument group per options dataclass, titled with the methods that
    read it; flags default to None so that 'given' is distinguishable. Returns
    field name -> methods that accept it."""
    accepted: dict[str, list[str]] = {}
    for options_cls, names in groups.items():
        fields = dataclasses.fields(options_cls)
        if not fields:
            continue
        g = parser.add_argument_group(f"--method {', '.join(names)}", (options_cls.__doc__ or "").strip())
        for f in fields:
            accepted.setdefault(f.name, []).extend(names)
            if len(accepted[f.name]) > len(names):
                continue  # shared with an earlier group: one flag
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kw: dict[str, Any] = {"default": None, "dest": f.name,
                                  "help": f"{f.metadata.get('help', '')} (default {default!r})"}
            if isinstance(default, bool):
                kw["action"] = argparse.BooleanOptionalAction
            elif isinstance(default, list):
                kw.update(nargs="+", type=type(default[0]) if default else str)
            else:
                kw["type"] = type(default)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            g.add_argument(flag(f.name), **kw)
    return accepted


def options_from_args(method_cls: type[Method], args: argparse.Namespace, accepted: dict[str, list[str]]):
    own = {f.name for f in dataclasses.fields(method_cls.Options)}
    given = {k: getattr(args, k) for k in accepted if getattr(args, k, None) is not None}
    stray = sorted(set(given) - own)
    if stray:
        f = flag(stray[0])
        raise InputError(f, f"applies to --method {', '.join(accepted[stray[0]])}, not to --method {method_cls.name}",
                         f"drop {f}")
    return method_cls.make_options(given)
