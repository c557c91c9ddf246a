"""Top-k search over item vectors: exact (matrix product + topk, the default) or approximate (faiss).

Both score by inner product (cosine for normalized vectors). ``index.backend: faiss`` picks the structure by
catalog size (``faiss_index_for``; ``bench/scale.py`` measures each at 10k to 1M items, docs/benchmarks.md):

- up to ``FLAT_MAX`` (50k) items: exact inner product inside faiss (``IndexFlatIP``): one query scans 50k x dim
  floats in about a millisecond, and a graph or inverted lists would only lose recall;
- up to ``IVF_PQ_MIN`` (20M): inverted lists over full vectors (``IndexIVFFlat``), ``nlist = 4 sqrt(n)`` k-means
  cells (trained on at most 64 points per cell) and ``nprobe = max(48, nlist / 64)`` cells searched per query.
  At 1M items (dim 64, clustered vectors: nlist 4000, nprobe 62) that gave recall@10 .969 at 2.1 ms per query
  (batch 1) on a 2-core machine at load 9, built in 277 s there; on the same kind of vectors at 200k items, HNSW
  (M 16, efConstruction 40) built in 38 s and reached only recall .41-.57 at 0.7-1.3 ms per query;
- beyond: the same lists over product-quantized codes (``IndexIVFPQ``, dim/4 bytes per item): memory, not
  recall, is what runs out first at that size (100M x 64 floats is 25 GB). Recall is lower: check it with
  ``bench/retrieval.py --ann`` on your vectors.

An HNSW graph is still what ``FaissIndex(..., index=...)`` or an index file written by an earlier version holds
(``ef_search`` applies to it). ``index.backend: faiss`` needs ``pip install 'translrec-dist[ann]'``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from translrec_dist.errors import ConfigError, DataError

FAISS_FILE = "faiss_hnsw.index"  # the name predates the choice by size: any faiss index type is saved under it
FLAT_MAX = 50_000
IVF_PQ_MIN = 20_000_000


class ExactIndex:
    backend = "exact"

    def __init__(self, embeddings: torch.Tensor):
        self.embeddings = embeddings

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best items per query, best first."""
        scores = queries.float() @ self.embeddings.float().T
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.values.numpy(), top.indices.numpy()

    def save(self, directory: Path) -> None:  # the embeddings file is the index
        pass


def faiss_index_for(embeddings: torch.Tensor, m: int = 32):
    """A filled faiss index over ``embeddings`` of the type their number calls for (module docstring);
    ``m``: HNSW neighbours per node, for an HNSW graph built by hand (``hnsw_index``)."""
    faiss = import_faiss()
    x = np.ascontiguousarray(embeddings.float().numpy())
    n, dim = x.shape
    if n <= FLAT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * math.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        if n < IVF_PQ_MIN or dim % 4:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, dim // 4, 8, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(x[np.sort(sample)])
        index.nprobe = max(48, nlist // 64)  # saved with the index
    index.add(x)
    return index


def hnsw_index(embeddings: torch.Tensor, m: int = 32):
    """An HNSW graph (``m`` neighbours per node) over inner product, for comparing with the choice by size."""
    faiss = import_faiss()
    index = faiss.IndexHNSWFlat(embeddings.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = max(40, 2 * m)
    index.add(np.ascontiguousarray(embeddings.float().numpy()))
    return index


class FaissIndex:
    """A faiss index over inner product (the type chosen by catalog size, see ``faiss_index_for``);
    ``ef_search`` trades latency for recall when it is an HNSW graph."""

    backend = "faiss"

    def __init__(self, embeddings: torch.Tensor, m: int = 32, ef_search: int = 128, index=None):
        self.index = index if index is not None else faiss_index_for(embeddings, m)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, k)
        scores, rows = self.index.search(np.ascontiguousarray(queries.float().numpy()), min(k, self.index.ntotal))
        return scores, rows

    def save(self, directory: Path) -> None:
        from translrec_dist.safe_io import write_bytes  # temporary name + rename, never through a link

        data = import_faiss().serialize_index(self.index)
        write_bytes(Path(directory) / FAISS_FILE, data.tobytes(), directory)

    @classmethod
    def load(cls, directory: Path, embeddings: torch.Tensor, ef_search: int = 128) -> FaissIndex:
        path = Path(directory) / FAISS_FILE
        if not path.exists():  # an index written with backend=exact: build the graph now
            return cls(embeddings, ef_search=ef_search)
        return cls(embeddings, ef_search=ef_search, index=read_faiss(path, embeddings.shape[1], embeddings.shape[0]))


def read_faiss(path: Path, dim: int, rows: int):
    """A saved faiss index, refused (DataError naming the file) unless faiss reads it as one of the types
    ``faiss_index_for`` writes (or an HNSW graph), over inner product, ``dim`` wide and holding ``rows`` items."""
    from translrec_dist.safe_io import check_regular

    faiss = import_faiss()
    data = np.frombuffer(check_regular(path, "faiss index").read_bytes(), dtype=np.uint8)
    try:
        index = faiss.deserialize_index(data)
    except RuntimeError:
        index = None
    kinds = (faiss.IndexFlatIP, faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexHNSW)
    if (not isinstance(index, kinds) or index.d != dim or index.ntotal != rows
            or index.metric_type != faiss.METRIC_INNER_PRODUCT):
        raise DataError(f"{path}: not a faiss index of {rows} {dim}-dimensional vectors written by translrec index; "
                        f"rebuild it: translrec index --model MODEL --backend faiss")
    return index


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("index.backend=faiss needs faiss: pip install 'translrec-dist[ann]' (faiss-cpu), or use "
                          "index.backend=exact") from None
    return faiss


def build_vector_index(backend: str, embeddings: torch.Tensor, directory: Path | None = None):
    """The search structure for ``embeddings``; ``directory``: load a saved one if there is one."""
    if backend == "exact":
        return ExactIndex(embeddings)
    if backend == "faiss":
        return FaissIndex.load(directory, embeddings) if directory is not None else FaissIndex(embeddings)
    raise ConfigError(f"index.backend={backend!r}: use exact or faiss")
