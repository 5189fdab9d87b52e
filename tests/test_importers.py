"""Importers write the raw layout correctly, and reject bad input cleanly."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import ROOT, SHARED, MakesAFile, run_cli
from grappa.errors import InputError
from grappa.graph.importers import import_edgelist, import_musae, import_npz, import_ogb
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, RawGraph


def test_cora_matches_published_statistics(cora_dir):
    g = RawGraph(cora_dir).validate()
    assert (g.info.num_nodes, g.info.num_edges, g.info.num_features, g.info.num_classes) == (2708, 10556, 1433, 7)
    split = np.asarray(g.split)
    assert [(split == c).sum() for c in (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST)] == [140, 500, 1000]
    src, dst = g.load_edges()
    assert not (src == dst).any()
    # undirected: the reverse of every edge is present
    fwd = set(zip(src.tolist(), dst.tolist()))
    assert all((d, s) in fwd for s, d in fwd)
    np.testing.assert_allclose(np.asarray(g.x).sum(1)[np.asarray(g.x).sum(1) > 0], 1.0, rtol=1e-5)


def test_shipped_cora_checksums():
    import hashlib

    for line in (ROOT / "datasets/cora/SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((ROOT / "datasets/cora" / name).read_bytes()).hexdigest() == digest, name
    assert (ROOT / "datasets/cora/LICENSE").is_file() and (ROOT / "datasets/cora/SOURCE.txt").is_file()


def test_npz_heterophilous_format(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    edges = np.stack([rng.integers(0, n, 200), rng.integers(0, n, 200)], 1)
    masks = np.zeros((3, n), bool)
    tr = np.zeros((10, n), bool); tr[:, :20] = True  # noqa: E702
    va = np.zeros((10, n), bool); va[:, 20:30] = True  # noqa: E702
    te = np.zeros((10, n), bool); te[:, 30:] = True  # noqa: E702
    tr[1] = False; tr[1, 5:25] = True  # noqa: E702  split 1 differs
    np.savez(tmp_path / "toy.npz", node_features=rng.standard_normal((n, 4)), node_labels=rng.integers(0, 3, n),
             edges=edges, train_masks=tr, val_masks=va, test_masks=te)
    del masks
    out = tmp_path / "out"; out.mkdir()  # noqa: E702
    info = import_npz(tmp_path / "toy.npz", out, split_index=1)
    g = RawGraph(out).validate()
    assert info.num_nodes == n and info.num_classes == 3
    assert (np.asarray(g.split)[5:20] == SPLIT_TRAIN).all()
    src, dst = g.load_edges()
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all((b, a) in pairs and (a, b) in pairs for a, b in edges.tolist())
    assert len(pairs) == len(src)  # no duplicates


@pytest.mark.skipif(not (SHARED / "data/facebook_page_page").is_dir(), reason="shared Facebook data not present")
def test_musae_facebook(tmp_path):
    info = import_musae(SHARED / "data/facebook_page_page", tmp_path, name="facebook")
    assert (info.num_nodes, info.num_features, info.num_classes) == (22470, 4714, 4)
    g = RawGraph(tmp_path).validate()
    assert np.bincount(np.asarray(g.y)).tolist() == [6495, 6880, 5768, 3327]  # company, government, politician, tvshow
    src, dst = g.load_edges()
    # 171,002 undirected edges incl. 179 self-loops -> 2 * 170,823 + 179 directed (minus duplicates)
    assert len(src) <= 2 * (171002 - 179) + 179
    assert (src == dst).sum() == 179


def _gz(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write(text)


def test_ogb_raw_directory(tmp_path):
    root = tmp_path / "ogbn_toy"
    _gz(root / "raw/num-node-list.csv.gz", "6\n")
    _gz(root / "raw/edge.csv.gz", "0,1\n1,2\n2,3\n3,4\n4,5\n5,0\n")
    _gz(root / "raw/node-feat.csv.gz", "".join(f"{i}.0,{i * 0.5},-1\n" for i in range(6)))
    _gz(root / "raw/node-label.csv.gz", "0\n1\n0\n1\n0\n1\n")
    _gz(root / "split/time/train.csv.gz", "0\n1\n2\n")
    _gz(root / "split/time/valid.csv.gz", "3\n")
    _gz(root / "split/time/test.csv.gz", "4\n5\n")
    out = tmp_path / "out"; out.mkdir()  # noqa: E702
    info = import_ogb(root, out, undirected=True, block_bytes=8)  # tiny blocks: exercise streaming
    g = RawGraph(out).validate()
    assert (info.num_nodes, info.num_edges, info.num_features) == (6, 12, 3)
    np.testing.assert_array_equal(np.asarray(g.x)[:, 1], np.arange(6) * 0.5)
    assert np.asarray(g.split).tolist() == [1, 1, 1, 2, 3, 3]


@pytest.mark.parametrize("fmt", ["txt", "csv", "npy"])
def test_edgelist_formats(tmp_path, fmt):
    edges = np.array([[0, 1], [1, 2], [2, 0], [3, 1]])
    path = tmp_path / f"e.{fmt}"
    if fmt == "npy":
        np.save(path, edges)
    elif fmt == "csv":
        path.write_text("src,dst\n" + "".join(f"{a},{b}\n" for a, b in edges))
    else:
        path.write_text("# comment\n" + "".join(f"{a}\t{b}\n" for a, b in edges))
    out = tmp_path / "out"; out.mkdir()  # noqa: E702
    info = import_edgelist(path, out)
    assert (info.num_nodes, info.num_edges) == (4, 8)


# ---------------------------------------------------------------- bad input via the real CLI
def _bad(tmp_path, *args):
    out = tmp_path / "out"
    r = run_cli("grappa.graph.importers_cli", *args, "--out", out)
    assert r.returncode == 2, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    return r.stderr


def test_bad_missing_file(tmp_path):
    err = _bad(tmp_path, "edgelist", tmp_path / "nope.txt")
    assert "nope.txt" in err and "missing" in err


def test_bad_unknown_format(tmp_path):
    assert "unknown format 'graphml'" in _bad(tmp_path, "graphml", tmp_path)


def test_bad_truncated_npy(tmp_path):
    np.save(tmp_path / "e.npy", np.arange(1000).reshape(-1, 2))
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "e.npy").write_bytes(data[: len(data) // 2])
    err = _bad(tmp_path, "edgelist", tmp_path / "e.npy")
    assert "e.npy" in err and "truncated" in err


def test_bad_truncated_planetoid(tmp_path):
    src = ROOT / "datasets/cora"
    for f in src.glob("ind.cora.*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    g = tmp_path / "ind.cora.graph"
    g.write_bytes(g.read_bytes()[:1000])
    err = _bad(tmp_path, "planetoid", tmp_path, "--name", "cora")
    assert "ind.cora.graph" in err


def test_crafted_planetoid_pickle_runs_no_code(tmp_path):
    import pickle

    for f in (ROOT / "datasets/cora").glob("ind.cora.*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    victim = tmp_path / "created-by-unpickling"
    (tmp_path / "ind.cora.x").write_bytes(pickle.dumps(MakesAFile(str(victim))))
    err = _bad(tmp_path, "planetoid", tmp_path, "--name", "cora")
    assert "ind.cora.x" in err and "refusing" in err and not victim.exists()


def test_bad_node_id_out_of_range(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n1 7\n")
    err = _bad(tmp_path, "edgelist", tmp_path / "e.txt", "--num-nodes", "5")
    assert "node id 7 out of range [0, 5)" in err and "e.txt" in err


def test_bad_negative_node_id(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n-1 2\n")
    assert "node id -1 out of range" in _bad(tmp_path, "edgelist", tmp_path / "e.txt")


def test_bad_feature_label_rows_differ(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n1 2\n")
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    err = _bad(tmp_path, "edgelist", tmp_path / "e.txt", "--features", tmp_path / "x.npy",
               "--labels", tmp_path / "y.npy")
    assert "y.npy" in err and "4 rows" in err


def test_bad_nan_features(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n1 2\n")
    x = np.ones((3, 2), np.float32)
    x[1, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    err = _bad(tmp_path, "edgelist", tmp_path / "e.txt", "--features", tmp_path / "x.npy")
    assert "x.npy" in err and "NaN" in err


def test_bad_existing_output_refused(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("precious")
    r = run_cli("grappa.graph.importers_cli", "edgelist", tmp_path / "e.txt", "--out", out)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (out / "keep").read_text() == "precious"


def test_graph_json_is_readable(cora_dir):
    d = json.loads((cora_dir / "graph.json").read_text())
    assert d["schema"] == "grappa-raw/1" and d["provenance"]["format"] == "planetoid"


def _tiny_raw(tmp_path, y, split, num_classes=3):
    from grappa.graph.raw import GraphInfo, write_raw

    n = len(y)
    info = GraphInfo(name="tiny", num_nodes=n, num_edges=0, num_features=2, num_classes=num_classes)
    write_raw(tmp_path, info, np.array([0, 1]), np.array([1, 2]), np.zeros((n, 2), np.float32), np.array(y),
              np.array(split, np.uint8))
    return RawGraph(tmp_path)


@pytest.mark.parametrize("y,split,problem", [([0, 1, -5, 2], [1, 1, 2, 3], "label -5 of node 2"),
                                             ([0, 1, 9, 2], [1, 1, 2, 3], "label 9 of node 2"),
                                             ([0, 1, 2, 2], [0, 2, 2, 3], "no training nodes"),
                                             ([0, 1, 2, 2], [1, 7, 2, 3], "split code 7")])
def test_bad_labels_and_splits_are_refused(tmp_path, y, split, problem):
    with pytest.raises(InputError, match=problem):
        _tiny_raw(tmp_path, y, split).validate()


def test_negative_label_through_the_cli(tmp_path):
    (tmp_path / "e.txt").write_text("0 1\n1 2\n2 3\n")
    np.save(tmp_path / "y.npy", np.array([0, 1, -5, 1]))
    err = _bad(tmp_path, "edgelist", tmp_path / "e.txt", "--labels", tmp_path / "y.npy")
    assert "y.npy" in err and "-5" in err
