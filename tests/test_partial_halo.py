"""The partial halo (issue 29): a rank whose whole halo does not fit its budget
reads, hop by hop, up to k in-edges of each node its training nodes (or one
group of steps' seeds) reach, drawn from the node's whole in-edge list in the
shards."""
from __future__ import annotations

import json

import numpy as np
import torch
from conftest import run_mpi
from grappa.graph.raw import SPLIT_TRAIN
from grappa.sampling import sample_ranges
from grappa.shards.assemble import HALO_EDGE_BYTES, halo_node_bytes, load_chunk_set

SET = [0, 3]


def _rows(lg, cora):
    """Per local node: (its global id, the global sources of its local in-edges, of its whole in-edges)."""
    for v in range(len(lg.global_id)):
        g = lg.global_id[v]
        yield v, g, lg.global_id[lg.csr.indices[lg.csr.indptr[v]:lg.csr.indptr[v + 1]]], \
            cora.csr.indices[cora.csr.indptr[g]:cora.csr.indptr[g + 1]]


def _sage_error_at(cora, lg, nodes) -> float:
    """Largest difference of a 2-layer SAGE's outputs at local ``nodes`` from the centralized ones."""
    from grappa.models import build_model

    torch.manual_seed(0)
    model = build_model("sage", cora.x.shape[1], 16, 7, 2).eval()
    with torch.no_grad():
        ref = model(cora.x, cora.edge_index)
        out = model(lg.x, lg.edge_index)
    return float((out[nodes] - ref[lg.global_id[nodes]]).abs().max())


def _partial(cora_k8, caps, budget=np.inf, seed=0):
    return load_chunk_set(cora_k8, SET, halo_hops=len(caps), halo_budget_bytes=budget, sampled=(caps,),
                          rng=np.random.default_rng(seed), whole=False)


def test_sample_ranges_draws_k_distinct_positions_uniformly():
    rng = np.random.default_rng(0)
    starts, counts = np.array([0, 10, 13, 40]), np.array([10, 3, 0, 20])
    pos, seg = sample_ranges(starts, counts, 4, rng)
    assert np.array_equal(np.bincount(seg, minlength=4), [4, 3, 0, 4])
    for i in range(4):
        p = pos[seg == i]
        assert len(set(p)) == len(p) and ((p >= starts[i]) & (p < starts[i] + counts[i])).all()
    hits = np.zeros(20, int)  # every position of a range is kept k / count of the time
    for _ in range(2000):
        pos, seg = sample_ranges(starts[3:], counts[3:], 4, rng)
        hits[pos - 40] += 1
    assert np.allclose(hits / 2000, 4 / 20, atol=0.04), hits
    everything, _ = sample_ranges(starts, counts, -1, rng)
    assert np.array_equal(everything, np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]))


def test_uncapped_partial_halo_is_the_exact_halo_at_the_training_nodes(cora, cora_k8):
    """Caps of -1 read every in-edge along the training nodes' reach: a 2-layer
    model's outputs there are the centralized ones, as with the whole halo."""
    lg = _partial(cora_k8, (-1, -1))
    assert lg.halo_hops == 2 and lg.halo_caps == (-1, -1) and len(lg.halo_read) == 2
    train = np.flatnonzero(lg.split == SPLIT_TRAIN)
    assert np.all(lg.coverage[train] == 1.0)
    assert _sage_error_at(cora, lg, train) < 1e-5


def test_capped_rows_are_draws_of_the_whole_in_edge_lists(cora, cora_k8):
    isolated = load_chunk_set(cora_k8, SET)
    lg = _partial(cora_k8, (3, 2))
    n, train = lg.num_owned, set(np.flatnonzero(lg.split == SPLIT_TRAIN))
    assert lg.halo_hops == 2 and np.array_equal(lg.x.numpy(), cora.x.numpy()[lg.global_id])
    drawn_halo = 0
    for v, _, local, whole in _rows(lg, cora):
        if v in train:  # hop 0 draws 3 of every in-edge, inside the set or not
            assert len(local) == min(3, len(whole)), v
        if len(local) and (v >= n or len(local) != isolated.csr.in_degree()[v] or v in train):
            assert len(np.unique(local)) == len(local) and np.isin(local, whole).all(), v
            drawn_halo += v >= n
        if v >= n:
            assert len(local) in (0, min(2, len(whole))), v  # hop 1 draws 2 of a reached halo node's
    assert drawn_halo > 0
    not_drawn = [v for v in range(n) if v not in train and lg.coverage[v] < 1]
    assert not_drawn and all(lg.csr.in_degree()[v] == isolated.csr.in_degree()[v] for v in not_drawn)
    # another draw reads other edges
    assert not np.array_equal(lg.csr.indices, _partial(cora_k8, (3, 2), seed=1).csr.indices)


def test_budget_counts_each_hop_and_stops_at_the_last_that_fits(cora_k8):
    lg = _partial(cora_k8, (3, 2))
    (n1, e1, b1), (n2, e2, b2) = lg.halo_read
    node_b = halo_node_bytes(1433)
    assert b1 == n1 * node_b + e1 * HALO_EDGE_BYTES and b2 == n2 * node_b + e2 * HALO_EDGE_BYTES
    assert len(lg.global_id) - lg.num_owned == n1 + n2
    for budget, hops in ((b1 + b2, 2), (b1 + b2 - 1, 1), (b1, 1), (b1 - 1, 0)):
        assert _partial(cora_k8, (3, 2), budget).halo_hops == hops, budget


def test_load_falls_back_from_the_exact_halo_to_the_partial_ones_that_fit(cora_k8):
    exact = load_chunk_set(cora_k8, SET, halo_hops=2)
    hop1, sampled = _partial(cora_k8, (-1, 2)), _partial(cora_k8, (2, 2))
    cost = {name: sum(b for _, _, b in g.halo_read) for name, g in
            (("exact", exact), ("hop1", hop1), ("sampled", sampled))}
    assert cost["exact"] > cost["hop1"] > cost["sampled"], cost
    for budget, caps in ((cost["exact"], None), (cost["hop1"], (-1, 2)), (cost["sampled"], (2, 2))):
        lg = load_chunk_set(cora_k8, SET, halo_hops=2, halo_budget_bytes=budget, sampled=((-1, 2), (2, 2)),
                            rng=np.random.default_rng(0))
        assert (lg.halo_hops, lg.halo_caps) == (2, caps), budget
    # none fits both hops: the last, with the hops that fit; nothing fits: the isolated set
    b1 = sampled.halo_read[0][2]
    lg = load_chunk_set(cora_k8, SET, halo_hops=2, halo_budget_bytes=b1, sampled=((-1, 2), (2, 2)),
                        rng=np.random.default_rng(0))
    assert (lg.halo_hops, lg.halo_caps) == (1, (2, 2))
    lg = load_chunk_set(cora_k8, SET, halo_hops=2, halo_budget_bytes=0, sampled=((2, 2),), hold_in_edges=False)
    assert lg.halo_hops == 0 and len(lg.global_id) == lg.num_owned and lg.full_src_global is None


def _grappa(np_, data, out, *args):
    return run_mpi(np_, "-m", "grappa.train", "--method", "grappa", "--data", data, "--out", out, "--no-progress",
                   "--batch-size", 64, "--fanouts", 5, 5, *map(str, args))


def test_resume_with_halo_groups_is_bitwise(cora_k16, tmp_path):
    """2 ranks whose exact halo (about 8 MB) is over the budget: --halo-mode auto reads each group
    of steps' halo within the budget, and result.json says so. The groups and their
    draws are set by (seed, super-epoch or epoch, rank, group): a run resumed within
    a super-epoch ends with the uninterrupted run's model."""
    flags = ("--repartition-every", 4, "--halo-budget-mb", 1, "--halo-mode", "auto")
    ref, part = tmp_path / "ref", tmp_path / "part"
    assert _grappa(2, cora_k16, ref, "--epochs", 6, *flags).returncode == 0
    assert _grappa(2, cora_k16, part, "--epochs", 3, *flags).returncode == 0
    r = _grappa(2, cora_k16, part, "--epochs", 6, *flags, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((d / "result.json").read_text()) for d in (ref, part))
    assert a["halo_mode"] == "auto" and [load["ranks"] for load in a["halo_read"]] == [{"groups": 2}] * 2
    assert 0 < a["halo_group_held_bytes_max"] <= 2**20 and a["halo_groups_over_budget"] == 0
    assert a["final_model_sha256"] == b["final_model_sha256"]


def test_halo_groups_fit_the_budget_and_give_the_seeds_exact_outputs(cora, cora_k8):
    """Groups sized from the probe hold no more than the budget; and a group's
    halo read uncapped gives its seeds' centralized outputs (2-layer SAGE)."""
    from grappa.shards.halo_groups import HaloGroups

    base = load_chunk_set(cora_k8, SET)
    train = np.flatnonzero(base.split == SPLIT_TRAIN)
    whole = HaloGroups.plan(cora_k8, base, (5, 5), np.inf, train, np.random.default_rng(0))
    budget = 0.25 * sum(b for *_, b in whole.load(train, np.random.default_rng(0)).halo_read)  # all seeds' halo
    groups = HaloGroups.plan(cora_k8, base, (5, 5), budget, train, np.random.default_rng(0))
    assert 0 < groups.seeds_per_group < len(train)
    rng = np.random.default_rng(1)
    for lo in range(0, len(train), groups.seeds_per_group):
        lg = groups.load(train[lo:lo + groups.seeds_per_group], rng)
        assert lg.halo_hops == 2 and sum(b for *_, b in lg.halo_read) <= budget
    assert groups.take_counts()[0] > 0 and groups.take_counts() == (0, 0)
    seeds = train[::3]
    lg = HaloGroups(groups.reader, base, (-1, -1), np.inf, len(seeds)).load(seeds, rng)
    assert _sage_error_at(cora, lg, seeds) < 1e-5


def test_partial_halo_modes_need_mini_batches(cora_k16, tmp_path):
    r = run_mpi(1, "-m", "grappa.train", "--method", "grappa", "--data", cora_k16, "--out", tmp_path / "run",
                "--no-progress", "--epochs", 1, "--halo-mode", "groups")
    assert r.returncode == 2 and "--batch-size" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run" / "result.json").exists()


def test_help_lists_the_halo_modes():
    r = run_mpi(1, "-m", "grappa.train", "--help")
    assert r.returncode == 0 and "--halo-mode" in r.stdout and "groups" in r.stdout


def test_partial_halo_modes_read_their_caps():
    from grappa.train.methods.grappa_method import partial_halos

    assert partial_halos("hop1", [5, 5]) == ((-1, 5),) and partial_halos("sampled", [5, 5]) == ((5, 5),)
    assert partial_halos("exact", [5, 5]) == partial_halos("auto", [5, 5]) == partial_halos("groups", [5, 5]) == ()


def test_halo_load_benchmark_times_exact_and_group_loads(cora_k8, tmp_path):
    """bench/halo_load.py runs as documented: the exact loads, then groups within the budget."""
    import subprocess
    import sys

    from conftest import ROOT, mpi_env

    out = tmp_path / "halo_load.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench/halo_load.py"), "--data", str(cora_k8), "--ranks", "4",
                        "--budget-mb", "0.2", "--groups", "2", "--out", str(out)],
                       env=mpi_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {row["load"]: row for row in json.loads(out.read_text())["rows"]}
    assert [rows[f"exact, {h} hops"]["edges"] > 0 for h in range(3)] == [True] * 3
    assert rows["exact, 2 hops"]["held_mb"] > rows["exact, 1 hops"]["held_mb"] > 0
    assert 0 < rows["groups: plan"]["seeds_per_group"] < rows["groups: plan"]["train_nodes"]
    assert all(0 < rows[f"groups: group {i}"]["held_mb"] <= 0.2 for i in range(2))
