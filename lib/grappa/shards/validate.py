"""grappa-validate: check a partitioned dataset completely.

Manifest schema, every file's size and SHA-256, each shard's schema and
ranges, node ids vs the node->chunk map, edge/degree consistency and totals.
Edges are read in blocks, so memory is bounded by the largest chunk's node
count, not its edge count. Any problem raises ``InputError`` naming the file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from grappa.cli_util import reports_input_errors
from grappa.errors import InputError
from grappa.graph.node_checks import NodeFiles, check_features, check_has_training_nodes, check_node_rows
from grappa.shards.format import SCHEMA, feature_dtype, load_manifest, open_shard_file, sha256_file


def validate_dataset(directory, check_checksums: bool = True) -> dict:
    """Every check, in order; the first problem raises ``InputError``. Returns the manifest."""
    m, problem, totals = validate_share(directory, 0, 1, check_checksums)
    if problem is not None:
        raise problem[1]
    check_totals(directory, m, totals)
    return m


def validate_share(directory, rank: int, size: int, check_checksums: bool = True):
    """Rank ``rank`` of ``size``'s share of ``validate_dataset``: the manifest,
    every file's presence and size and the node map everywhere (cheap); the
    checksum of file i and the checks of shard c only where i, c = rank mod
    size, so ranks that validate together each read 1/size of the bytes.
    Returns (manifest, first problem as (position in validation order,
    InputError) or None, [nodes, edges, training nodes] in its shards). A
    broken manifest raises at once (every rank finds it)."""
    d = Path(directory)
    m = load_manifest(d)
    n, k, files = m["num_nodes"], m["num_chunks"], m["files"]
    if len(m["chunks"]) != k:
        raise InputError(d / "manifest.json", f"lists {len(m['chunks'])} chunks, expected num_chunks={k}")
    totals, at = np.zeros(3, np.int64), 0  # at: the position of the check under way
    try:
        for at, entry in enumerate(files):
            _check_file(d / entry["name"], entry, check_checksums and at % size == rank)
        at = len(files)
        node_chunk = np.load(d / "node_chunk.npy", mmap_mode="r")
        if node_chunk.shape != (n,):
            raise InputError(d / "manifest.json", f"says num_nodes {n} but node_chunk.npy has shape "
                             f"{node_chunk.shape}: one of them was edited, or they come from different partitions",
                             "re-run the partitioner")
        for c in range(rank, k, size):
            at = len(files) + 1 + c
            totals += _check_chunk(d, m, c, node_chunk)
    except InputError as e:
        return m, (at, e), totals.tolist()
    return m, None, totals.tolist()


def check_totals(directory, m: dict, totals) -> None:
    """The shards' node, edge and training-node totals (summed over the shares)
    against the manifest; a dataset without training nodes is refused here as
    on import (``grappa.graph.node_checks``)."""
    nodes, edges, train = (int(t) for t in totals)
    if nodes != m["num_nodes"] or edges != m["num_edges"]:
        raise InputError(Path(directory) / "manifest.json", f"shards hold {nodes} nodes / {edges} edges, "
                         f"manifest says {m['num_nodes']} / {m['num_edges']}")
    check_has_training_nodes(NodeFiles.shard(directory), nodes, train)  # "DIR (nodes/split): ..."


def _check_file(p: Path, entry: dict, checksum: bool) -> None:
    if not p.is_file():
        raise InputError(p, "file listed in manifest.json is missing", "re-run the partitioner")
    if p.stat().st_size != entry["size"]:
        raise InputError(p, f"size {p.stat().st_size} differs from manifest ({entry['size']})",
                         "the file is truncated or changed; re-run the partitioner")
    if checksum and sha256_file(p) != entry["sha256"]:
        raise InputError(p, "SHA-256 differs from manifest.json", "the file is corrupt; re-run the partitioner")


def _check_chunk(d: Path, m: dict, c: int, node_chunk) -> tuple[int, int, int]:
    """One shard: (nodes, edges, training nodes)."""
    entry = m["chunks"][c]
    p = d / entry["file"]
    try:
        with open_shard_file(p) as f:
            nn, ne = _check_shard(p, f, c, entry, m["num_nodes"], node_chunk)
            _check_features(p, f, m, nn)
            train = _check_node_values(p, f, m)
    except (OSError, KeyError) as e:
        raise InputError(p, f"cannot read shard ({e})", "re-run the partitioner") from e
    return nn, ne, train


def _check_node_values(p: Path, f: h5py.File, m: dict) -> int:
    """The node checks import and training run (labels, split codes, finite
    features), features read in blocks; returns the shard's training nodes."""
    where, x = NodeFiles.shard(p), f["nodes/x"]
    rows = max(1024, (1 << 27) // max(x.dtype.itemsize * m["num_features"], 1))
    for lo in range(0, len(x), rows):
        check_features(where, x[lo:lo + rows])
    return check_node_rows(where, None, f["nodes/y"][()], f["nodes/split"][()], m["task"], m["num_classes"])


_EDGE_BLOCK = 1 << 20  # edges per read: validation memory stays bounded whatever the shard size


def _check_shard(p: Path, f: h5py.File, c: int, entry: dict, n: int, node_chunk) -> tuple[int, int]:
    """One shard's schema, node ids, edges (streamed in blocks) and degrees."""
    a = dict(f.attrs)
    if a.get("schema") != SCHEMA or int(a.get("chunk", -1)) != c:
        raise InputError(p, f"attribute schema/chunk is {a.get('schema')!r}/{a.get('chunk')}, "
                         f"expected {SCHEMA!r}/{c}")
    gid, deg = f["nodes/global_id"][()], f["nodes/in_degree"][()]
    dl_ds, src_ds, sch_ds = f["edges/dst_local"], f["edges/src_global"], f["edges/src_chunk"]
    nn, ne = len(gid), len(dl_ds)
    if nn != entry["num_nodes"] or ne != entry["num_edges"]:
        raise InputError(p, f"holds {nn} nodes / {ne} edges, manifest says {entry['num_nodes']} / "
                         f"{entry['num_edges']}")
    if nn and (np.any(np.diff(gid) <= 0) or gid[0] < 0 or gid[-1] >= n):
        raise InputError(p, "nodes/global_id is not sorted, unique and inside [0, N)")
    if nn and np.any(node_chunk[gid] != c):
        raise InputError(p, "nodes/global_id holds nodes that node_chunk.npy assigns to other chunks")
    counts, last = np.zeros(nn, np.int64), 0
    for lo in range(0, ne, _EDGE_BLOCK):
        dl = dl_ds[lo:lo + _EDGE_BLOCK]
        if dl.min() < 0 or dl.max() >= nn or dl[0] < last or np.any(np.diff(dl) < 0):
            raise InputError(p, "edges/dst_local out of range or not sorted")
        last = dl[-1]
        src = src_ds[lo:lo + _EDGE_BLOCK]
        if src.min() < 0 or src.max() >= n:
            raise InputError(p, "edges/src_global out of range [0, N)")
        if np.any(node_chunk[src] != sch_ds[lo:lo + _EDGE_BLOCK]):
            raise InputError(p, "edges/src_chunk disagrees with node_chunk.npy")
        counts += np.bincount(dl, minlength=nn)
    if not np.array_equal(counts, deg):
        raise InputError(p, "nodes/in_degree disagrees with the stored edges")
    for key in ("nodes/y", "nodes/split"):
        if len(f[key]) != nn:
            raise InputError(p, f"{key} has {len(f[key])} rows, expected {nn}")
    return nn, ne


def _check_features(p: Path, f: h5py.File, m: dict, nn: int) -> None:
    x, want = f["nodes/x"], feature_dtype(m)
    if x.shape != (nn, m["num_features"]) or x.dtype != want:
        raise InputError(p, f"nodes/x is {x.dtype}{list(x.shape)}, manifest.json says {want}[{nn}, "
                         f"{m['num_features']}]", "re-run the partitioner")


def build_parser():
    p = argparse.ArgumentParser(prog="grappa-validate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", help="partitioned dataset (manifest.json + chunk-*.h5)")
    p.add_argument("--no-checksums", action="store_true", help="skip SHA-256 (faster on huge datasets)")
    return p


@reports_input_errors
def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    m = validate_dataset(a.directory, check_checksums=not a.no_checksums)
    print(f"ok: {a.directory}: {m['num_chunks']} chunks, {m['num_nodes']} nodes, {m['num_edges']} edges "
          f"({m['method']}, seed {m['seed']})")


if __name__ == "__main__":
    main()
