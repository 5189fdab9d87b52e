"""grappa-import: convert a dataset to the raw layout.

    grappa-import planetoid datasets/cora --name cora --out data/cora
    grappa-import npz roman_empire.npz --out data/roman
    grappa-import musae path/to/facebook_page_page --name facebook --out data/fb
    grappa-import ogb path/to/ogbn_arxiv --undirected --out data/arxiv
    grappa-import edgelist edges.txt --features x.npy --labels y.npy --out data/g
"""
from __future__ import annotations

import argparse
from pathlib import Path

from grappa.atomic import atomic_dir
from grappa.cli_util import reports_input_errors
from grappa.errors import InputError, check_options
from grappa.graph.importers import IMPORT_OPTIONS, IMPORTERS
from grappa.graph.raw import RawGraph


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grappa-import", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", help=f"input format: {', '.join(IMPORTERS)}")
    p.add_argument("input", help="input file or directory")
    p.add_argument("--out", required=True, help="output directory (raw layout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--name", help="dataset name (planetoid: cora/citeseer/pubmed; musae: file prefix)")
    p.add_argument("--no-normalize", action="store_true", help="planetoid: keep raw (not row-normalised) features")
    p.add_argument("--split-index", type=int, default=0, help="npz: which of the stored splits to use")
    p.add_argument("--split-name", help="ogb: split sub-directory (default: the first)")
    p.add_argument("--label-column", help="musae: target column (default page_type/target)")
    p.add_argument("--undirected", action="store_true", help="ogb: also store reverse edges")
    p.add_argument("--directed", action="store_true", help="edgelist: keep edges one-way")
    p.add_argument("--num-nodes", type=int, help="edgelist: node count (default max id + 1)")
    p.add_argument("--features", help="edgelist: features .npy [N, F]")
    p.add_argument("--labels", help="edgelist: labels .npy [N]")
    p.add_argument("--seed", type=int, default=0, help="seed of random splits")
    return p


def run_import(a) -> None:
    if a.format not in IMPORTERS:
        raise InputError(a.input, f"unknown format {a.format!r}", f"choose one of {', '.join(IMPORTERS)}")
    check_options(a, (("--num-nodes", a.num_nodes is None or a.num_nodes >= 1, "at least 1"),))
    with atomic_dir(a.out, a.overwrite) as tmp:
        IMPORTERS[a.format](a.input, tmp, **IMPORT_OPTIONS[a.format](a))
        try:
            g = RawGraph(tmp).validate()
        except InputError as e:  # name the user's input, not the temporary file that is about to go
            raise InputError(a.input, f"the imported data is invalid: {e.problem} ({Path(e.path).name})",
                             e.fix) from None
    i = g.info
    print(f"imported {i.name}: {i.num_nodes} nodes, {i.num_edges} edges, {i.num_features} features, "
          f"{i.num_classes} classes -> {a.out}")


@reports_input_errors
def main(argv=None) -> None:
    run_import(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
