"""Shard schema ``grappa-shard/1``: one HDF5 file per chunk of nodes.

Root attributes: schema, chunk, num_chunks, num_nodes (global), num_features,
num_classes, task, method, seed.

    nodes/global_id  int64[n]      sorted global ids of the chunk's nodes
    nodes/x          float32[n, F] (float16 where the manifest's feature_dtype says so)
    nodes/y          int64[n] (or float32[n, C] multilabel)
    nodes/split      uint8[n]       0 none, 1 train, 2 val, 3 test
    nodes/in_degree  int64[n]       global in-degree (= edges stored below)
    edges/dst_local  int64[m]       sorted; index into nodes/*
    edges/src_global int64[m]
    edges/src_chunk  int32[m]

Every edge whose destination is in the chunk is stored, sorted by
(dst_local, src_global), so a CSR by destination is one cumsum away.

A dataset directory holds ``manifest.json``, ``chunk-XXXXX.h5`` for each chunk
and ``node_chunk.npy`` (int32[N], node -> chunk).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from grappa.errors import InputError, load_json_file

SCHEMA = "grappa-shard/1"
# Feature dtypes a partition may store. float16 halves the features on disk
# and in every rank's memory; the models compute in float32 (each layer casts
# its input rows). bfloat16 is absent: NumPy and HDF5 have no such type.
FEATURE_DTYPES = ("float32", "float16")
MANIFEST_SCHEMA = "grappa-manifest/1"
_H5_CHUNK_ROWS = 1 << 16


# HDF5 2.0 caches up to 8 MiB of chunks per open dataset by default: a rank keeping its shards open
# (halo groups: all 16 of a 96M-edge graph) held 185 MB in those caches on a 24M-edge graph. Reads
# here are whole slabs, which bypass the cache; 1 MiB (HDF5 1.x's default) is plenty.
CHUNK_CACHE_BYTES = 1 << 20


def open_shard_file(path) -> h5py.File:
    """A shard opened for reading, with ``CHUNK_CACHE_BYTES`` of chunk cache per dataset."""
    return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES)


def shard_name(c: int) -> str:
    return f"chunk-{c:05d}.h5"


def _dataset(group, name, data, compression):
    rows = max(1, min(len(data), _H5_CHUNK_ROWS))
    chunks = (rows,) + tuple(data.shape[1:]) if len(data) else None
    if data.ndim == 2 and data.shape[1] == 0:
        chunks = None
    group.create_dataset(name, data=data, chunks=chunks, compression=compression)


class ShardWriter:
    """Write a shard incrementally: nodes first, then edges in (dst_local, src)
    order batch by batch, then the in-degree accumulated from those edges."""

    def __init__(self, path, attrs: dict, nodes: dict, num_edges: int, compression: str | None = None):
        self.f = h5py.File(path, "w")
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.f.attrs["schema"] = SCHEMA
        g = self.f.create_group("nodes")
        for k in ("global_id", "x", "y", "split"):
            _dataset(g, k, nodes[k], compression)
        self.n = len(nodes["global_id"])
        self.in_degree = np.zeros(self.n, np.int64)
        ge = self.f.create_group("edges")
        rows = max(1, min(num_edges, _H5_CHUNK_ROWS)) if num_edges else None
        self.edges = {k: ge.create_dataset(k, shape=(num_edges,), dtype=dt, chunks=(rows,) if rows else None,
                                           compression=compression)
                      for k, dt in (("dst_local", np.int64), ("src_global", np.int64), ("src_chunk", np.int32))}
        self.pos, self.m = 0, num_edges
        self._compression = compression

    def append_edges(self, dst_local, src_global, src_chunk) -> None:
        end = self.pos + len(dst_local)
        self.edges["dst_local"][self.pos:end] = dst_local
        self.edges["src_global"][self.pos:end] = src_global
        self.edges["src_chunk"][self.pos:end] = src_chunk
        self.in_degree += np.bincount(dst_local, minlength=self.n)
        self.pos = end

    def close(self) -> None:
        if self.pos != self.m:
            raise RuntimeError(f"shard got {self.pos} edges, expected {self.m}")
        _dataset(self.f["nodes"], "in_degree", self.in_degree, self._compression)
        self.f.close()


def write_shard(path, attrs: dict, nodes: dict, edges: dict, compression: str | None = None) -> None:
    """Write a whole in-memory shard (edges already sorted by dst_local)."""
    w = ShardWriter(path, attrs, nodes, len(edges["dst_local"]), compression)
    w.append_edges(edges["dst_local"], edges["src_global"], edges["src_chunk"])
    w.close()


def read_shard(path, with_features: bool = True, with_edges: bool = True) -> dict:
    path = Path(path)
    try:
        with open_shard_file(path) as f:
            out = {"attrs": dict(f.attrs)}
            for grp in ("nodes", "edges") if with_edges else ("nodes",):
                for k, d in f[grp].items():
                    if k == "x" and not with_features:
                        continue
                    out[f"{grp}/{k}"] = d[()]
            return out
    except (OSError, KeyError) as e:
        raise InputError(path, f"cannot read shard ({e})", "re-run the partitioner") from e


def sha256_file(path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(block):
            h.update(b)
    return h.hexdigest()


def load_manifest(directory) -> dict:
    path = Path(directory) / "manifest.json"
    m = load_json_file(path, MANIFEST_SCHEMA, "this is not a complete partitioned dataset; re-run the partitioner")
    names = [c.get("file") for c in m.get("chunks", [])] + [f.get("name") for f in m.get("files", [])]
    for name in names:
        # Shards live in the dataset directory: never read a file outside it.
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise InputError(path, f"shard file name {name!r} is not a plain name inside the dataset directory",
                             "restore manifest.json as the partitioner wrote it (or re-run the partitioner)")
    if m.get("feature_dtype", "float32") not in FEATURE_DTYPES:
        raise InputError(path, f"field 'feature_dtype' is {m.get('feature_dtype')!r}, expected one of "
                         f"{', '.join(FEATURE_DTYPES)}", "restore manifest.json as the partitioner wrote it")
    return m


def feature_dtype(manifest: dict) -> np.dtype:
    """The shards' feature dtype (manifests written before float16 shards: float32)."""
    return np.dtype(manifest.get("feature_dtype", "float32"))


def write_manifest(directory, manifest: dict) -> None:
    path = Path(directory) / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


__all__ = ["SCHEMA", "MANIFEST_SCHEMA", "shard_name", "ShardWriter", "write_shard", "read_shard", "sha256_file",
           "load_manifest", "write_manifest", "FEATURE_DTYPES", "feature_dtype", "open_shard_file"]
