"""Losses and metrics: accuracy for multiclass, mean ROC-AUC for multilabel."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def metric_name(task: str) -> str:
    return "roc_auc" if task == "multilabel" else "accuracy"


def loss_fn(task: str, logits, y, weight=None, reduction: str = "mean"):
    """Mean loss; ``weight`` (per node) turns it into a weighted mean;
    ``reduction="sum"`` gives the plain sum over nodes (distributed exact means)."""
    if task == "multilabel":
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
    else:
        per = F.cross_entropy(logits, y, reduction="none")
    if reduction == "sum":
        return per.sum()
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum().clamp_min(1e-12)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over label columns of the rank-based (Mann-Whitney) ROC-AUC."""
    aucs = []
    for s, t in zip(scores.T, labels.T):
        pos = t > 0.5
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = torch.empty_like(s, dtype=torch.float64)
        ranks[torch.argsort(s)] = torch.arange(1, len(s) + 1, dtype=torch.float64)
        aucs.append(float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return sum(aucs) / max(len(aucs), 1)


def compute_metric(task: str, logits, y) -> float:
    if len(y) == 0:
        return float("nan")
    if task == "multilabel":
        return roc_auc(logits, y)
    return float((logits.argmax(1) == y).float().mean())
