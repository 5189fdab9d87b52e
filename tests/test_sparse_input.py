"""A sparse input's first projection (grappa.sparse_input): the same outputs and gradients as the dense path."""
import pytest
import torch
from grappa.graph.csr import CSR
from grappa.models import build_model, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.sparse_input import SparseLayout, SparseRows, linear


def _bag_of_words(rows=300, cols=200, density=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, cols, generator=g) * (torch.rand(rows, cols, generator=g) < density)


def test_sparse_rows_product_and_weight_gradient_equal_the_dense_ones():
    x = _bag_of_words()
    flat = x.reshape(-1).nonzero().squeeze(1)
    rows = SparseRows(SparseLayout(flat, *x.shape), x.reshape(-1)[flat])
    assert torch.equal(rows.dense(), x)
    w = torch.randn(7, 200, requires_grad=True)
    b = torch.randn(7)
    for n in (300, 120, 0):  # the whole matrix and leading rows (a sampled step's cut)
        sub = rows[:n]
        assert sub.shape == (n, 200) and torch.equal(sub.dense(), x[:n])
        got = linear(sub, w, b)
        (g,) = torch.autograd.grad(got.square().sum(), w)
        want = torch.nn.functional.linear(x[:n], w, b)
        (g_want,) = torch.autograd.grad(want.square().sum(), w)
        assert torch.allclose(got, want, atol=1e-5) and torch.allclose(g, g_want, rtol=1e-5, atol=1e-4)
    assert rows.layout.head(120) is rows.layout.head(120)  # cut once, reused by the next step
    with pytest.raises(TypeError, match="leading rows"):
        rows[5:10]


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_model_on_sparse_input_equals_the_dense_path(name):
    """Training forward and backward with the dropped input as SparseRows equal the dense input's,
    from the same generator state (the same draws), full graph and over a sampled subgraph."""
    x = _bag_of_words(400, 300, 0.02)
    edge_index = torch.randint(0, 400, (2, 2400), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build_model(name, 300, 16, 5, 2).train()
    graph = model.graph(edge_index, 400)
    csr = CSR.from_edges(edge_index[0].numpy(), edge_index[1].numpy(), 400)
    sub = NeighborSampler(csr, [5, 5], seed=2).sample(range(40))

    def step(sparse, sampled):
        model.takes_sparse_input = sparse  # the instance's: the class keeps its own
        model.zero_grad()
        torch.manual_seed(3)
        out = sampled_forward(model, x[torch.from_numpy(sub.nodes)], sub) if sampled else model(x, *graph)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    for sampled in (False, True):
        (out_s, grads_s), (out_d, grads_d) = step(True, sampled), step(False, sampled)
        assert torch.allclose(out_s, out_d, atol=1e-5)
        for gs, gd in zip(grads_s, grads_d):
            assert torch.allclose(gs, gd, rtol=1e-5, atol=1e-5 * float(gd.abs().max()))
    model.takes_sparse_input = True
    assert isinstance(model.input(x, sparse=True), SparseRows)  # the path above was the sparse one
    assert not isinstance(model.input(torch.rand(50, 30) + 0.1, sparse=True), SparseRows)  # dense features
    assert torch.equal(model.eval().input(x, sparse=True), x)  # no dropout outside training
