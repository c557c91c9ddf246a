"""Distributed evaluation: each rank scores its rows, rows are gathered and de-duplicated by example id.

Metrics come from scikit-learn: ``ctr`` -> auc, logloss, accuracy; ``rating`` -> rmse, mae.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

log = logging.getLogger(__name__)


def compute_metrics(task: str, scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """A metric that cannot be computed (AUC of one class, anything of no rows) is None, written as JSON null:
    NaN is not JSON, and strict parsers reject eval.json if it holds one."""
    ok = len(labels) > 0 and bool(np.isfinite(scores).all())  # sklearn raises on NaN scores (a diverged model)
    if task == "ctr":
        probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
        out = {"logloss": float(log_loss(labels, probs, labels=[0, 1])) if ok else None,
               "accuracy": float(accuracy_score(labels, probs >= 0.5)) if ok else None,
               "auc": float(roc_auc_score(labels, probs)) if ok and len(np.unique(labels)) == 2 else None}
    else:
        out = {"rmse": float(np.sqrt(mean_squared_error(labels, scores))) if ok else None,
               "mae": float(mean_absolute_error(labels, scores)) if ok else None}
    return finite_or_none(out, len(labels), np.unique(labels))


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


def evaluate(model, loader, accelerator, task: str) -> dict[str, float]:
    ids, scores, labels = predict_scores(model, loader, accelerator)
    metrics = compute_metrics(task, scores, labels)
    metrics["num_examples"] = int(len(ids))
    return metrics
