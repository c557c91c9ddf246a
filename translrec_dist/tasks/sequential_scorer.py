"""The sequential task's scorer (``tasks.base.Scorer``): item vectors are the item tower's (trained items: their
row of the model; items known by text only: the exported item encoder's text vector through the item tower,
with no id vector), a user is the causal transformer's last state over their item vectors, oldest first.
The catalog (ids and texts in the model's order) is the export's ``catalog.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from translrec_dist.errors import DataError
from translrec_dist.models.encoders import load_pretrained_encoder
from translrec_dist.models.encoding import encode_texts, pooled_forward
from translrec_dist.safe_io import check_regular
from translrec_dist.training.precision import resolve_precision

CATALOG_FILE = "catalog.json"  # the export's catalog: ids, texts, training counts in the model's order


class SequentialScorer:
    def __init__(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None):
        self.model, self.tokenizer, self.cfg, self.model_dir = model, tokenizer, cfg, Path(model_dir)
        self.device = torch.device(device or "cpu")
        self.model.to(self.device).eval()
        self.precision = resolve_precision(cfg.train.precision, on_gpu=self.device.type == "cuda")[0]
        self.dim = int(model.cfg.hidden)
        self.history_length = cfg.data.max_history
        self._encoder = None

    def catalog(self, source) -> tuple[list[str], list[str]]:
        path = check_regular(self.model_dir / CATALOG_FILE, "catalog")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            ids, texts = [str(i) for i in info["item_ids"]], [str(t) for t in info["texts"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a catalog written by translrec ({type(e).__name__}); re-export the "
                            f"model") from None
        if len(ids) != len(texts) or len(ids) != self.model.items.num_items:
            raise DataError(f"{path}: {len(ids)} ids and {len(texts)} texts for a model of "
                            f"{self.model.items.num_items} items; re-export the model")
        return ids, texts

    @torch.no_grad()
    def text_vectors(self, texts: list[str]) -> torch.Tensor:
        if not self.model.items.use_text:
            raise DataError("this model has no item text (model.sequence.item_repr=id): it cannot represent items "
                            "it was not trained on; train with item_repr text or text+id")
        if self._encoder is None:  # the item encoder, in plain Hugging Face format at the export's top level
            m = self.cfg.model
            self._encoder = load_pretrained_encoder(str(self.model_dir), m.attn_implementation,
                                                    m.trust_remote_code).to(self.device).eval()
        return encode_texts(pooled_forward(self._encoder, self.cfg.model.pooling), texts, self.tokenizer,
                            self.cfg.data.max_length, device=self.device, precision=self.precision)

    @torch.no_grad()
    def item_vectors(self, texts: list[str], positions: np.ndarray) -> torch.Tensor:
        positions = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        vectors = self.model.items().detach().to(self.device)
        out = torch.empty(len(positions), vectors.shape[1], device=self.device)
        known = positions >= 0
        out[known.to(self.device)] = vectors[positions[known].to(self.device)]
        new = torch.nonzero(~known).flatten().tolist()
        if new:
            text = self.text_vectors([texts[i] for i in new]).to(self.device)
            out[torch.as_tensor(new, device=self.device)] = self.model.items(
                text=text, index=torch.full((len(new),), -1, device=self.device))
        return out.cpu()

    def search_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return F.normalize(items.float(), dim=-1) if self.model.cfg.normalize else items.float()

    @torch.no_grad()
    def user_vectors(self, histories: list[list[tuple[str, int]]], items: torch.Tensor) -> torch.Tensor:
        unknown = sorted({text for h in histories for text, row in h if row < 0})
        vectors = items.to(self.device)
        if unknown:  # history items the index does not hold: encoded from their text, appended
            vectors = torch.cat([vectors, self.item_vectors(unknown, np.full(len(unknown), -1)).to(self.device)])
        extra = {text: len(items) + k for k, text in enumerate(unknown)}
        window = np.full((len(histories), self.history_length), -1, dtype=np.int64)  # right-aligned, PAD = -1
        for b, history in enumerate(histories):
            rows = [row if row >= 0 else extra[text] for text, row in history][-self.history_length:]
            window[b, self.history_length - len(rows):] = rows
        states = self.model.user_vectors(torch.as_tensor(window, device=self.device), vectors).float()
        if self.model.cfg.normalize:  # the model's score: cosine over the temperature
            return (F.normalize(states, dim=-1) / self.model.cfg.temperature).cpu()
        return states.cpu()
