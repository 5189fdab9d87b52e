"""Importers: known dataset formats -> the raw layout (see ``grappa.graph.raw``).

Each importer writes into an existing (temporary) directory; the CLI wraps it
in ``atomic_dir`` and validates the result before the rename.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from grappa.errors import InputError
from grappa.graph.csr import dedup_edges, to_undirected
from grappa.graph.npy_stream import NpyAppender
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, GraphInfo, random_split, write_raw
from grappa.graph.safe_pickle import load_planetoid_pickle
from grappa.graph.text_blocks import numeric_blocks
from grappa.plugins import register

# format -> importer(input, out, **options); IMPORT_OPTIONS: format -> (grappa-import's parsed arguments ->
# those options). An importer in a module of its own registers itself with
# ``@register_importer("format", options)`` (loaded by GRAPPA_PLUGINS, grappa.plugins).
IMPORTERS: dict[str, Callable] = {}
IMPORT_OPTIONS: dict[str, Callable] = {}


def register_importer(name: str, options: Callable = lambda a: {"name": a.name}):
    """Function decorator: make ``fn(input, out, **options(args))`` known as ``grappa-import name``."""
    def add(fn):
        register(IMPORTERS, name, fn, "importer")
        IMPORT_OPTIONS[name] = options
        return fn
    return add


def _need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(path, "file is missing")
    return path


def _check_rows(path, arr_rows: int, num_nodes: int, what: str) -> None:
    if arr_rows != num_nodes:
        raise InputError(path, f"{what} has {arr_rows} rows but the graph has {num_nodes} nodes",
                         "features, labels and node ids must describe the same nodes")


def _check_ids(path, ids: np.ndarray, num_nodes: int) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= num_nodes):
        bad = ids[(ids < 0) | (ids >= num_nodes)][0]
        raise InputError(path, f"node id {int(bad)} out of range [0, {num_nodes})",
                         "node ids must be 0..N-1; pass --num-nodes if N is larger")


def _row_normalize(x: np.ndarray) -> np.ndarray:
    s = x.sum(1, keepdims=True)
    s[s == 0] = 1
    return (x / s).astype(np.float32)


# ---------------------------------------------------------------- Planetoid
def _planetoid_test_index(path: Path, num_test: int, first: int) -> np.ndarray:
    """The test nodes' ids: one per row of ``tx``, distinct, after the ``allx`` rows
    (a file cut short would otherwise import silently as different data)."""
    text = path.read_text()
    tokens = text.split()
    if not all(t.isdigit() for t in tokens):
        raise InputError(path, "holds something other than non-negative integer node ids",
                         "restore the file from the Planetoid release")
    idx = np.array([int(t) for t in tokens], dtype=np.int64)
    distinct, ends = len(np.unique(idx)), text.endswith("\n")
    if len(idx) != num_test or not ends or distinct != len(idx) or (len(idx) and idx.min() < first):
        raise InputError(path, f"lists {len(idx)} test nodes ({distinct} distinct, the file "
                         f"{'ends' if ends else 'does not end'} with a newline) but tx has "
                         f"{num_test} rows, to be numbered from {first}: the file is cut short or altered",
                         "restore it from the Planetoid release")
    return idx


@register_importer("planetoid", lambda a: {"name": a.name or "cora", "normalize": not a.no_normalize})
def import_planetoid(root, out, name: str = "cora", normalize: bool = True) -> GraphInfo:
    """Planetoid pickles (ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}), public split.

    Follows PyG's ``read_planetoid_data`` so results match the literature;
    features are row-normalised unless ``normalize=False``.
    """
    import scipy.sparse as sp

    root = Path(root)
    objs = {}
    for key in ("x", "tx", "allx", "y", "ty", "ally", "graph"):
        objs[key] = load_planetoid_pickle(_need(root / f"ind.{name}.{key}"))
    idx_path = _need(root / f"ind.{name}.test.index")

    def dense(m):
        return m.toarray() if sp.issparse(m) else np.asarray(m)

    tx, allx = dense(objs["tx"]), dense(objs["allx"])  # ind.x is a subset of allx
    y, ty, ally = (np.asarray(objs[k]) for k in ("y", "ty", "ally"))
    test_index = _planetoid_test_index(idx_path, len(tx), len(allx))
    sorted_test = np.sort(test_index)
    if name == "citeseer":  # isolated test nodes are missing from tx/ty
        full = sorted_test[-1] - sorted_test[0] + 1
        tx_ext = np.zeros((full, tx.shape[1]), tx.dtype)
        tx_ext[sorted_test - sorted_test[0]] = tx
        ty_ext = np.zeros((full, ty.shape[1]), ty.dtype)
        ty_ext[sorted_test - sorted_test[0]] = ty
        tx, ty = tx_ext, ty_ext
    feats = np.concatenate([allx, tx]).astype(np.float32)
    labels = np.concatenate([ally, ty]).argmax(1).astype(np.int64)
    feats[test_index] = feats[sorted_test]
    labels[test_index] = labels[sorted_test]
    n = feats.shape[0]

    graph = objs["graph"]
    keys = np.fromiter(graph.keys(), dtype=np.int64, count=len(graph))
    lens = np.fromiter((len(v) for v in graph.values()), dtype=np.int64, count=len(graph))
    src = np.repeat(keys, lens)
    dst = np.fromiter((u for v in graph.values() for u in v), dtype=np.int64, count=int(lens.sum()))
    _check_ids(root / f"ind.{name}.graph", np.concatenate([src, dst]), n)
    src, dst = to_undirected(src, dst)

    split = np.zeros(n, np.uint8)
    split[np.arange(len(y))] = SPLIT_TRAIN
    split[np.arange(len(y), len(y) + 500)] = SPLIT_VAL
    split[sorted_test] = SPLIT_TEST
    info = GraphInfo(name=name, num_nodes=n, num_edges=len(src), num_features=feats.shape[1],
                     num_classes=int(labels.max()) + 1,
                     provenance={"format": "planetoid", "source": str(root), "split": "public",
                                 "features": "row-normalized" if normalize else "raw"})
    write_raw(out, info, src, dst, _row_normalize(feats) if normalize else feats, labels, split)
    return info


# ---------------------------------------------------------------- npz (heterophilous benchmark)
def _npz_split(path: Path, masks: dict, split_index: int, n: int) -> np.ndarray:
    """Split codes from [S, N] (or [N]) masks, split ``split_index``, every shape checked."""
    if set(masks) != {"train", "val", "test"}:
        raise InputError(path, f"has masks for {sorted(masks)} only", "store train_masks, val_masks and test_masks")
    split = np.zeros(n, np.uint8)
    for code, k in ((SPLIT_TRAIN, "train"), (SPLIT_VAL, "val"), (SPLIT_TEST, "test")):
        m = np.asarray(masks[k])
        if m.ndim not in (1, 2) or m.shape[-1] != n:
            raise InputError(path, f"{k}_masks has shape {m.shape}; expected [S, {n}] or [{n}] for {n} nodes")
        if m.ndim == 2 and not 0 <= split_index < m.shape[0]:
            raise InputError("--split-index", f"{split_index} is out of range: {path.name} holds {m.shape[0]} "
                             "splits", f"choose 0 to {m.shape[0] - 1}")
        split[(m[split_index] if m.ndim == 2 else m).astype(bool)] = code
    return split


@register_importer("npz", lambda a: {"split_index": a.split_index, "name": a.name})
def import_npz(path, out, split_index: int = 0, name: str | None = None) -> GraphInfo:
    """The heterophilous-graphs benchmark's npz: node_features, node_labels,
    edges [E, 2] (undirected, once each), {train,val,test}_masks [S, N]."""
    path = _need(Path(path))
    try:
        z = np.load(path)
        missing = {"node_features", "node_labels", "edges"} - set(z.files)
        if missing:
            raise InputError(path, f"missing arrays {sorted(missing)}",
                             "expected keys node_features, node_labels, edges, train_masks, val_masks, test_masks")
        x = z["node_features"].astype(np.float32)
        y = z["node_labels"]
        edges = z["edges"].astype(np.int64)
        masks = {k: z[f"{k}_masks"] for k in ("train", "val", "test") if f"{k}_masks" in z.files}
    except (ValueError, OSError, EOFError) as e:  # zipfile errors subclass these
        raise InputError(path, f"cannot read npz ({e}); the file may be truncated") from e
    except Exception as e:
        if isinstance(e, InputError):
            raise
        raise InputError(path, f"cannot read npz ({type(e).__name__}: {e})") from e
    n = x.shape[0]
    _check_rows(path, len(y), n, "node_labels")
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise InputError(path, f"field 'edges' has shape {edges.shape}, expected [E, 2]")
    _check_ids(path, edges.ravel(), n)
    src, dst = to_undirected(edges[:, 0], edges[:, 1])
    split = _npz_split(path, masks, split_index, n) if masks else random_split(n, seed=split_index)
    multilabel = y.ndim == 2
    info = GraphInfo(name=name or path.stem, num_nodes=n, num_edges=len(src), num_features=x.shape[1],
                     num_classes=int(y.shape[1] if multilabel else y.max() + 1),
                     task="multilabel" if multilabel else "multiclass",
                     provenance={"format": "npz", "source": str(path), "split_index": split_index})
    write_raw(out, info, src, dst, x, y, split)
    return info


# ---------------------------------------------------------------- MUSAE (CSV + JSON)
def _write_binary_features(path: Path, rows: np.ndarray, cols: np.ndarray, n: int, dim: int,
                           block: int = 4096) -> None:
    """A dense float32 (n, dim) matrix with ones at (rows, cols), written in
    row blocks so the dense matrix is never whole in memory (22k x 4.7k
    floats for Facebook)."""
    x = np.lib.format.open_memmap(path, "w+", np.float32, (n, dim))
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    bounds = np.searchsorted(rows, np.arange(0, n + block, block))
    for b, lo in enumerate(range(0, n, block)):
        blk = np.zeros((min(block, n - lo), dim), np.float32)
        sl = slice(bounds[b], bounds[b + 1])
        blk[rows[sl] - lo, cols[sl]] = 1.0
        x[lo:lo + len(blk)] = blk
    x.flush()


@register_importer("musae", lambda a: {"name": a.name or "facebook", "label_column": a.label_column,
                                       "seed": a.seed})
def import_musae(root, out, name: str, label_column: str | None = None, seed: int = 0) -> GraphInfo:
    """MUSAE: <name>_edges.csv (id_1,id_2), <name>_target.csv, <name>.json
    ({node: [feature ids]}, sparse binary). No standard split: random 60/20/20."""
    import csv

    root = Path(root)
    edges_path = _need(root / f"{name}_edges.csv")
    target_path = _need(root / f"{name}_target.csv")
    feat_path = _need(root / f"{name}.json")
    with open(target_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(target_path, "no rows")
    cols = list(rows[0])
    col = label_column or next((c for c in ("page_type", "target") if c in cols), cols[-1])
    if col not in cols or "id" not in cols:
        raise InputError(target_path, f"needs columns 'id' and '{col}', has {cols}", "pass --label-column")
    ids = np.array([int(r["id"]) for r in rows], dtype=np.int64)
    names, codes = np.unique(np.array([r[col] for r in rows]), return_inverse=True)
    n = int(ids.max()) + 1
    if len(ids) != n or len(np.unique(ids)) != n:
        raise InputError(target_path, f"ids are not exactly 0..{n - 1} (found {len(ids)} rows)")
    y = np.empty(n, np.int64)
    y[ids] = codes
    try:
        feats = json.loads(feat_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(feat_path, f"not valid JSON ({e}); the file may be truncated") from e
    fnodes = np.fromiter((int(k) for k in feats), np.int64, len(feats))
    _check_ids(feat_path, fnodes, n)
    if len(fnodes) != n:
        raise InputError(feat_path, f"has features for {len(fnodes)} nodes but the target file has {n}",
                         "features and labels must describe the same nodes")
    lens = np.fromiter((len(v) for v in feats.values()), np.int64, len(feats))
    fidx = np.fromiter((i for v in feats.values() for i in v), np.int64, int(lens.sum()))
    dim = int(fidx.max()) + 1
    edges = np.concatenate(list(numeric_blocks(edges_path, 2)))
    _check_ids(edges_path, edges.ravel(), n)
    src, dst = to_undirected(edges[:, 0], edges[:, 1])
    _write_binary_features(Path(out) / "x.npy", np.repeat(fnodes, lens), fidx, n, dim)
    np.save(Path(out) / "edges_src.npy", src)
    np.save(Path(out) / "edges_dst.npy", dst)
    np.save(Path(out) / "y.npy", y)
    np.save(Path(out) / "split.npy", random_split(n, seed=seed))
    info = GraphInfo(name=name, num_nodes=n, num_edges=len(src), num_features=dim,
                     num_classes=len(names),
                     provenance={"format": "musae", "source": str(root), "label_column": col,
                                 "classes": names.tolist(), "split": f"random 60/20/20 seed {seed}"})
    info.save(out)
    return info


# ---------------------------------------------------------------- OGB node-property raw dir
@register_importer("ogb", lambda a: {"split_name": a.split_name, "undirected": a.undirected, "name": a.name})
def import_ogb(root, out, split_name: str | None = None, undirected: bool = False,
               name: str | None = None, block_bytes: int = 1 << 26) -> GraphInfo:
    """OGB raw node-property directory: raw/{edge,node-feat,node-label,num-node-list}.csv.gz
    and split/<name>/{train,valid,test}.csv.gz. Edges and features stream in blocks."""
    root = Path(root)
    raw = root / "raw"
    nn_path = _need(raw / "num-node-list.csv.gz")
    n = int(np.concatenate(list(numeric_blocks(nn_path, 1))).sum())
    edge_path = _need(raw / "edge.csv.gz")
    with NpyAppender(Path(out) / "edges_src.npy", np.int64) as ws, \
            NpyAppender(Path(out) / "edges_dst.npy", np.int64) as wd:
        for blk in numeric_blocks(edge_path, 2, block_bytes=block_bytes):
            _check_ids(edge_path, blk.ravel(), n)
            ws.append(blk[:, 0])
            wd.append(blk[:, 1])
            if undirected:
                ws.append(blk[:, 1])
                wd.append(blk[:, 0])
        num_edges = ws.rows
    feat_path = _need(raw / "node-feat.csv.gz")
    dim = _count_columns(feat_path)
    with NpyAppender(Path(out) / "x.npy", np.float32, (dim,)) as wx:
        for blk in numeric_blocks(feat_path, dim, np.float32, block_bytes=block_bytes):
            wx.append(blk)
    _check_rows(feat_path, wx.rows, n, "node-feat")
    label_path = _need(raw / "node-label.csv.gz")
    lab = np.concatenate(list(numeric_blocks(label_path, 1, np.float64)))
    _check_rows(label_path, len(lab), n, "node-label")
    y = np.where(np.isnan(lab[:, 0]), -1, lab[:, 0]).astype(np.int64)
    split_dir = root / "split"
    names = sorted(p.name for p in split_dir.iterdir()) if split_dir.is_dir() else []
    if not names:
        raise InputError(split_dir, "no split directory", "expected split/<name>/{train,valid,test}.csv.gz")
    sname = split_name or names[0]
    split = np.zeros(n, np.uint8)
    for code, part in ((SPLIT_TRAIN, "train"), (SPLIT_VAL, "valid"), (SPLIT_TEST, "test")):
        p = _need(split_dir / sname / f"{part}.csv.gz")
        idx = np.concatenate(list(numeric_blocks(p, 1))).ravel()
        _check_ids(p, idx, n)
        split[idx] = code
    np.save(Path(out) / "y.npy", y)
    np.save(Path(out) / "split.npy", split)
    info = GraphInfo(name=name or root.name, num_nodes=n, num_edges=num_edges, num_features=dim,
                     num_classes=int(y.max()) + 1, undirected=undirected,
                     provenance={"format": "ogb", "source": str(root), "split": sname})
    info.save(out)
    return info


def _count_columns(path: Path) -> int:
    import gzip

    try:
        with gzip.open(path, "rb") as f:
            return len(f.readline().strip().split(b","))
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read ({e}); the file may be truncated") from e


# ---------------------------------------------------------------- plain edge lists
def _integer_labels(path: Path, raw: np.ndarray) -> np.ndarray:
    """Class indices 0..C-1: a fractional or negative label is the user's file's error, named as such."""
    if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise InputError(path, f"labels have shape {raw.shape} and dtype {raw.dtype}",
                         "store one integer class per node")
    bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)) | (raw < 0)) if raw.size else []
    if len(bad):
        raise InputError(path, f"label {raw[bad[0]]} of node {bad[0]} is not a class index (0, 1, 2, ...)",
                         "store one non-negative integer class per node")
    return raw.astype(np.int64)


@register_importer("edgelist", lambda a: {
    "num_nodes": a.num_nodes, "features": a.features, "labels": a.labels, "undirected": not a.directed,
    "seed": a.seed, "name": a.name, "require_labels": True})
def import_edgelist(path, out, num_nodes: int | None = None, features=None, labels=None,
                    undirected: bool = True, seed: int = 0, name: str | None = None,
                    require_labels: bool = False) -> GraphInfo:
    """Edge list as text/CSV (two id columns, optional header, # comments) or
    .npy ([E, 2]); optional features (.npy [N, F]) and labels (.npy [N]);
    ``require_labels`` (grappa-import): no labels is an error, checked after
    the edges and features, which have their own."""
    path = _need(Path(path))
    if path.suffix == ".npy":
        try:
            edges = np.load(path).astype(np.int64)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(path, f"cannot read .npy ({e}); the file may be truncated") from e
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise InputError(path, f"has shape {edges.shape}, expected [E, 2]")
    else:
        edges = np.concatenate(list(numeric_blocks(path, 2)) or [np.zeros((0, 2), np.int64)])
    if not len(edges):
        raise InputError(path, "holds no edges", "check the file and its delimiter (two id columns per line)")
    n = int(num_nodes) if num_nodes else int(edges.max(initial=-1)) + 1
    _check_ids(path, edges.ravel(), n)
    src, dst = (to_undirected if undirected else dedup_edges)(edges[:, 0], edges[:, 1])
    x = np.ones((n, 1), np.float32)
    if features is not None:
        fpath = _need(Path(features))
        try:
            x = np.load(fpath).astype(np.float32)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(fpath, f"cannot read .npy ({e}); the file may be truncated") from e
        _check_rows(fpath, x.shape[0], n, "features")
        if not np.isfinite(x).all():
            raise InputError(fpath, "features contain NaN or infinity", "clean or impute them before importing")
    if labels is None and require_labels:
        raise InputError("--labels", "an edge list carries no labels, and training needs them",
                         "pass --labels y.npy (one integer class per node)")
    y = np.full(n, -1, np.int64)
    split = np.zeros(n, np.uint8)
    if labels is not None:
        lpath = _need(Path(labels))
        try:
            raw = np.load(lpath)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(lpath, f"cannot read .npy ({e}); the file may be truncated") from e
        y = _integer_labels(lpath, raw)
        _check_rows(lpath, len(y), n, "labels")
        split = random_split(n, seed=seed, labelled=y >= 0)
    info = GraphInfo(name=name or path.stem, num_nodes=n, num_edges=len(src), num_features=x.shape[1],
                     num_classes=max(int(y.max()) + 1, 1), undirected=undirected,
                     provenance={"format": "edgelist", "source": str(path)})
    write_raw(out, info, src, dst, x, y, split)
    return info


