"""Top-K serving of a retrieval export: an item-embedding index, ``recommend`` and ``explain``.

``translrec index --model DIR`` writes ``DIR/index/item_embeddings.safetensors`` and ``items.json`` (ids,
titles, and the fingerprint of the model that encoded them). Items that arrive after training are
indexed from their text alone (``--items FILE``). ``Recommender.from_pretrained(DIR).recommend(...)``
is the Python API behind the CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from translrec_dist.data import read_source
from translrec_dist.data.examples import chronological_order, render_history, render_item_texts
from translrec_dist.data.tables import read_table, require_columns
from translrec_dist.errors import DataError
from translrec_dist.models.bi_encoder import ITEM_ENCODER_DIR, load_bi_export
from translrec_dist.models.encoding import encode_texts
from translrec_dist.precision import resolve_precision

log = logging.getLogger(__name__)
INDEX_DIR = "index"
EMBEDDINGS_FILE = "item_embeddings.safetensors"
ITEMS_FILE = "items.json"


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over the weight files: an index is only valid for the exact weights that encoded it."""
    digest = hashlib.sha256()
    for path in sorted([*model_dir.glob("*.safetensors"), *(model_dir / ITEM_ENCODER_DIR).glob("*.safetensors")]):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class Recommender:
    def __init__(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None):
        self.model, self.tokenizer, self.cfg, self.model_dir = model, tokenizer, cfg, Path(model_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        # The run's precision: a model trained under bf16 autocast is served under it too (when the device has it).
        self.precision = resolve_precision(cfg.train.precision, on_gpu=self.device.type == "cuda")[0]
        self._source = None
        self.item_ids: np.ndarray | None = None
        self.titles: list[str] = []
        self.embeddings: torch.Tensor | None = None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | None = None, index: bool = True) -> Recommender:
        model, tokenizer, cfg = load_bi_export(model_dir)
        rec = cls(model, tokenizer, cfg, Path(model_dir), device)
        if index:
            rec.load_index()
        return rec

    # ------------------------------------------------------------------ data the model was trained on

    def source(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
        """(interactions, items, item text) of the export's data config, read once."""
        if self._source is None:
            inter, items = read_source(self.cfg)
            text = render_item_texts(items, self.cfg.data)
            self._source = (chronological_order(inter), items, text)
        return self._source

    def item_titles(self, items: pd.DataFrame, text: pd.Series) -> list[str]:
        for column in ("title", "movie_title", "name"):  # generic tables, MovieLens/RecBole, Amazon-like
            if column in items.columns:
                return items[column].fillna("").astype(str).tolist()
        return text.tolist()

    # ------------------------------------------------------------------ index

    def encode(self, texts: list[str], tower: str, item_index: np.ndarray | None = None,
               batch_size: int = 64) -> torch.Tensor:
        """Vectors of ``texts``; ``item_index``: training catalog positions (-1: new item) for id embeddings."""
        return encode_texts(lambda batch: self.model(**batch, encode=tower), texts, self.tokenizer,
                            self.cfg.data.max_length, batch_size=batch_size, device=self.device,
                            precision=self.precision, extra=None if item_index is None else {"item_index": item_index})

    def build_index(self, new_items: pd.DataFrame | None = None) -> None:
        """Encode the training catalog plus ``new_items`` (item_id + the item text columns) from text alone."""
        _, items, text = self.source()
        trained = text[text != ""]
        position = pd.Series(np.arange(len(trained)), index=trained.index)  # the training catalog order
        if new_items is not None:
            new_text = render_item_texts(new_items.astype({"item_id": str}), self.cfg.data)
            items = pd.concat([items[~items["item_id"].isin(new_items["item_id"].astype(str))], new_items])
            text = pd.concat([text[~text.index.isin(new_text.index)], new_text])
            items = items.astype({"item_id": str}).set_index("item_id").loc[text.index].reset_index()
        keep = (text != "").to_numpy()
        self.item_ids = text.index.to_numpy()[keep].astype(str)
        self.titles = [t for t, k in zip(self.item_titles(items, text), keep, strict=True) if k]
        index = position.reindex(self.item_ids).fillna(-1).to_numpy().astype(np.int64)
        if new_items is not None:  # a re-described item is a new item: its old id vector no longer fits
            index[np.isin(self.item_ids, new_items["item_id"].astype(str))] = -1
        self.embeddings = self.encode(text[keep].tolist(), "items", index)

    def save_index(self, out_dir: Path | None = None) -> Path:
        out_dir = Path(out_dir or self.model_dir / INDEX_DIR)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()}, str(out_dir / EMBEDDINGS_FILE))
        meta = {"item_ids": self.item_ids.tolist(), "titles": self.titles,
                "model_fingerprint": model_fingerprint(self.model_dir), "dim": int(self.embeddings.shape[1])}
        (out_dir / ITEMS_FILE).write_text(json.dumps(meta))
        return out_dir

    def load_index(self, index_dir: Path | None = None) -> None:
        index_dir = Path(index_dir or self.model_dir / INDEX_DIR)
        if not (index_dir / ITEMS_FILE).is_file():
            log.warning("no index at %s; encoding the catalog now (run `translrec index --model %s` once to "
                        "save it)", index_dir, self.model_dir)
            self.build_index()
            return
        meta = json.loads((index_dir / ITEMS_FILE).read_text())
        if meta.get("model_fingerprint") != model_fingerprint(self.model_dir):
            raise DataError(f"the index in {index_dir} was built with a different model than {self.model_dir}; "
                            f"rebuild it: translrec index --model {self.model_dir}")
        self.embeddings = load_file(str(index_dir / EMBEDDINGS_FILE))["embeddings"]
        self.item_ids, self.titles = np.asarray(meta["item_ids"], dtype=str), meta["titles"]

    # ------------------------------------------------------------------ queries

    def user_history(self, user: str) -> list[str]:
        """The user's items, oldest first (items with empty text are skipped)."""
        inter, _, text = self.source()
        rows = inter[inter["user_id"] == str(user)]
        if rows.empty:
            raise DataError(f"unknown user {user!r}: not in the model's interactions "
                            f"({self.cfg.data.format}: {self.cfg.data.path or 'built-in'}); pass --history instead")
        history = [i for i in rows["item_id"] if text.get(i, "") != ""]
        if not history:
            raise DataError(f"user {user!r} has no history with item text to recommend from; pass --history")
        return history

    def history_text(self, texts_newest_first: list[str]) -> str:
        texts = [t.strip() for t in texts_newest_first if t and t.strip()]
        if not texts:
            raise DataError("no history: give at least one non-empty item text (--history \"...\") or --user")
        return render_history(range(len(texts[: self.cfg.data.history_length])), pd.Series(texts), self.cfg.data)

    def recommend(self, user: str | None = None, history: list[str] | None = None, top_k: int = 10,
                  exclude_seen: bool = False) -> list[dict]:
        """Top-K items for a known user, or for a history given as item texts (newest first)."""
        if (user is None) == (history is None):
            raise DataError("give either a user id or a history of item texts")
        if top_k < 1:
            raise DataError(f"top-k must be >= 1, got {top_k}")
        seen: set = set()
        if user is not None:
            items = self.user_history(user)
            text = self.source()[2]
            query = self.history_text([text[i] for i in items[::-1]])
            seen = set(items)
        else:
            query = self.history_text(history)
            wanted = {h.strip() for h in history}  # a history item counts as seen by its full text or title
            text = self.source()[2]
            seen = {i for i, t in zip(self.item_ids, self.titles, strict=True) if t in wanted or text.get(i) in wanted}
        scores = (self.encode([query], "users") @ self.embeddings.T)[0]
        if exclude_seen and seen:
            scores[torch.as_tensor(np.isin(self.item_ids, list(seen)))] = float("-inf")
        top = torch.topk(scores, min(top_k, int(torch.isfinite(scores).sum()))) if len(scores) else None
        if top is None:
            return []
        return [{"item_id": str(self.item_ids[i]), "title": self.titles[i], "score": round(float(s), 6)}
                for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]

    def explain(self, user: str, item: str) -> dict:
        """How much the score of ``item`` drops when each shown history item is left out (leave-one-out)."""
        _, items, text = self.source()
        item = str(item)
        if text.get(item, "") == "":
            raise DataError(f"unknown item {item!r} (or its text is empty)")
        shown = self.user_history(user)[::-1][: self.cfg.data.history_length]
        variants = [shown] + [shown[:j] + shown[j + 1:] for j in range(len(shown))]
        queries = [render_history(v, text, self.cfg.data) if v else "" for v in variants]
        users = self.encode(queries, "users")
        scores = (users @ self.encode([text[item]], "items").T)[:, 0].tolist()
        base = scores[0]
        titles = dict(zip(items["item_id"].astype(str), self.item_titles(items, text), strict=True))
        rows = [{"item_id": h, "title": titles.get(h, text[h]), "position": j, "score_without": round(s, 6),
                 "drop": round(base - s, 6)} for j, (h, s) in enumerate(zip(shown, scores[1:], strict=True))]
        rows.sort(key=lambda r: -r["drop"])
        return {"user": str(user), "item": item, "score": round(base, 6), "history": rows}


def read_new_items(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    items = read_table(path)
    require_columns(items, ["item_id"], path)
    if items.empty:
        raise DataError(f"{path}: no items")
    fields = [c for c in items.columns if c != "item_id"]
    empty = items[fields].fillna("").astype(str).apply(lambda col: col.str.strip() == "").all(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: item {items['item_id'].iloc[row]!r} has empty text; "
                        f"an item is indexed from its text, so give it a title or description")
    return items.astype({"item_id": str})
