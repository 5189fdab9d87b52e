"""Models: PyG layers, plug-in models, exact layer-wise inference."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from grappa.models import build_model, layerwise_inference


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin", "mlp"])
@pytest.mark.parametrize("layers", [2, 3])
def test_layerwise_inference_equals_full_forward(cora, name, layers):
    torch.manual_seed(0)
    model = build_model(name, cora.info.num_features, 16, cora.info.num_classes, layers, heads=2).eval()
    with torch.no_grad():
        full = model(cora.x, cora.edge_index)
    lw = layerwise_inference(model, cora.x, cora.csr, batch_size=500)  # 6 batches per layer
    torch.testing.assert_close(lw, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["gcn", "sage", "gat"])
@pytest.mark.parametrize("residual,norm", [(True, "layer"), (False, "batch"), (True, "none")])
def test_benchmark_blocks_layerwise_and_sampled_equal_the_full_forward(cora, name, residual, norm):
    """--residual/--norm: the blocks' exact layer-wise inference and a full-fan-out
    sampled step (layers trimmed to their targets; mean and attention) give the
    full forward's rows."""
    from grappa.models import sampled_forward
    from grappa.sampling import NeighborSampler

    torch.manual_seed(0)
    model = build_model(name, cora.info.num_features, 16, cora.info.num_classes, 3, heads=2, residual=residual,
                        norm=norm).eval()
    assert not model.streams and model.blocks.residual == residual
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
    with torch.no_grad():
        full = model(cora.x, cora.edge_index)
        lw = layerwise_inference(model, cora.x, cora.csr, batch_size=500)
        seeds = torch.arange(0, 2708, 97).numpy()
        sub = NeighborSampler(cora.csr, [-1, -1, -1], 0).sample(seeds)
        sampled = sampled_forward(model, cora.x[torch.from_numpy(sub.nodes)], sub)
    torch.testing.assert_close(lw, full, atol=1e-5, rtol=1e-4)
    if name != "gcn":  # a sample's GCN weights use its own degrees (the outer hop's are partial)
        torch.testing.assert_close(sampled, full[torch.from_numpy(seeds)], atol=1e-5, rtol=1e-4)


def test_residual_block_passes_its_input_through_when_its_conv_is_silent():
    """h + dropout(ReLU(conv(norm(h)))): with every conv zero the output is the
    output projection of the last norm of the input projection, whatever the edges."""
    torch.manual_seed(0)
    x, ei = torch.randn(30, 8), torch.randint(0, 30, (2, 90))
    for residual in (True, False):
        m = build_model("sage", 8, 12, 3, 2, 0.0, residual=residual, norm="layer").eval()
        with torch.no_grad():
            for conv in m.convs:
                for q in conv.parameters():
                    q.zero_()
            got = m(x, ei)
            h = torch.relu(m.input_lin(x)) if residual else torch.zeros(30, 12)
            want = m.output_lin(m.norms[-1](h))
        torch.testing.assert_close(got, want)
    assert sum(q.numel() for q in m.parameters()) == 8 * 12 + 12 + 2 * (2 * 12 * 12 + 12) + 3 * 2 * 12 + 12 * 3 + 3


def test_blocks_refused_by_a_model_that_cannot_take_them():
    from grappa.models import MODELS

    class Plain(torch.nn.Module):
        def __init__(self, in_dim, hidden, out_dim, num_layers=2, dropout=0.5):
            super().__init__()
            self.lin = torch.nn.Linear(in_dim, out_dim)

    MODELS["plain-test"] = Plain
    try:
        with pytest.raises(ValueError, match="does not take --residual or --norm"):
            build_model("plain-test", 4, 8, 2, residual=True)
        assert isinstance(build_model("plain-test", 4, 8, 2), Plain)
    finally:
        del MODELS["plain-test"]


def test_plain_pyg_model_plugs_in(cora):
    from torch_geometric.nn import GraphConv

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = GraphConv(cora.info.num_features, cora.info.num_classes)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    m = Plain()
    out = layerwise_inference(m, cora.x, cora.csr)
    assert out.shape == (cora.num_nodes, cora.info.num_classes)


def test_dropout_keeps_the_right_fraction_unbiased():
    from grappa.models import dropout

    torch.manual_seed(0)
    x = torch.ones(400_000)
    for p in (0.1, 0.5, 0.6):
        y = dropout(x, p, True)
        assert abs(float((y > 0).float().mean()) - (1 - p)) < 0.005
        assert abs(float(y.mean()) - 1.0) < 0.01  # rescaled: unbiased
    assert torch.equal(dropout(x, 0.5, False), x) and torch.equal(dropout(x, 0.0, True), x)
    assert not dropout(x, 1.0, True).any()


def test_sparse_input_dropout_draws_for_the_nonzeros_only_and_its_path_depends_on_the_input():
    from grappa.models import NonzeroCache, dropout

    x = torch.rand(300, 200) * (torch.rand(300, 200) < 0.02)  # bag-of-words-like: 2% nonzero
    idx = NonzeroCache()(x)  # found at first use: the path depends on the input, not on the cache's past
    assert torch.equal(idx, x.reshape(-1).nonzero().squeeze(1))
    for p in (0.5, 0.6):
        torch.manual_seed(1)
        y = dropout(x, p, True, nonzero=idx)
        after = torch.rand(1)
        torch.manual_seed(1)
        torch.randint(-2**63, 2**63 - 1, ((len(idx) + 3) // 4,), dtype=torch.int64)
        assert torch.equal(torch.rand(1), after)  # it drew for the nonzeros only
        kept = y.reshape(-1)[idx] != 0
        assert not y.reshape(-1)[x.reshape(-1) == 0].any()  # a zero stays zero
        assert torch.allclose(y.reshape(-1)[idx][kept], x.reshape(-1)[idx][kept] * 65536 / round((1 - p) * 65536))
        assert abs(float(kept.float().mean()) - (1 - p)) < 0.05
    ones = torch.ones(400_000) * (torch.arange(400_000) % 10 == 0)  # 40,000 nonzeros: the keep rate
    y = dropout(ones, 0.5, True, nonzero=NonzeroCache()(ones))
    assert abs(float(y.sum()) / 40_000 - 1.0) < 0.02  # rescaled: unbiased
    cache = NonzeroCache()
    x.mul_(2.0)  # changed in place: its support may have changed
    assert torch.equal(cache(x), idx) and cache(x) is cache(x)  # scanned once while unchanged
    x.view(-1)[0] = 1.0
    assert len(cache(x)) == len(idx) + (0 if 0 in idx else 1)  # an in-place change rescans
    dense_x = torch.rand(50, 40) + 0.1
    assert cache(dense_x) is None  # denser than max_density: the dense path
    assert cache(torch.rand(5, 5, requires_grad=True)) is None


def test_model_input_dropout_is_the_same_with_a_cold_or_warm_cache(cora):
    """Epoch after epoch, a model's input dropout (cache warm) equals a fresh model's (cache cold)
    from the same generator state: a resumed run draws what an uninterrupted one did."""
    torch.manual_seed(0)
    model = build_model("gcn", cora.info.num_features, 16, cora.info.num_classes, 2).train()
    for _ in range(3):
        state = torch.get_rng_state()
        got = model.input(cora.x)
        torch.set_rng_state(state)
        fresh = build_model("gcn", cora.info.num_features, 16, cora.info.num_classes, 2).train()
        torch.set_rng_state(state)
        assert torch.equal(got, fresh.input(cora.x))
    assert model._input_nonzero(cora.x) is not None  # Cora's features are sparse: the cached path ran


@pytest.mark.parametrize("name", ["gcn", "sage", "gin", "mlp"])
def test_targets_only_layer_equals_the_square_one(name):
    """The distributed evaluator computes only the first (owned) rows: same
    values as the square layer over every node, cut afterwards."""
    torch.manual_seed(0)
    n, t, e = 500, 120, 4000
    ei = torch.stack([torch.randint(0, n, (e,)), torch.randint(0, t, (e,))])  # edges into the targets only
    deg = torch.bincount(ei[1], minlength=n) + torch.randint(0, 3, (n,))  # global degrees >= local
    x = torch.randn(n, 12)
    m = build_model(name, 12, 16, 5, 2).eval()
    assert m.computes_targets_only
    square, rect = m.graph_global(ei, n, deg, t), m.graph_targets(ei, n, deg, t)
    with torch.no_grad():
        for i in range(2):
            xi = x if i == 0 else torch.randn(n, 16)
            want = m.layer(i, xi, *square)[:t]
            got = m.layer(i, xi, *rect, targets=t)
            assert got.shape == (t, want.shape[1])
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gcn", "sage"])
@pytest.mark.parametrize("dims", [(12, 5), (5, 12)])  # project first, sum first (models.project_first)
def test_sparse_layer_equals_pyg_conv_in_either_order(name, dims):
    """The sparse layer chooses whether to project before or after the sum by
    cost: either way, outputs and gradients are PyG's conv's over the edge list."""
    from grappa.models import graph_args, project_first

    torch.manual_seed(0)
    n = 300
    ei = torch.randint(0, n, (2, 3000))
    m = build_model(name, dims[0], 8, dims[1], 1)
    adj = graph_args(m, ei, n)
    assert project_first(adj[0], *dims) == (dims[0] > dims[1])
    x1 = torch.randn(n, dims[0], requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    got = m.layer(0, x1, *adj)
    want = m.convs[0](x2, *m.prepare(ei, n)) if name == "gcn" else m.convs[0](x2, ei)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(got)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)


def test_pyg_generated_sources_are_removed_from_the_temp_directory(tmp_path):
    """PyG writes each conv class's compiled propagate module to the temp
    directory and keeps it; build_model removes them (a fresh process, so
    PyG generates them here), and the model still runs."""
    import subprocess
    import sys

    code = """if True:
        import sys, torch
        from grappa.models import build_model
        files = []
        for name in ("gcn", "sage", "gat", "gin"):
            m = build_model(name, 4, 8, 3, heads=2)
            files += [sys.modules[type(c)._jinja_propagate.__module__].__file__ for c in m.convs]
            m(torch.randn(5, 4), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
        print("\\n".join(sorted(set(files))))
    """
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    generated = out.split()
    assert len(generated) >= 4 and all(Path(f).parent == tmp_path for f in generated)  # PyG wrote them there
    assert not any(Path(f).exists() for f in generated) and not list(tmp_path.glob("*.py"))
