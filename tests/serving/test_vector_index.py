"""faiss index type chosen by catalog size: flat, IVF over full vectors, IVF-PQ; each finds the exact neighbours
(or most of them), and a saved index keeps its search settings."""

from __future__ import annotations

import faiss  # noqa: F401  (the [dev] extra installs faiss-cpu: a missing faiss fails, never skips)
import numpy as np
import pytest
import torch

from translrec_dist.serving import vector_index
from translrec_dist.serving.vector_index import ExactIndex, FaissIndex


def clustered(n, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, size=n)] + 0.3 * rng.standard_normal((n, dim))
    return torch.nn.functional.normalize(torch.tensor(x, dtype=torch.float32), dim=1)


def recall_at_10(index, exact, queries):
    got, truth = index.search(queries, 10)[1], exact.search(queries, 10)[1]
    return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])


@pytest.mark.parametrize("flat_max,pq_min,kind,min_recall", [
    (10_000, 10**9, "IndexFlatIP", 1.0),
    (1_000, 10**9, "IndexIVFFlat", 0.95),
    (1_000, 2_000, "IndexIVFPQ", 0.6),   # 8 bytes per 32-dim vector: coarse scores, for memory-bound catalogs
])
def test_index_type_by_catalog_size(monkeypatch, tmp_path, flat_max, pq_min, kind, min_recall):
    monkeypatch.setattr(vector_index, "FLAT_MAX", flat_max)
    monkeypatch.setattr(vector_index, "IVF_PQ_MIN", pq_min)
    items, queries = clustered(4000), clustered(40, seed=1)
    index, exact = FaissIndex(items), ExactIndex(items)
    assert type(index.index).__name__ == kind
    assert recall_at_10(index, exact, queries) >= min_recall
    index.save(tmp_path)
    again = FaissIndex.load(tmp_path, items)
    assert type(again.index).__name__ == kind
    if kind != "IndexFlatIP":
        assert again.index.nprobe == index.index.nprobe == 48  # max(48, nlist / 64): saved with the index
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])


def test_an_hnsw_graph_still_searches_with_its_ef_search():
    items, queries = clustered(2000), clustered(20, seed=1)
    index = FaissIndex(items, ef_search=64, index=vector_index.hnsw_index(items, m=16))
    assert index.index.hnsw.efSearch == 64
    assert recall_at_10(index, ExactIndex(items), queries) >= 0.9
