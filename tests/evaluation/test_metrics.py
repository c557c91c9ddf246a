import json

import numpy as np
import pytest

from translrec_dist.evaluation.metrics import binary_metrics, regression_metrics


def test_ctr_metrics_match_hand_computed_values():
    scores = np.array([2.0, -1.0, 0.5, -3.0])  # logits
    labels = np.array([1.0, 0.0, 0.0, 1.0])
    m = binary_metrics(scores, labels)
    p = 1 / (1 + np.exp(-scores))
    expected_logloss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert m["logloss"] == pytest.approx(expected_logloss)
    assert m["accuracy"] == pytest.approx(0.5)  # predictions 1,0,1,0 vs 1,0,0,1
    # positives (2.0, -3.0) vs negatives (-1.0, 0.5): pairs won = 2.0>-1, 2.0>0.5 -> 2 of 4
    assert m["auc"] == pytest.approx(0.5)


def test_rating_metrics():
    m = regression_metrics(np.array([3.0, 4.0, 5.0]), np.array([4.0, 4.0, 3.0]))
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 4) / 3)) and m["mae"] == pytest.approx(1.0)


def test_auc_with_one_class_is_null_with_a_warning_and_eval_json_stays_strict(caplog):
    """AUC is undefined with one class: None (JSON null), never NaN, which strict JSON parsers reject."""
    m = binary_metrics(np.array([0.1, 0.2]), np.array([1.0, 1.0]))
    assert m["auc"] is None and m["logloss"] is not None
    assert "auc cannot be computed on 2 examples, all with label 1: written as null" in caplog.text
    assert json.loads(json.dumps(m, allow_nan=False))["auc"] is None
    rating = regression_metrics(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))  # a NaN score
    assert rating["rmse"] is None and json.dumps(rating, allow_nan=False)
