"""Method name -> class: the one place a method is registered.

    from grappa.train.registry import METHODS, resolve
    cls = resolve("random-tma")

A built-in method is one line of the table below; a method in its own module
outside grappa registers itself with ``@register_method`` and is loaded by
``GRAPPA_PLUGINS`` (grappa.plugins).

``grappa-train --method``, ``bench/compare.py --methods``, ``jobs/train.slurm``
and the contract test (tests/test_method_contract.py) all read this table.
"""
from __future__ import annotations

import dataclasses

from grappa.cli_util import reports_input_errors
from grappa.errors import InputError
from grappa.plugins import register
from grappa.train.method import Method
from grappa.train.methods.adaqp import AdaQP, AdaQPNoOverlap
from grappa.train.methods.averaging import PSGDPA, RandomTMA, SuperTMA
from grappa.train.methods.centralized import CentralizedMethod
from grappa.train.methods.grappa_authors import GrappaAuthors
from grappa.train.methods.grappa_method import GrappaFP, GrappaMethod, GrappaUW
from grappa.train.methods.halo_method import HaloMethod
from grappa.train.methods.llcg import LLCG
from grappa.train.methods.retexo import Retexo

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    CentralizedMethod,
    HaloMethod,
    GrappaMethod, GrappaUW, GrappaFP, GrappaAuthors,
    PSGDPA, RandomTMA, SuperTMA,
    LLCG,
    Retexo,
    AdaQP, AdaQPNoOverlap,
)}


# bench/compare.py: the default selection, the short names it accepts, and the exact distributed method
# every other is compared with ("vs halo")
BENCH_DEFAULT = ("centralized", "halo", "grappa", "grappa-uw", "grappa-fp")
ALIASES = {"uw": "grappa-uw", "fp": "grappa-fp"}
REFERENCE = "halo"
FAULT_DEFAULT = ("grappa",)  # bench/fault_campaign.py's default selection


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` known as ``--method cls.name``."""
    return register(METHODS, cls.name, cls, "method")


def resolve(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise InputError("--method", f"unknown method {name!r}", f"choose one of {', '.join(METHODS)}") from None


def option_groups() -> dict[type, list[str]]:
    """Options dataclass -> the methods that read it (one --help section each)."""
    groups: dict[type, list[str]] = {}
    for name, cls in METHODS.items():
        groups.setdefault(cls.Options, []).append(name)
    return groups


def partition_spec(name: str, ranks: int, drop_parts: int = 0, chunks_per_rank: int = 4) -> tuple[str, int] | None:
    """(partition method, K) that ``name`` trains on at ``ranks`` ranks; None for a raw graph."""
    cls = resolve(name)
    if cls.input == "raw":
        return None
    if drop_parts and "drop_parts" not in {f.name for f in dataclasses.fields(cls.Options)}:
        raise InputError("--drop-parts", f"--method {name} has no dropped parts", "drop it")
    parts = cls.parts_for(cls.make_options({"drop_parts": drop_parts} if drop_parts else {}), ranks)
    if cls.partition == "random" and not cls.chunks_per_rank_exact:
        return "random", max(chunks_per_rank * ranks, parts)
    return cls.partition, parts


@reports_input_errors
def main(argv=None) -> None:
    """python -m grappa.train.registry METHOD RANKS [DROP_PARTS]: print the
    partition the method needs ("random 16", "metis 4") or "raw" (job scripts)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("method", choices=list(METHODS))
    p.add_argument("ranks", type=int)
    p.add_argument("drop_parts", type=int, nargs="?", default=0)
    p.add_argument("--chunks-per-rank", type=int, default=4, help="K = this x P for random chunks")
    a = p.parse_args(argv)
    spec = partition_spec(a.method, a.ranks, a.drop_parts, a.chunks_per_rank)
    print("raw" if spec is None else f"{spec[0]} {spec[1]}")


if __name__ == "__main__":
    main()
