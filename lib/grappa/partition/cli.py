"""grappa-partition: partition a raw graph into HDF5 chunk shards (run under MPI).

    mpirun -np 4 python data_prep/partition.py --data work_data/cora --out work_data/cora-k8 --num-chunks 8
    sbatch jobs/partition.slurm

Methods: random (streams; any size), metis and metis-super (METIS needs the
whole graph in ONE process's memory: use them for graphs that fit, and
--method random beyond). Output: manifest.json, chunk-XXXXX.h5, node_chunk.npy.
"""
from __future__ import annotations

import argparse
import sys

from grappa.cli_util import checked_everywhere
from grappa.errors import InputError, check_options
from grappa.partition.assignment import SCHEMES
from grappa.partition.partitioner import PartitionConfig, PeerFailed, partition
from grappa.plugins import load_plugins
from grappa.shards.format import FEATURE_DTYPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grappa-partition", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph directory")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--num-chunks", "-k", type=int, required=True, help="K chunks (usually >= training ranks)")
    p.add_argument("--method", default="random", choices=list(SCHEMES),
                   help=f"partition scheme: {', '.join(SCHEMES)} (random streams; the others hold the whole "
                        "graph in one process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--super-nodes", type=int, help="metis-super: number of METIS parts C (default max(16K, 1000))")
    p.add_argument("--memory-budget", type=int, default=1024, metavar="MB",
                   help="exchange buffers per rank before spilling to disk (default %(default)s MB)")
    p.add_argument("--compression", choices=["gzip", "lzf"], help="HDF5 compression (default none)")
    p.add_argument("--feature-dtype", choices=FEATURE_DTYPES, default="float32",
                   help="the shards' features: float16 halves them on disk and in every rank's memory "
                        "(training computes in float32); default float32")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--fail-after-shards", type=int, default=-1, help=argparse.SUPPRESS)  # fault injection (tests)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> None:
    try:
        load_plugins()  # partition schemes of GRAPPA_PLUGINS modules (grappa.plugins)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    a = build_parser().parse_args(argv)
    cfg = PartitionConfig(data=a.data, out=a.out, num_chunks=a.num_chunks, method=a.method, seed=a.seed,
                          super_nodes=a.super_nodes, memory_budget_mb=a.memory_budget, compression=a.compression,
                          feature_dtype=a.feature_dtype, overwrite=a.overwrite,
                          fail_after_shards=a.fail_after_shards, progress=not a.no_progress)
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    try:
        checked_everywhere(check_options, a, (
            ("--super-nodes", a.super_nodes is None or a.super_nodes >= a.num_chunks, "at least --num-chunks"),
            ("--memory-budget", a.memory_budget >= 1, "at least 1 (MB)")))
        m = partition(cfg)
    except InputError as e:
        # Errors every rank finds alike are reported by rank 0; any other by the one rank that raises it.
        if rank == 0 or not e.everywhere:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except PeerFailed:
        sys.exit(2)
    except Exception:
        # A bug or I/O failure on one rank: abort the whole job instead of
        # leaving the other ranks blocked in a collective (or in MPI_Finalize).
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
    if rank == 0:
        print(f"partitioned {m['graph']['name']}: {m['num_nodes']} nodes, {m['num_edges']} edges -> "
              f"{m['num_chunks']} chunks ({m['method']}), edge cut {m['edge_cut_fraction']:.3f}, "
              f"{m['created_by']['wall_s']:.1f} s on {m['created_by']['ranks']} ranks -> {a.out}")


if __name__ == "__main__":
    main()
