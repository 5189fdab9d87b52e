"""LLCG: the server's view of the full graph read from the shards equals the
graph, samples identically to an in-memory CSR and holds no edge array; the
local-step schedule; bytes equal the parameter vector up and down per round
(real mpirun ranks); the correction changes the model; a dedicated server
trains no part."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.graph.csr import CSR
from grappa.graph.raw import RawGraph
from grappa.sampling import NeighborSampler
from grappa.shards.shard_graph import ShardGraph
from grappa.train.methods.llcg import LLCGOptions, local_steps_of


def test_local_step_schedule_decreases_or_with_inc_k_ends_at_k():
    o = LLCGOptions(local_steps=64, rho=1.1)
    ks = [local_steps_of(o, r, 50) for r in range(50)]
    assert ks[:4] == [64, 59, 53, 49] and ks[-1] == 1 and ks == sorted(ks, reverse=True)
    inc = [local_steps_of(LLCGOptions(local_steps=64, rho=1.1, inc_k=True), r, 50) for r in range(50)]
    assert inc == ks[::-1]
    assert [local_steps_of(LLCGOptions(local_steps=4, rho=2.0), r, 4) for r in range(4)] == [4, 2, 1, 1]


@pytest.mark.parametrize("bad", [{"local_steps": 0}, {"rho": 0.5}, {"server_lr": 0.0}, {"server_steps": -1}])
def test_bad_options_are_clear_errors(bad):
    from grappa.errors import InputError

    with pytest.raises(InputError):
        LLCGOptions(**bad)


def test_shard_graph_is_the_graph_without_holding_its_edges(cora_dir, cora_k8):
    raw = RawGraph(cora_dir)
    src, dst = raw.load_edges()
    csr = CSR.from_edges(src, dst, raw.num_nodes)
    g = ShardGraph(cora_k8)
    n = raw.num_nodes
    assert g.num_nodes == n
    # Per-node arrays only: nothing the size of the edge list stays in memory.
    held = [v for v in vars(g).values() if isinstance(v, np.ndarray)]
    assert held and all(len(v) <= n + 1 for v in held) and csr.num_edges > 2 * n
    nodes = np.arange(n)
    want_src, want_seg = csr.in_edges(nodes)
    pos, seg = g.in_edge_positions(nodes)
    np.testing.assert_array_equal(seg, want_seg)
    np.testing.assert_array_equal(g.sources(pos), want_src)
    assert g.bytes_read == csr.num_edges * 8
    pick = np.array([2707, 5, 5, 1000, 0])
    np.testing.assert_array_equal(g.node_rows(pick, "x"), np.asarray(raw.x)[pick])
    np.testing.assert_array_equal(g.node_rows(pick, "split"), np.asarray(raw.split)[pick])
    # The same random draws give the same sampled subgraph as the in-memory CSR.
    seeds = np.array([3, 77, 1500, 2600])
    a, b = NeighborSampler(csr, [5, 3], 7), NeighborSampler(g, [5, 3], 7)
    sa, sb = a.sample(seeds), b.sample(seeds)
    np.testing.assert_array_equal(sa.nodes, sb.nodes)
    assert torch.equal(sa.edge_index, sb.edge_index)
    g.close()


@pytest.mark.mpi
def test_bytes_are_the_parameters_up_and_down_per_round(cora_dir, tmp_path):
    data = tmp_path / "cora-metis-k2"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", data, "--num-chunks", 2,
                "--method", "metis", "--no-progress")
    assert r.returncode == 0, r.stderr
    common = ["--method", "llcg", "--data", str(data), "--no-progress", "--batch-size", "32", "--epochs", "3",
              "--local-steps", "4", "--rho", "2", "--server-batch-size", "512", "--dropout", "0"]
    plan = [{"out": str(tmp_path / f"s{s}"), "args": [*common, "--server-steps", str(s)]} for s in (0, 2)]
    plan.append({"out": str(tmp_path / "dedicated"), "args": [*common, "--server-steps", "2", "--dedicated-server"]})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = run_mpi(2, ROOT / "bench/run_seeds.py", "--plan", tmp_path / "plan.json")
    assert r.returncode == 0, r.stderr[-3000:]
    none, two, ded = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("s0", "s2", "dedicated"))
    n, p, rounds = two["num_params"], 2, 3
    assert two["local_steps_schedule"] == [4, 2, 1] and two["local_steps_per_rank"] == [7, 7]
    assert two["server_steps"] == 2 * rounds and two["server_shard_bytes_read"] > 0
    up = 4 * n * 2 * (p - 1) / p  # ring allreduce of the weighted parameters, every rank
    down = 4 * n * (p - 1)  # rank 0's broadcast of the corrected parameters
    assert two["train_bytes_by_category"] == {"train_param": round(rounds * (up + down))}  # rank 0
    assert two["train_bytes_per_rank_per_epoch"] == pytest.approx(up + down / p)
    # Without the correction the server reads nothing and the model differs.
    assert none["server_steps"] == 0 and none["server_shard_bytes_read"] == 0
    assert none["final_model_sha256"] != two["final_model_sha256"]
    # A dedicated server trains nothing itself; the bytes are the same exchange.
    assert ded["local_steps_per_rank"] == [0, 7] and ded["server_steps"] == 2 * rounds
    assert ded["train_bytes_by_category"] == two["train_bytes_by_category"] and 0 < ded["test_metric"] <= 1


def test_validation_streams_edges_in_blocks(cora_k8, monkeypatch):
    """Rank 0 validates the dataset at start-up: edges are checked block by
    block (bounded memory), with the same verdict as one whole read."""
    from grappa.shards import validate

    monkeypatch.setattr(validate, "_EDGE_BLOCK", 97)  # many blocks, boundaries inside destinations
    m = validate.validate_dataset(cora_k8, check_checksums=False)
    assert m["num_edges"] == 10556
