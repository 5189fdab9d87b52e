"""CSR construction and the vectorised neighbour sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from grappa.graph.csr import CSR, to_undirected
from grappa.models import build_model, sampled_forward
from grappa.sampling import NeighborSampler
from hypothesis import given, settings
from hypothesis import strategies as st


def test_csr_from_edges_hand_checked():
    csr = CSR.from_edges(np.array([0, 1, 2, 2]), np.array([1, 2, 0, 1]), 3)
    assert csr.indptr.tolist() == [0, 1, 3, 4]
    assert sorted(csr.indices[1:3].tolist()) == [0, 2]
    src, seg = csr.in_edges(np.array([1]))
    assert sorted(src.tolist()) == [0, 2] and seg.tolist() == [0, 0]


def test_to_undirected_dedups():
    s, d = to_undirected(np.array([0, 1, 0]), np.array([1, 0, 1]))
    assert sorted(zip(s.tolist(), d.tolist())) == [(0, 1), (1, 0)]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(0, 400), st.integers(1, 6), st.integers(0, 10**6))
def test_sampler_properties(n, m, fanout, seed):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    src, dst = to_undirected(src, dst)
    csr = CSR.from_edges(src, dst, n)
    edges = set(zip(src.tolist(), dst.tolist()))
    seeds = rng.choice(n, size=min(n, 5), replace=False)
    sub = NeighborSampler(csr, [fanout, fanout], seed).sample(seeds)
    assert sub.nodes[: len(seeds)].tolist() == seeds.tolist()
    assert len(np.unique(sub.nodes)) == len(sub.nodes)
    gs, gd = sub.nodes[sub.edge_index[0].numpy()], sub.nodes[sub.edge_index[1].numpy()]
    assert all(e in edges for e in zip(gs.tolist(), gd.tolist()))  # only real edges
    # hop-1: each seed gets min(in-degree, fanout) distinct in-neighbours
    deg = csr.in_degree()
    first = sub.edge_index[:, : int(np.minimum(deg[seeds], fanout).sum())]
    for i, s in enumerate(seeds):
        got = first[0][first[1] == i]
        assert len(got) == min(deg[s], fanout) and len(set(got.tolist())) == len(got)
    # hop order: the nodes within h hops are a prefix, and an edge into one comes from within h + 1
    hop = np.repeat(np.arange(len(sub.hop_nodes)), np.diff((0, *sub.hop_nodes)))
    assert sub.hop_nodes[-1] == len(sub.nodes) and sub.hop_nodes[0] == len(seeds)
    s_hop, d_hop = hop[sub.edge_index[0].numpy()], hop[sub.edge_index[1].numpy()]
    assert np.all(d_hop < 2) and np.all(s_hop <= d_hop + 1)


def test_sampler_is_uniform():
    # node 0 has 10 in-neighbours; fan-out 2 should pick each about 20% of the time
    csr = CSR.from_edges(np.arange(1, 11), np.zeros(10, np.int64), 11)
    s = NeighborSampler(csr, [2], seed=0)
    counts = np.zeros(11)
    for _ in range(4000):
        sub = s.sample(np.array([0]))
        counts[sub.nodes[sub.edge_index[0].numpy()]] += 1
    freq = counts[1:] / 4000
    assert np.all(np.abs(freq - 0.2) < 0.03), freq


def test_sampler_draws_every_subset_equally_often():
    """Not only each neighbour at rate k/d: each k-subset of a node's d in-neighbours
    at rate 1 / C(d, k) (a draw biased towards some pairs would pass the test above)."""
    csr = CSR.from_edges(np.arange(1, 6), np.zeros(5, np.int64), 6)
    s, draws = NeighborSampler(csr, [3], seed=1), 20000
    seen = {}
    for _ in range(draws):
        sub = s.sample(np.array([0]))
        key = tuple(sorted(sub.nodes[sub.edge_index[0].numpy()].tolist()))
        seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 10 and all(len(k) == 3 and len(set(k)) == 3 for k in seen)
    freq = np.array(list(seen.values())) / draws
    assert np.all(np.abs(freq - 0.1) < 0.015), seen  # 7 standard deviations of one subset's count


@pytest.mark.parametrize("name", ["gcn", "sage", "gin", "mlp", "gat"])
def test_trimmed_forward_gives_the_untrimmed_seed_outputs(name):
    """sampled_forward computes layer i on the rows within L - 1 - i hops only,
    and the seeds' outputs are the plain forward's (GAT runs the plain one)."""
    rng = np.random.default_rng(3)
    n = 400
    src, dst = to_undirected(rng.integers(0, n, 2400), rng.integers(0, n, 2400))
    sub = NeighborSampler(CSR.from_edges(src, dst, n), [4, 3, 2], seed=1).sample(rng.choice(n, 16, replace=False))
    torch.manual_seed(0)
    model = build_model(name, 8, 16, 5, num_layers=3, heads=2).eval()
    x = torch.randn(len(sub.nodes), 8)
    rows, activate = [], model.activate  # each layer's output rows (GCN may sum before its conv's projection)
    model.activate = lambda i, h: rows.append(h.size(0)) or activate(i, h)
    with torch.no_grad():
        got = sampled_forward(model, x, sub)
        want = model(x, sub.edge_index)[: sub.num_seeds]
    assert got.shape == (16, 5) and torch.allclose(got, want, atol=1e-5)
    trimmed = name != "gat"
    assert rows[:3] == ([*sub.hop_nodes[2::-1]] if trimmed else [len(sub.nodes)] * 3)
    assert sub.hop_nodes[0] < sub.hop_nodes[1] < sub.hop_nodes[2] < sub.hop_nodes[3]
