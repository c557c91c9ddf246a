from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from translrec_dist.evaluation.ranking import all_metrics, ranking_metrics, target_ranks


def test_ranking_metrics_against_hand_computed_values():
    ranks = np.array([0, 3, 12, 60])  # 0-based positions of the target among all items
    m = ranking_metrics(ranks, ks=(10, 50))
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(5)) / 4)
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["ndcg@50"] == pytest.approx((1.0 + 1 / math.log2(5) + 1 / math.log2(14)) / 4)
    assert m["recall@50"] == pytest.approx(0.75)
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 13 + 1 / 61) / 4)


def test_target_ranks_full_catalog_with_and_without_history_masking():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3],
                           [0.2, 0.8, 0.9, 0.1, 0.6]])
    targets = torch.tensor([2, 4])
    history = [[0, 3], [2, 4]]  # user 1 re-consumes its target (4): it must stay rankable
    ranks, masked = target_ranks(scores, targets, history)
    assert ranks.tolist() == [2, 2]  # 0.9 and 0.7 beat 0.5; 0.8 and 0.9 beat 0.6
    assert masked.tolist() == [0, 1]  # user 0's history removed; user 1 keeps 0.8 above its target


def test_all_metrics_reports_cold_start_targets_separately():
    ranks, masked = np.array([0, 9, 20]), np.array([0, 5, 10])
    cold = np.array([False, True, True])
    m = all_metrics(ranks, masked, cold, ks=(10,))
    assert m["num_cold"] == 2 and m["num_examples"] == 3
    assert m["cold_recall@10"] == pytest.approx(0.5)
    assert m["cold_recall@10_masked"] == pytest.approx(0.5)
    assert m["cold_ndcg@10_masked"] == pytest.approx((1 / math.log2(7)) / 2)
    assert m["recall@10"] == pytest.approx(2 / 3)


def test_retrieval_examples_histories_cold_items_and_popularity(tiny_cfg):
    from translrec_dist.data.retrieval import build_retrieval_data

    cfg = tiny_cfg("task=retrieval", "data.history_length=2")
    inter = pd.DataFrame({"user_id": ["u"] * 5 + ["v"] * 4,
                          "item_id": ["a", "b", "c", "d", "e", "b", "a", "c", "x"],
                          "timestamp": [1, 2, 2, 3, 4, 1, 2, 3, 4]})
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e", "x", "z"],
                          "title": ["A", "B", "C", "D", "E", "X", ""]})
    data = build_retrieval_data(inter, items, cfg)
    assert list(data.item_ids) == ["a", "b", "c", "d", "e", "x"]  # empty text: not in the catalog
    test = data.splits["test"].set_index("user_id")
    assert test.loc["u", "label"] == 4 and test.loc["u", "history"] == [0, 1, 2, 3]
    assert test.loc["u", "text"] == "D ; C"  # newest first, history_length=2
    assert bool(test.loc["v", "cold"])  # x never occurs in a training interaction
    assert bool(test.loc["u", "cold"])  # e is only u's test target
    valid = data.splits["valid"].set_index("user_id")
    assert valid.loc["u", "label"] == 3 and valid.loc["v", "label"] == 2
    assert data.popularity.tolist() == [2, 2, 1, 0, 0, 0]  # train: u: a b c, v: b a
    assert len(data.splits["train"]) == 2 + 1  # positions 1..2 of u, 1 of v


def test_ties_count_against_the_model_so_a_collapsed_model_scores_zero():
    # Every item gets the same vector (a collapsed model): every score ties with the target's.
    items = torch.ones(200, 8)
    users = torch.randn(6, 8)
    targets = torch.tensor([0, 5, 17, 99, 150, 199])
    ranks, masked = target_ranks(users @ items.T, targets, [[1, 2]] * 6)
    m = all_metrics(ranks.numpy(), masked.numpy(), np.zeros(6, bool), ks=(10,))
    assert m["ndcg@10"] == pytest.approx(0.0) and m["ndcg@10_masked"] == pytest.approx(0.0)
    assert ranks.tolist() == [199] * 6 and masked.tolist() == [197] * 6
    # One tie above a unique winner: the target shares rank with the tied item (counted above it).
    r, _ = target_ranks(torch.tensor([[0.5, 0.9, 0.5, 0.1]]), torch.tensor([0]), [[]])
    assert r.tolist() == [2]


def test_all_metrics_reports_warm_targets_separately():
    m = all_metrics(np.array([0, 9, 20]), np.array([0, 5, 10]), np.array([False, True, True]), ks=(10,))
    assert m["warm_recall@10"] == pytest.approx(1.0) and m["warm_ndcg@10_masked"] == pytest.approx(1.0)


def test_hit_precision_map_match_sklearn_and_a_hand_count():
    """hit@K (top-k accuracy), ndcg@K and the average precision of each user's ranking against sklearn;
    precision@K against a count of the targets inside each user's top K."""
    from sklearn.metrics import average_precision_score, ndcg_score, top_k_accuracy_score

    rng = np.random.default_rng(3)
    users, items = 200, 40
    scores = torch.tensor(rng.normal(size=(users, items)))  # continuous: no ties
    targets = torch.tensor(rng.integers(0, items, size=users))
    ranks, _ = target_ranks(scores, targets, [[] for _ in range(users)])
    m = ranking_metrics(ranks.numpy(), ks=(5, 10))
    s, t = scores.numpy(), targets.numpy()
    onehot = np.eye(items)[t]
    for k in (5, 10):
        assert m[f"hit@{k}"] == pytest.approx(top_k_accuracy_score(t, s, k=k, labels=np.arange(items)))
        assert m[f"ndcg@{k}"] == pytest.approx(ndcg_score(onehot, s, k=k))
        top = np.argsort(-s, axis=1)[:, :k]
        assert m[f"precision@{k}"] == pytest.approx(np.mean([(row == target).sum() / k
                                                              for row, target in zip(top, t, strict=True)]))
        in_top = ranks.numpy() < k  # inside the top K the average precision is sklearn's (one relevant item)
        ap = np.array([average_precision_score(onehot[u], s[u]) for u in range(users)])
        assert m[f"map@{k}"] == pytest.approx(np.where(in_top, ap, 0.0).mean())
    assert 0 < m["map@5"] < m["map@10"] < m["hit@10"]  # the small cases below pin the values themselves


def test_hit_precision_map_hand_computed():
    m = ranking_metrics(np.array([0, 3, 12]), ks=(5,))
    assert m["hit@5"] == pytest.approx(2 / 3)
    assert m["precision@5"] == pytest.approx(2 / 3 / 5)
    assert m["map@5"] == pytest.approx((1 + 1 / 4 + 0) / 3)
