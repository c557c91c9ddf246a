"""Distributed evaluation: each rank scores its rows, rows are gathered and de-duplicated by example id.

Metrics come from scikit-learn: binary (auc, logloss, accuracy) and regression (rmse, mae).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score


def binary_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Logits against 0/1 labels (task ctr)."""
    probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    out = {"logloss": float(log_loss(labels, probs, labels=[0, 1])),
           "accuracy": float(accuracy_score(labels, probs >= 0.5))}
    out["auc"] = float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else float("nan")
    return out


def regression_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Predicted against true values (task rating)."""
    return {"rmse": float(np.sqrt(mean_squared_error(labels, scores))),
            "mae": float(mean_absolute_error(labels, scores))}


@torch.no_grad()
def predict_scores(model, loader, accelerator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(example_id, score, label) for every row of the loader, gathered from all ranks, each row once."""
    model.eval()
    ids, scores, labels = [], [], []
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**batch)
        ids.append(batch["example_id"])
        scores.append(logits.float())
        labels.append(batch["labels"])
    model.train()
    local = [torch.cat(x) if x else torch.empty(0) for x in (ids, scores, labels)]
    ids_all, scores_all, labels_all = (accelerator.gather(t).cpu().numpy() for t in local)
    keep = ids_all >= 0
    ids_all, first = np.unique(ids_all[keep], return_index=True)
    return ids_all, scores_all[keep][first], labels_all[keep][first]


def evaluate(model, loader, accelerator, metrics_fn: Callable[[np.ndarray, np.ndarray], dict]) -> dict[str, float]:
    ids, scores, labels = predict_scores(model, loader, accelerator)
    metrics = metrics_fn(scores, labels)
    metrics["num_examples"] = int(len(ids))
    return metrics
