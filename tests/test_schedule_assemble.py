"""Chunk-set schedules and local subgraph assembly (pure logic, hand-checkable)."""
from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from conftest import ROOT, run_mpi
from grappa.shards.assemble import gather_rows, load_chunk_set
from grappa.shards.schedule import chunk_sets


@pytest.mark.parametrize("schedule", ["sweep", "shuffle", "fixed"])
@pytest.mark.parametrize("k,p", [(4, 4), (16, 4), (10, 3), (8, 2), (5, 1)])
def test_schedules_partition_the_chunks(schedule, k, p):
    for s in range(6):
        sets = chunk_sets(schedule, k, p, s, seed=1)
        flat = sorted(itertools.chain.from_iterable(sets))
        assert flat == list(range(k)), (schedule, s)
        sizes = [len(x) for x in sets]
        assert max(sizes) - min(sizes) <= 2
        assert sets == chunk_sets(schedule, k, p, s, seed=1)  # every rank computes the same


def test_sweep_pairs_every_base_with_every_variable_group():
    k, p = 16, 4
    seen = set()
    for s in range(p):
        for r, chunks in enumerate(chunk_sets("sweep", k, p, s, 0)):
            assert chunks[:2] == [2 * r, 2 * r + 1]  # base group stays
            seen.add((r, tuple(chunks[2:])))
    assert len(seen) == p * p  # every (base, variable) pair within P super-epochs


def test_fixed_never_changes_and_shuffle_does():
    assert chunk_sets("fixed", 8, 2, 0, 0) == chunk_sets("fixed", 8, 2, 5, 0)
    assert any(chunk_sets("shuffle", 8, 2, s, 0) != chunk_sets("shuffle", 8, 2, 0, 0) for s in range(1, 5))


def test_assembly_isolation_and_coverage(cora, cora_k8):
    lg = load_chunk_set(cora_k8, [1, 4, 6])
    node_chunk = np.load(cora_k8 / "node_chunk.npy")
    own = lg.global_id[: lg.num_owned]
    assert set(node_chunk[own].tolist()) == {1, 4, 6}
    assert lg.num_owned == len(lg.global_id)  # no halo
    # Local edges = exactly the input edges with both ends inside the set.
    inset = np.isin(node_chunk, [1, 4, 6])
    src, dst = cora.csr.indices, cora.csr.dst_of_edges()
    keep = inset[src] & inset[dst]
    want = set(zip(src[keep].tolist(), dst[keep].tolist()))
    ls, ld = lg.csr.indices, lg.csr.dst_of_edges()
    got = set(zip(lg.global_id[ls].tolist(), lg.global_id[ld].tolist()))
    assert got == want and len(ls) == keep.sum()
    gdeg = cora.csr.in_degree()[own]
    ldeg = np.bincount(dst[keep], minlength=cora.num_nodes)[own]
    np.testing.assert_allclose(lg.coverage, (ldeg + 1) / (gdeg + 1))
    np.testing.assert_array_equal(lg.x.numpy(), cora.x.numpy()[own])


def test_whole_set_has_full_coverage(cora, cora_k8):
    lg = load_chunk_set(cora_k8, list(range(8)))
    assert np.all(lg.coverage == 1.0) and lg.csr.num_edges == cora.csr.num_edges


def test_halo_reads_missing_sources(cora, cora_k8):
    lg = load_chunk_set(cora_k8, [0, 3], halo_hops=1)
    n = lg.num_owned
    halo = lg.global_id[n:]
    assert len(halo) > 0
    np.testing.assert_array_equal(lg.x.numpy()[n:], cora.x.numpy()[halo])
    # with the halo every owned node sees all its in-edges
    assert np.array_equal(lg.csr.in_degree()[:n], cora.csr.in_degree()[lg.global_id[:n]])


@pytest.mark.parametrize("model_name,layers", [("gcn", 2), ("sage", 3)])
def test_layers_hop_halo_makes_the_training_outputs_exact(cora, cora_k8, model_name, layers):
    """--halo-hops L: an L-layer model on the local graph gives the centralized
    outputs at the owned training nodes; one hop fewer does not."""
    import torch
    from grappa.graph.raw import SPLIT_TRAIN
    from grappa.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, cora.x.shape[1], 16, 7, layers).eval()
    with torch.no_grad():
        ref = model(cora.x, cora.edge_index)
    errs = []
    for hops in (layers - 1, layers):
        lg = load_chunk_set(cora_k8, [0, 3], halo_hops=hops)
        train = np.flatnonzero(lg.split == SPLIT_TRAIN)
        assert len(train) > 0 and lg.num_owned <= lg.num_complete < len(lg.global_id)
        # the complete nodes have every in-edge; the rest none
        deg = lg.csr.in_degree()
        assert np.array_equal(deg[: lg.num_complete], cora.csr.in_degree()[lg.global_id[: lg.num_complete]])
        assert not deg[lg.num_complete:].any()
        graph = model.graph_global(lg.edge_index, len(lg.global_id), torch.from_numpy(lg.global_in_degree),
                                   lg.num_complete)
        with torch.no_grad():
            out = model(lg.x, *graph)
        errs.append(float((out[train] - ref[lg.global_id[train]]).abs().max()))
    assert errs[1] < 1e-5 < errs[0], errs


def test_halo_budget_drops_the_hops_that_do_not_fit(cora_k8):
    from grappa.shards.assemble import HALO_EDGE_BYTES, halo_node_bytes

    isolated = load_chunk_set(cora_k8, [0, 3])
    full = load_chunk_set(cora_k8, [0, 3], halo_hops=2)
    one = load_chunk_set(cora_k8, [0, 3], halo_hops=1)
    assert (full.halo_hops, one.halo_hops) == (2, 1)
    # hop 1's cost, counted as the budget counts it: one row per missing source, one entry per cut edge
    n = one.num_owned
    hop1 = (len(one.global_id) - n) * halo_node_bytes(1433) + (one.csr.num_edges - isolated.csr.num_edges) * \
        HALO_EDGE_BYTES
    for budget, hops in ((0, 0), (hop1 - 1, 0), (hop1, 1), (np.inf, 2)):
        lg = load_chunk_set(cora_k8, [0, 3], halo_hops=2, halo_budget_bytes=budget)
        assert lg.halo_hops == hops, budget
        want = {0: n, 1: len(one.global_id), 2: len(full.global_id)}[hops]
        assert len(lg.global_id) == want
    # what was read from the shards grows with the hops, and the set's own shards count
    assert 0 < isolated.bytes_read < one.bytes_read < full.bytes_read


def test_isolated_set_streamed_from_the_shards_equals_the_held_one(cora_k8):
    held = load_chunk_set(cora_k8, [0, 3])
    streamed = load_chunk_set(cora_k8, [0, 3], hold_in_edges=False)
    assert streamed.full_src_global is None and held.full_src_global is not None
    assert (streamed.global_id == held.global_id).all() and torch_equal(streamed.x, held.x)
    assert torch_equal(streamed.y, held.y) and (streamed.split == held.split).all()
    assert (streamed.csr.indptr == held.csr.indptr).all() and (streamed.csr.indices == held.csr.indices).all()
    assert streamed.csr.indices.dtype == np.int32 and np.allclose(streamed.coverage, held.coverage)
    assert streamed.bytes_read == held.bytes_read  # the same datasets, read once each
    # a halo that fits the budget is still read (and its in-edges held); one that does not falls back
    fits = load_chunk_set(cora_k8, [0, 3], halo_hops=2, hold_in_edges=False)
    assert fits.halo_hops == 2 and fits.full_src_global is not None
    # the streamed pass that found the halo fits read the set's in-edges and node arrays once more, not its features
    features = held.x.numel() * held.x.element_size()
    assert fits.bytes_read == load_chunk_set(cora_k8, [0, 3], halo_hops=2).bytes_read + held.bytes_read - features
    over = load_chunk_set(cora_k8, [0, 3], halo_hops=2, halo_budget_bytes=0, hold_in_edges=False)
    assert over.halo_hops == 0 and over.full_src_global is None and len(over.global_id) == held.num_owned


def torch_equal(a, b) -> bool:
    return a.dtype == b.dtype and bool((a == b).all())


# MODEL:LAYERS[:BLOCKS] (tests/mpi/eval_check.py): the benchmark blocks take the layer-by-layer path
EVAL_CASES = ["gcn:2", "sage:3", "gat:2", "gin:2", "gcn:2:residual+layer", "sage:2:batch", "gat:2:residual+layer"]


@pytest.fixture(scope="module")
def eval_checks(cora_dir, cora_k8, tmp_path_factory):
    """Every case in one 4-rank launch (start-up, not the check, is what costs)."""
    out = tmp_path_factory.mktemp("eval")
    r = run_mpi(4, ROOT / "tests/mpi/eval_check.py", cora_k8, cora_dir, out, *EVAL_CASES)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("case", EVAL_CASES)
def test_distributed_eval_equals_centralized(eval_checks, case):
    import json

    model, _, *blocks = case.split(":")
    rows = [json.loads((eval_checks / case.replace(":", "-") / f"rank{i}.json").read_text()) for i in range(4)]
    assert sum(row["nodes"] for row in rows) == 2708
    assert max(row["max_abs_err"] for row in rows) < 1e-4
    assert all(row["eval_bytes"] > 0 for row in rows)
    streams = model in ("gcn", "sage") and not blocks
    assert rows[0]["streams"] == streams  # both paths are checked
    if streams:  # run first: the streamed path never builds the int64 [2, E] edge list
        assert not any(row["edge_index_built"] for row in rows)


def test_evaluator_can_free_the_in_edges_once_its_blocks_are_built(eval_checks):
    import json

    rows = [json.loads((eval_checks / f"release-rank{i}.json").read_text()) for i in range(4)]
    assert all(row["freed"] and row["refused"] for row in rows)
    assert max(row["max_abs_err"] for row in rows) == 0.0


def test_block_patterns_hold_each_range_of_sources_from_a_stream_of_chunks():
    from grappa.train.distributed_eval import _block_patterns

    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 50, 400).astype(np.int32), np.sort(rng.integers(0, 20, 400))
    ranges = [(0, 10), (35, 50), (10, 35), (35, 35)]  # ring order, not sorted; one empty (a padding block)
    chunks = [(src[lo:lo + 64], dst[lo:lo + 64]) for lo in range(0, 400, 64)]  # in destination order
    patterns = _block_patterns(iter(chunks), ranges, 20)
    for (lo, hi), (crow, col) in zip(ranges, patterns):
        assert crow.dtype == col.dtype == np.int32 and len(crow) == 21
        got = np.zeros((20, max(hi - lo, 1)))
        np.add.at(got, (np.repeat(np.arange(20), np.diff(crow)), col), 1)
        want = np.zeros_like(got)
        keep = (src >= lo) & (src < hi)
        np.add.at(want, (dst[keep], src[keep] - lo), 1)
        assert (got == want).all() and crow[-1] == keep.sum()
        for v in range(20):  # each row's sources keep the stream's order
            assert (col[crow[v]:crow[v + 1]] == src[keep][dst[keep] == v] - lo).all()


def test_gather_rows_reads_a_dense_span_at_once_and_sparse_rows_one_by_one(tmp_path):
    data = np.arange(400, dtype=np.float32).reshape(100, 4)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = data
    with h5py.File(tmp_path / "d.h5", "r") as f:
        sparse = np.array([99, 0, 99])  # any order, repeats: 2 distinct rows over a span of 100
        got, nbytes = gather_rows(f["x"], sparse, max_span=16)
        np.testing.assert_array_equal(got, data[sparse])
        assert nbytes == 2 * 16  # only the wanted rows
        dense = np.array([90, 0, 10, 20, 30, 40, 50, 60, 70, 80])  # a row in 10: one read of the span
        got, nbytes = gather_rows(f["x"], dense, max_span=16)
        np.testing.assert_array_equal(got, data[dense])
        assert nbytes == 91 * 16
        got, nbytes = gather_rows(f["x"], sparse)  # no limit (ShardRows): the span
        np.testing.assert_array_equal(got, data[sparse])
        assert nbytes == 100 * 16
