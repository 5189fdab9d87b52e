"""grappa-generate: synthetic graphs in the raw layout, streamed in blocks.

    grappa-generate rmat --scale 20 --out data/rmat20
    grappa-generate sbm --num-nodes 100000 --avg-degree 20 --out data/sbm100k
"""
from __future__ import annotations

import argparse
import dataclasses

from tqdm import tqdm

from grappa.atomic import atomic_dir
from grappa.cli_util import reports_input_errors
from grappa.graph.generators import RMATConfig, SBMConfig, generate_rmat, generate_sbm


def _add_dataclass_args(p: argparse.ArgumentParser, cls) -> None:
    for f in dataclasses.fields(cls):
        if f.name in ("split",):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            typ = {"int": int, "float": float}.get(str(f.type), type(f.default))
            p.add_argument(flag, type=typ, default=f.default, help=f"(default {f.default})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grappa-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    for name, cls in (("rmat", RMATConfig), ("sbm", SBMConfig)):
        s = sub.add_parser(name, help=f"{name.upper()} graph")
        s.add_argument("--out", required=True)
        s.add_argument("--overwrite", action="store_true")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_dataclass_args(s, cls)
    return p


@reports_input_errors
def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    cls, gen = (RMATConfig, generate_rmat) if a.kind == "rmat" else (SBMConfig, generate_sbm)
    cfg = cls(**{f.name: getattr(a, f.name) for f in dataclasses.fields(cls) if hasattr(a, f.name)})
    total = (1 << cfg.scale) * cfg.edge_factor if a.kind == "rmat" else 2 * int(cfg.num_nodes * cfg.avg_degree / 2)
    with atomic_dir(a.out, a.overwrite) as tmp, tqdm(total=total, unit="edge", unit_scale=True,
                                                     disable=a.quiet, desc=a.kind) as bar:
        info = gen(cfg, tmp, progress=bar.update)
    print(f"generated {info.name}: {info.num_nodes} nodes, {info.num_edges} edges -> {a.out}")


if __name__ == "__main__":
    main()
