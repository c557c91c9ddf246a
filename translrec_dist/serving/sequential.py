"""Serving a sequential export: the same surface as ``serving.Recommender`` (index, recommend, explain).

The index holds the item tower's vectors of the training catalog plus any new items (``index --items``),
which are encoded from their text alone by the exported item encoder (no id vector: they were never
trained). A user is the sequence of their items (``--user``: from the export's data; ``--history``: item
titles or texts, newest first, matched to the index or encoded from text when new); the causal
transformer's last state scores every indexed item.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from translrec_dist.data.examples import chronological_order, render_item_texts
from translrec_dist.errors import DataError
from translrec_dist.models.encoding import encode_texts, pooled_forward
from translrec_dist.serving.recommender import EMBEDDINGS_FILE, INDEX_DIR, ITEMS_FILE, Recommender, model_fingerprint
from translrec_dist.training.precision import resolve_precision

log = logging.getLogger(__name__)


class SequentialRecommender(Recommender):
    def __init__(self, model, catalog: dict, cfg, model_dir: Path, device: str | None = None):
        self.model, self.cfg, self.model_dir = model, cfg, Path(model_dir)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.model.to(self.device).eval()
        self.precision = resolve_precision(cfg.train.precision, on_gpu=self.device.type == "cuda")[0]
        self.catalog = catalog
        self._source = None
        self._encoder = None
        self.item_ids = np.asarray(catalog["item_ids"], dtype=str)
        self.titles: list[str] = []
        self.texts: list[str] = list(catalog["texts"])
        self.embeddings: torch.Tensor | None = None

    @classmethod
    def handles(cls, model_dir: Path) -> bool:
        from translrec_dist.tasks.sequential import WEIGHTS_FILE

        return (model_dir / WEIGHTS_FILE).is_file()

    @classmethod
    def from_pretrained(cls, model_dir, device: str | None = None, index: bool = True,
                        trust_remote_code: bool = False) -> SequentialRecommender:
        from translrec_dist.models.export import read_export

        model, _, cfg, _ = read_export(model_dir, expect="recommend", trust_remote_code=trust_remote_code)
        rec = cls(model, model.catalog_info, cfg, Path(model_dir), device)
        if index:
            rec.load_index()
        return rec

    def source(self):
        if self._source is None:
            from translrec_dist.data import read_source

            inter, items = read_source(self.cfg)
            self._source = (chronological_order(inter), items, render_item_texts(items, self.cfg.data))
        return self._source

    # ------------------------------------------------------------------ index

    @torch.no_grad()
    def text_vectors(self, texts: list[str]) -> torch.Tensor:
        """Item-tower input for texts that are not in the training catalog (new items)."""
        if not self.model.items.use_text:
            raise DataError("this model has no item text (model.sequence.item_repr=id): it cannot represent items "
                            "it was not trained on; train with item_repr text or text+id")
        if self._encoder is None:
            from transformers import AutoModel, AutoTokenizer

            path = self.model_dir  # the item encoder, in plain Hugging Face format
            self._encoder = (AutoModel.from_pretrained(str(path)).to(self.device).eval(),
                             AutoTokenizer.from_pretrained(str(path)))
        encoder, tokenizer = self._encoder
        return encode_texts(pooled_forward(encoder, self.cfg.model.pooling), texts, tokenizer,
                            self.cfg.data.max_length, device=self.device, precision=self.precision)

    @torch.no_grad()
    def item_vectors(self, texts: list[str]) -> torch.Tensor:
        return self.model.items(text=self.text_vectors(texts).to(self.device),
                                index=torch.full((len(texts),), -1, device=self.device))

    @torch.no_grad()
    def build_index(self, new_items: pd.DataFrame | None = None) -> None:
        ids, texts = list(self.catalog["item_ids"]), list(self.catalog["texts"])
        vectors = self.model.items()
        if new_items is not None:
            new_text = render_item_texts(new_items.astype({"item_id": str}), self.cfg.data)
            replaced = np.isin(ids, new_text.index)
            if replaced.any():  # a re-described item is a new item: its old vector no longer fits
                vectors[torch.as_tensor(replaced)] = self.item_vectors([str(new_text[i]) for i in
                                                                        np.asarray(ids)[replaced]])
                texts = [str(new_text[i]) if r else t for i, t, r in zip(ids, texts, replaced, strict=True)]
            fresh = [i for i in new_text.index if i not in set(ids)]
            if fresh:
                vectors = torch.cat([vectors, self.item_vectors([str(new_text[i]) for i in fresh])])
                ids, texts = ids + fresh, texts + [str(new_text[i]) for i in fresh]
        self.item_ids, self.texts, self.embeddings = np.asarray(ids, dtype=str), texts, vectors.cpu()
        self.titles = self.lookup_titles()

    def lookup_titles(self) -> list[str]:
        try:
            _, items, text = self.source()
        except Exception:  # the training data is not on this machine: titles are the item texts
            return list(self.texts)
        titles = dict(zip(items["item_id"].astype(str), self.item_titles(items, text), strict=True))
        return [titles.get(i, t) for i, t in zip(self.item_ids, self.texts, strict=True)]

    def save_index(self, out_dir: Path | None = None) -> Path:
        out_dir = Path(out_dir or self.model_dir / INDEX_DIR)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()}, str(out_dir / EMBEDDINGS_FILE))
        meta = {"item_ids": self.item_ids.tolist(), "titles": self.titles, "texts": self.texts,
                "model_fingerprint": model_fingerprint(self.model_dir), "dim": int(self.embeddings.shape[1])}
        (out_dir / ITEMS_FILE).write_text(json.dumps(meta))
        return out_dir

    def load_index(self, index_dir: Path | None = None) -> None:
        meta = self.read_index(Path(index_dir or self.model_dir / INDEX_DIR))
        if meta is None:
            self.build_index()
            return
        self.item_ids, self.titles, self.texts = np.asarray(meta["item_ids"], dtype=str), meta["titles"], meta["texts"]

    # ------------------------------------------------------------------ queries

    def history_positions(self, history_newest_first: list[str]) -> tuple[list[int], torch.Tensor]:
        """Index positions of history items given by title, text or id, oldest first; texts that match no
        indexed item become extra vectors (text-only), appended after the index."""
        lookup = {}
        for pos, (i, title, text) in enumerate(zip(self.item_ids, self.titles, self.texts, strict=True)):
            for key in (text, title, i):
                lookup.setdefault(str(key).strip(), pos)
        given = [h.strip() for h in history_newest_first if h and h.strip()][::-1]
        if not given:
            raise DataError("no history: give at least one non-empty item text (--history \"...\") or --user")
        unknown = [h for h in given if h not in lookup]
        vectors = self.embeddings
        if unknown:
            vectors = torch.cat([vectors, self.item_vectors(unknown).cpu()])
            extra = {h: len(self.item_ids) + k for k, h in enumerate(unknown)}
        positions = [lookup[h] if h in lookup else extra[h] for h in given]
        return positions, vectors

    def user_positions(self, user: str) -> list[int]:
        inter = self.source()[0]
        rows = inter[inter["user_id"] == str(user)]
        if rows.empty:
            raise DataError(f"unknown user {user!r}: not in the model's interactions "
                            f"({self.cfg.data.format}: {self.cfg.data.path or 'built-in'}); pass --history instead")
        where = {i: p for p, i in enumerate(self.item_ids)}
        positions = [where[i] for i in rows["item_id"].astype(str) if i in where]
        if not positions:
            raise DataError(f"user {user!r} has no indexed items to recommend from; pass --history")
        return positions

    @torch.no_grad()
    def scores(self, positions: list[int], vectors: torch.Tensor) -> torch.Tensor:
        history = torch.as_tensor([positions[-self.cfg.data.max_history:]])
        users = self.model.user_vectors(history, vectors)
        return self.model.score(users, vectors[: len(self.item_ids)])[0]

    def recommend(self, user: str | None = None, history: list[str] | None = None, top_k: int = 10,
                  exclude_seen: bool = False) -> list[dict]:
        if (user is None) == (history is None):
            raise DataError("give either a user id or a history of item texts")
        if top_k < 1:
            raise DataError(f"top-k must be >= 1, got {top_k}")
        if user is not None:
            positions, vectors = self.user_positions(user), self.embeddings
        else:
            positions, vectors = self.history_positions(history)
        scores = self.scores(positions, vectors)
        if exclude_seen:
            seen = [p for p in positions if p < len(self.item_ids)]
            scores[torch.as_tensor(seen, dtype=torch.long)] = float("-inf")
        top = torch.topk(scores, min(top_k, int(torch.isfinite(scores).sum())))
        return [{"item_id": str(self.item_ids[i]), "title": self.titles[i], "score": round(float(s), 6)}
                for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]

    def explain(self, user: str, item: str) -> dict:
        """How much the score of ``item`` drops when each of the user's last items is left out."""
        if self.embeddings is None:
            self.load_index()
        where = {i: p for p, i in enumerate(self.item_ids)}
        if str(item) not in where:
            raise DataError(f"unknown item {item!r}: not in the index")
        target = where[str(item)]
        positions = self.user_positions(user)[-self.cfg.data.max_history:]
        base = float(self.scores(positions, self.embeddings)[target])
        rows = []
        for j, p in enumerate(positions):
            without = positions[:j] + positions[j + 1:]
            s = float(self.scores(without, self.embeddings)[target]) if without else float("nan")
            rows.append({"item_id": str(self.item_ids[p]), "title": self.titles[p],
                         "position": len(positions) - 1 - j, "score_without": round(s, 6),
                         "drop": round(base - s, 6)})
        rows.sort(key=lambda r: -r["drop"] if r["drop"] == r["drop"] else 0)
        return {"user": str(user), "item": str(item), "score": round(base, 6), "history": rows}
