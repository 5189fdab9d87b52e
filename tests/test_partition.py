"""The offline MPI partitioner under real mpirun: same shards for any rank
count, every edge and node exactly once, METIS variants, bad input, faults."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from conftest import ROOT, run_mpi
from grappa.errors import InputError
from grappa.graph.generators import SBMConfig, generate_sbm
from grappa.graph.raw import RawGraph
from grappa.partition.assignment import FeistelPermutation, RandomAssignment
from grappa.shards.format import read_shard
from grappa.shards.validate import validate_dataset

PARTITION = ROOT / "data_prep/partition.py"


def partition(np_, data, out, *extra):
    r = run_mpi(np_, PARTITION, "--data", data, "--out", out, "--no-progress", *map(str, extra), timeout=300)
    return r


def shards(out, k):
    return [read_shard(out / f"chunk-{c:05d}.h5") for c in range(k)]


def test_feistel_is_a_permutation_and_random_is_balanced():
    for n in (1, 2, 3, 1000, 2708, 65537):
        v = FeistelPermutation(n, seed=5)(np.arange(n))
        assert np.array_equal(np.sort(v), np.arange(n))
    sizes = np.bincount(RandomAssignment(100_003, 64, 1)(np.arange(100_003)))
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.mpi
def test_same_shards_for_1_2_4_ranks_and_exact_cover(cora_dir, tmp_path):
    outs = {}
    for p in (1, 2, 4):
        outs[p] = tmp_path / f"k8-{p}"
        r = partition(p, cora_dir, outs[p], "--num-chunks", 8, "--memory-budget", 16)
        assert r.returncode == 0, r.stderr
        validate_dataset(outs[p])
    ref = shards(outs[1], 8)
    for p in (2, 4):
        for a, b in zip(ref, shards(outs[p], 8)):
            for key in a:
                if key != "attrs":
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} differs at P={p}")
    g = RawGraph(cora_dir)
    src, dst = g.load_edges()
    ids = np.concatenate([s["nodes/global_id"] for s in ref])
    assert np.array_equal(np.sort(ids), np.arange(g.num_nodes))  # every node exactly once
    got_src = np.concatenate([s["edges/src_global"] for s in ref])
    got_dst = np.concatenate([s["nodes/global_id"][s["edges/dst_local"]] for s in ref])
    n = g.num_nodes
    assert np.array_equal(np.sort(got_dst * n + got_src), np.sort(dst * n + src))  # every edge exactly once
    for s in ref:  # features travelled with their nodes
        np.testing.assert_array_equal(s["nodes/x"], np.asarray(g.x)[s["nodes/global_id"]])
        np.testing.assert_array_equal(s["nodes/y"], np.asarray(g.y)[s["nodes/global_id"]])


@pytest.mark.mpi
def test_metis_cuts_less_than_random(cora_dir, tmp_path):
    sbm = tmp_path / "sbm"
    sbm.mkdir()
    generate_sbm(SBMConfig(num_nodes=20_000, avg_degree=10, num_classes=8), sbm)
    for data in (cora_dir, sbm):
        cuts = {}
        for method in ("random", "metis", "metis-super"):
            out = tmp_path / f"{data.name}-{method}"
            r = partition(2, data, out, "--num-chunks", 8, "--method", method)
            assert r.returncode == 0, r.stderr
            m = validate_dataset(out)
            cuts[method] = m["edge_cut_fraction"]
            if method == "metis-super":
                sizes = np.array([c["num_nodes"] for c in m["chunks"]])
                assert sizes.max() / sizes.mean() - 1 <= 0.10 and 1 - sizes.min() / sizes.mean() <= 0.10
        assert cuts["metis"] < cuts["random"], cuts


@pytest.mark.mpi
def test_sbatch_partition_job(cora_dir, tmp_path):
    import os

    if shutil.which("sbatch") is None or "SLURM_CONF" not in os.environ:
        pytest.skip("local Slurm not started (run through hpc/run_tests.sh)")
    from test_slurm_jobs import sbatch

    out = tmp_path / "cora-k8"
    state, log = sbatch("partition.slurm", tmp_path, DATA=cora_dir, OUT=out, NUM_CHUNKS=8, RANKS=2)
    assert state == "COMPLETED", log
    assert validate_dataset(out)["num_chunks"] == 8


# ---------------------------------------------------------------- bad input
def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _fails(tmp_path, data, *extra, needle, np_=2):
    out = tmp_path / "out"
    r = partition(np_, data, out, *extra)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp*"))
    return r.stderr


@pytest.mark.mpi
@pytest.mark.parametrize("bad", [-1, 10**9])
def test_bad_node_ids(cora_dir, tmp_path, bad):
    d = _copy(cora_dir, tmp_path / "g")
    dst = np.load(d / "edges_dst.npy")
    dst[5000] = bad
    np.save(d / "edges_dst.npy", dst)
    _fails(tmp_path, d, "--num-chunks", 4, needle=f"edges_dst.npy: node id {bad} out of range")


@pytest.mark.mpi
def test_bad_edge_lengths_and_feature_rows(cora_dir, tmp_path):
    d = _copy(cora_dir, tmp_path / "g")
    np.save(d / "edges_src.npy", np.load(d / "edges_src.npy")[:-3])
    _fails(tmp_path, d, "--num-chunks", 4, needle="edges_src.npy: has shape (10553,)")
    d2 = _copy(cora_dir, tmp_path / "g2")
    np.save(d2 / "x.npy", np.load(d2 / "x.npy")[:-1])
    _fails(tmp_path, d2, "--num-chunks", 4, needle="x.npy: has shape (2707, 1433)")


@pytest.mark.mpi
def test_bad_nan_features(cora_dir, tmp_path):
    d = _copy(cora_dir, tmp_path / "g")
    x = np.load(d / "x.npy")
    x[2000, 3] = np.nan
    np.save(d / "x.npy", x)
    _fails(tmp_path, d, "--num-chunks", 4, needle="x.npy: features contain NaN")


@pytest.mark.mpi
@pytest.mark.parametrize("k", [0, 2709])
def test_bad_num_chunks(cora_dir, tmp_path, k):
    _fails(tmp_path, cora_dir, "--num-chunks", k, needle=f"K={k} must be between 1")


@pytest.mark.mpi
def test_existing_output_refused_unless_overwrite(cora_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    r = partition(2, cora_dir, out, "--num-chunks", 4)
    assert r.returncode == 2 and "already exists" in r.stderr and (out / "keep").exists()
    r = partition(2, cora_dir, out, "--num-chunks", 4, "--overwrite")
    assert r.returncode == 0 and not (out / "keep").exists()


@pytest.mark.mpi
def test_killed_rank_leaves_nothing_valid(cora_dir, tmp_path):
    out = tmp_path / "out"
    r = partition(2, cora_dir, out, "--num-chunks", 8, "--fail-after-shards", 2)
    assert r.returncode != 0
    assert not out.exists()
    for leftover in tmp_path.glob(".out.tmp*"):  # hidden, no manifest: the validator rejects it
        with pytest.raises(InputError, match="manifest.json"):
            validate_dataset(leftover)


@pytest.mark.mpi
def test_flipped_byte_is_rejected_with_its_name(cora_dir, tmp_path):
    out = tmp_path / "ok"
    assert partition(1, cora_dir, out, "--num-chunks", 4).returncode == 0
    p = out / "chunk-00002.h5"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    r = subprocess.run(["python", "-m", "grappa.shards.validate", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "chunk-00002.h5" in r.stderr and "SHA-256" in r.stderr


def test_shards_readable_by_hdf5_tools(cora_dir, tmp_path):
    if shutil.which("h5ls") is None:
        pytest.skip("hdf5-tools not installed")
    out = tmp_path / "ok"
    assert partition(1, cora_dir, out, "--num-chunks", 2).returncode == 0
    r = subprocess.run(["h5ls", "-r", str(out / "chunk-00000.h5")], capture_output=True, text=True)
    assert r.returncode == 0 and "/edges/src_global" in r.stdout and "/nodes/x" in r.stdout


@pytest.mark.mpi
def test_external_sort_path_and_memory_bound(tmp_path):
    """A budget smaller than a chunk's edges takes the bucketed (external) path;
    peak RSS stays under budget + fixed overhead and barely grows with 4x edges."""
    from grappa.graph.generators import RMATConfig, generate_rmat

    rss = {}
    for scale in (16, 18):
        data = tmp_path / f"rmat{scale}"
        data.mkdir()
        generate_rmat(RMATConfig(scale=scale, num_features=0), data)
        out = tmp_path / f"p{scale}"
        r = partition(2, data, out, "--num-chunks", 4, "--memory-budget", 16)
        assert r.returncode == 0, r.stderr
        m = validate_dataset(out)
        assert m["num_edges"] == 16 * 2**scale
        rss[scale] = max(m["created_by"]["peak_rss_mb_per_rank"])
    assert rss[18] < 16 + 200, rss  # fixed overhead: interpreter, numpy, h5py, mpi4py
    assert rss[18] < rss[16] * 1.3, rss
