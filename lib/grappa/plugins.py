"""Extensions from outside the package: ``GRAPPA_PLUGINS=mod1,mod2`` names
modules that every grappa command imports before it reads a registry, so a
method, model, partition scheme or importer defined in its own file (and
registered there with one decorator line) is known to ``grappa-train``,
``grappa-partition``, ``grappa-import``, the job scripts and the benchmarks,
on every rank, with no edit to grappa itself:

    # my_method.py, on PYTHONPATH
    from grappa.train.registry import register_method
    from grappa.train.methods.grappa_method import GrappaMethod

    @register_method
    class MyMethod(GrappaMethod):
        name = "my-method"

    GRAPPA_PLUGINS=my_method mpirun -np 4 grappa-train --method my-method ...

The four registries: ``grappa.train.registry.register_method``,
``grappa.models.register_model``, ``grappa.partition.assignment.register_scheme``
and ``grappa.graph.importers.register_importer``.
"""
from __future__ import annotations

import importlib
import os

from grappa.errors import InputError

_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the modules ``GRAPPA_PLUGINS`` names (once each)."""
    for name in filter(None, (m.strip() for m in os.environ.get("GRAPPA_PLUGINS", "").split(","))):
        if name in _loaded:
            continue
        _loaded.add(name)
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise InputError("GRAPPA_PLUGINS", f"cannot import plugin module {name!r}: {e}",
                             "put the module on PYTHONPATH, or remove it from GRAPPA_PLUGINS") from None


def register(table: dict, name: str, thing, what: str):
    """Add ``thing`` to ``table`` under ``name``, refusing a name already taken."""
    if name in table and table[name] is not thing:
        raise ValueError(f"{what} {name!r} is registered twice ({table[name]!r} and {thing!r})")
    table[name] = thing
    return thing
