"""Two-class tasks report ROC-AUC (class 1 positive), checked against hand
computations, and the distributed evaluation reports exactly what a
centralized evaluation of the same model gives."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.errors import InputError
from grappa.train.evaluate import auc_inputs, compute_metric, resolve_metric, roc_auc


def test_roc_auc_by_hand():
    # 4 positive-negative pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert roc_auc(torch.tensor([[0.1], [0.4], [0.35], [0.8]]), torch.tensor([[0.], [0.], [1.], [1.]])) == 0.75
    # a tie between a positive and a negative counts one half: (0.5 = 0.5) + 3 wins -> 3.5/4
    assert roc_auc(torch.tensor([[0.5], [0.5], [0.2], [0.9]]), torch.tensor([[1.], [0.], [0.], [1.]])) == 0.875
    # two columns average; a column with one class only is skipped
    two = roc_auc(torch.tensor([[0.1, 0.3], [0.9, 0.2]]), torch.tensor([[0., 1.], [1., 1.]]))
    assert two == 1.0


def test_two_class_logits_score_by_the_margin_of_class_1():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.5], [0.0, -1.0]])  # margins -2, 1, 0.5, -1
    y = torch.tensor([0, 1, 0, 1])
    s, t = auc_inputs(logits, y)
    assert s.flatten().tolist() == [-2.0, 1.0, 0.5, -1.0] and t.flatten().tolist() == [0, 1, 0, 1]
    # pairs (pos 1 vs neg -2, 0.5: 2 wins) + (pos -1 vs -2: win, vs 0.5: loss) -> 3/4
    assert compute_metric("roc_auc", logits, y) == 0.75
    assert compute_metric("accuracy", logits, y) == 0.5


def test_metric_resolution():
    assert resolve_metric("auto", "multiclass", 2) == "roc_auc"
    assert resolve_metric("auto", "multiclass", 7) == "accuracy"
    assert resolve_metric("auto", "multilabel", 112) == "roc_auc"
    assert resolve_metric("accuracy", "multiclass", 2) == "accuracy"  # --metric overrides
    with pytest.raises(InputError, match="--metric"):
        resolve_metric("roc_auc", "multiclass", 7)
    with pytest.raises(InputError, match="--metric"):
        resolve_metric("accuracy", "multilabel", 5)


@pytest.mark.mpi
def test_two_class_graph_reports_roc_auc_and_distributed_equals_centralized(tmp_path):
    from grappa.graph.generators import SBMConfig, generate_sbm
    from grappa.models import build_model
    from grappa.train.cli import run
    from grappa.train.config import TrainConfig
    from grappa.train.data import load_graph

    raw = tmp_path / "sbm2"
    raw.mkdir()
    generate_sbm(SBMConfig(num_nodes=3000, num_classes=2, avg_degree=8, homophily=0.7, num_features=8), raw)
    central = run(TrainConfig(data=str(raw), out=str(tmp_path / "central"), epochs=15, progress=False))
    assert central["metric"] == "roc_auc" and 0.5 < central["test_metric"] <= 1.0
    parts = tmp_path / "sbm2-k4"
    assert run_mpi(2, ROOT / "data_prep/partition.py", "--data", raw, "--out", parts, "--num-chunks", 4,
                   "--no-progress").returncode == 0
    out = tmp_path / "grappa"
    r = run_mpi(2, "-m", "grappa.train", "--method", "grappa", "--data", parts, "--out", out, "--epochs", 15,
                "--eval-every", 3, "--no-progress", timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "result.json").read_text())
    assert res["metric"] == "roc_auc"
    # The best model, evaluated centrally on the raw graph: the same ROC-AUC as the ranks reported.
    g = load_graph(raw)
    model = build_model("gcn", 8, 16, 2).eval()
    model.load_state_dict(torch.load(out / "best_model.pt", weights_only=True))
    with torch.no_grad():
        logits = model(g.x, g.edge_index)
    assert compute_metric("roc_auc", logits[g.test_idx], g.y[g.test_idx]) == pytest.approx(res["test_metric"], abs=1e-6)
    assert compute_metric("roc_auc", logits[g.val_idx], g.y[g.val_idx]) == pytest.approx(res["val_metric"], abs=1e-6)
