"""Top-k search over item vectors: exact (matrix product + topk, the default) or approximate (faiss HNSW).

Both score by inner product (cosine for normalized vectors). The approximate index is for catalogs where one
matrix product per query is too slow (millions of items); ``bench/retrieval.py --ann`` measures latency and
recall@10 of both. ``index.backend: faiss`` needs ``pip install 'translrec-dist[ann]'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from translrec_dist.errors import ConfigError, DataError

FAISS_FILE = "faiss_hnsw.index"


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


class FaissIndex:
    """HNSW graph (M neighbours per node) over inner product; ``ef_search`` trades latency for recall."""

    backend = "faiss"

    def __init__(self, embeddings: torch.Tensor, m: int = 32, ef_search: int = 128, index=None):
        faiss = import_faiss()
        self.index = index
        if self.index is None:
            self.index = faiss.IndexHNSWFlat(embeddings.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = max(40, 2 * m)
            self.index.add(np.ascontiguousarray(embeddings.float().numpy()))
        self.index.hnsw.efSearch = ef_search

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
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
        return cls(embeddings, ef_search=ef_search, index=read_faiss(path, embeddings.shape[1]))


def read_faiss(path: Path, dim: int):
    """A saved HNSW graph, refused (DataError naming the file) unless faiss reads it as one of width ``dim``."""
    from translrec_dist.safe_io import check_regular

    faiss = import_faiss()
    data = np.frombuffer(check_regular(path, "faiss index").read_bytes(), dtype=np.uint8)
    try:
        index = faiss.deserialize_index(data)
    except RuntimeError:
        index = None
    if not isinstance(index, faiss.IndexHNSW) or index.d != dim:
        raise DataError(f"{path}: not an HNSW index of {dim}-dimensional vectors written by translrec index; "
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
