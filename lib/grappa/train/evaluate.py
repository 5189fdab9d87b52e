"""Losses and metrics: accuracy for multiclass, ROC-AUC for two classes (the
positive class is 1, as the heterophilous-graphs benchmark and OGB report
tolokers, minesweeper or questions) and mean ROC-AUC for multilabel."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from grappa.errors import InputError

METRICS = ("auto", "accuracy", "roc_auc")


def resolve_metric(requested: str, task: str, num_classes: int) -> str:
    """``--metric auto``: ROC-AUC for multilabel and two-class tasks, else accuracy."""
    if requested == "auto":
        return "roc_auc" if task == "multilabel" or num_classes == 2 else "accuracy"
    if requested == "accuracy" and task == "multilabel":
        raise InputError("--metric", "accuracy is not defined for a multilabel task", "use --metric roc_auc")
    if requested == "roc_auc" and task != "multilabel" and num_classes != 2:
        raise InputError("--metric", f"roc_auc needs two classes or a multilabel task; this graph has {num_classes}",
                         "use --metric accuracy")
    return requested


def auc_inputs(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, 0/1 labels), one column per ROC curve: a two-class task's
    score is the logit margin of class 1 (monotone in its probability)."""
    if y.dim() == 1:
        return (logits[:, 1] - logits[:, 0]).unsqueeze(1), (y == 1).to(logits.dtype).unsqueeze(1)
    return logits, y


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


def _average_ranks(s: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``s``, tied values sharing their mean rank (as sklearn)."""
    vals, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).to(torch.float64)  # the rank of each distinct value's last copy
    return (last - (counts.to(torch.float64) - 1) / 2)[inverse]


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over label columns of the rank-based (Mann-Whitney) ROC-AUC; a
    column with only one class present is skipped."""
    aucs = []
    for s, t in zip(scores.T, labels.T):
        pos = t > 0.5
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = _average_ranks(s)
        aucs.append(float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return sum(aucs) / len(aucs) if aucs else float("nan")


def compute_metric(metric: str, logits, y) -> float:
    if len(y) == 0:
        return float("nan")
    if metric == "roc_auc":
        return roc_auc(*auc_inputs(logits, y))
    return float((logits.argmax(1) == y).float().mean())
