"""Distributed evaluation: each rank scores its rows, rows are gathered and de-duplicated by example id.

Metrics come from scikit-learn: binary (auc, logloss, accuracy) and regression (rmse, mae).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

log = logging.getLogger(__name__)


def binary_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Logits against 0/1 labels (task ctr). A metric that cannot be computed (AUC of one class, anything of no
    rows or of NaN scores) is None, written as JSON null: NaN is not JSON, and strict parsers reject it."""
    ok = computable(scores, labels)
    probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    out = {"logloss": float(log_loss(labels, probs, labels=[0, 1])) if ok else None,
           "accuracy": float(accuracy_score(labels, probs >= 0.5)) if ok else None,
           "auc": float(roc_auc_score(labels, probs)) if ok and len(np.unique(labels)) == 2 else None}
    return finite_or_none(out, len(labels), np.unique(labels))


def regression_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Predicted against true values (task rating); None where it cannot be computed, as above."""
    ok = computable(scores, labels)
    out = {"rmse": float(np.sqrt(mean_squared_error(labels, scores))) if ok else None,
           "mae": float(mean_absolute_error(labels, scores)) if ok else None}
    return finite_or_none(out, len(labels), np.unique(labels))


def computable(scores: np.ndarray, labels: np.ndarray) -> bool:
    return len(labels) > 0 and bool(np.isfinite(scores).all())  # sklearn raises on NaN scores (a diverged model)


def finite_or_none(metrics: dict, n: int, classes: np.ndarray) -> dict[str, float | None]:
    out = {k: v if v is not None and math.isfinite(v) else None for k, v in metrics.items()}
    undefined = [k for k, v in out.items() if v is None]
    if undefined:
        why = f"{n} examples" + (f", all with label {classes[0]:g}" if len(classes) == 1 else "")
        log.warning("%s cannot be computed on %s: written as null", ", ".join(undefined), why)
    return out


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
