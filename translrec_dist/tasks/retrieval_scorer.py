"""The retrieval task's scorer (``tasks.base.Scorer``): the bi-encoder's item tower encodes item texts (plus the
item-id vector of a trained item), its user tower encodes a history rendered as text, newest first, as in
training (``data.history_template``, ``data.history_length``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from translrec_dist.data.examples import render_history
from translrec_dist.models.encoding import encode_texts
from translrec_dist.training.precision import resolve_precision


class RetrievalScorer:
    def __init__(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        # The run's precision: a model trained under bf16 autocast is served under it too (when the device has it).
        self.precision = resolve_precision(cfg.train.precision, on_gpu=self.device.type == "cuda")[0]
        self.dim = int(model.encoder.config.hidden_size)
        self.history_length = cfg.data.history_length

    def encode(self, texts: list[str], tower: str, positions: np.ndarray | None = None) -> torch.Tensor:
        return encode_texts(lambda batch: self.model(**batch, encode=tower), texts, self.tokenizer,
                            self.cfg.data.max_length, device=self.device, precision=self.precision,
                            extra=None if positions is None else {"item_index": positions})

    def catalog(self, source) -> tuple[list[str], list[str]]:
        text = source()[2]  # the export keeps no catalog: its data config's items, as in training
        trained = text[text != ""]
        return trained.index.astype(str).tolist(), trained.tolist()

    def item_vectors(self, texts: list[str], positions: np.ndarray) -> torch.Tensor:
        return self.encode(texts, "items", np.asarray(positions, dtype=np.int64))

    def search_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return items

    def user_vectors(self, histories: list[list[tuple[str, int]]], items: torch.Tensor) -> torch.Tensor:
        queries = []
        for history in histories:
            newest = [text for text, _ in history[::-1][: self.history_length]]
            queries.append(render_history(range(len(newest)), pd.Series(newest, dtype=object), self.cfg.data))
        return self.encode(queries, "users")
