"""Top-K serving of a retrieval export: an item-embedding index, ``recommend`` and ``explain``.

``translrec index --model DIR`` writes ``DIR/index/item_embeddings.safetensors`` and ``items.json`` (ids,
titles, texts, known users' histories unless ``index.histories=false``, and the fingerprint of the model that
encoded them). Items that arrive after training are indexed from their text alone (``--items FILE``).
``Recommender.from_pretrained(DIR).recommend(...)`` is the Python API behind the CLI and ``translrec serve``;
with an index it needs nothing but the export: the raw dataset is read only to build the index.
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
from translrec_dist.models.bi_encoder import ITEM_ENCODER_DIR
from translrec_dist.models.encoding import encode_texts
from translrec_dist.models.export import read_export
from translrec_dist.serving.vector_index import build_vector_index
from translrec_dist.training.precision import resolve_precision

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
        self.texts: dict[str, str] = {}  # item id -> the text it was encoded from
        self.histories: dict[str, list[str]] | None = None  # user id -> item ids, oldest first
        self.embeddings: torch.Tensor | None = None
        self.search_index = None

    # Subclasses serving other export kinds (``serving.sequential``) register themselves here, so that
    # ``Recommender.from_pretrained`` loads any export without this module importing them.
    _kinds: list[type[Recommender]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Recommender._kinds.append(cls)

    @classmethod
    def handles(cls, model_dir: Path) -> bool:
        """Whether this class serves the export in ``model_dir`` (subclasses say which exports are theirs)."""
        return False

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | None = None, index: bool = True,
                        trust_remote_code: bool = False) -> Recommender:
        """``trust_remote_code`` is the user's choice, never the export's (``models.safety``)."""
        if cls is Recommender:
            for kind in Recommender._kinds:
                if kind.handles(Path(model_dir)):
                    return kind.from_pretrained(model_dir, device, index, trust_remote_code)
        model, tokenizer, cfg, _ = read_export(model_dir, expect="recommend", trust_remote_code=trust_remote_code)
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
        self.texts = dict(zip(self.item_ids.tolist(), text[keep].tolist(), strict=True))
        self.histories = self.known_histories() if self.cfg.index.histories else {}
        self.search_index = build_vector_index(self.cfg.index.backend, self.embeddings)

    def known_histories(self) -> dict[str, list[str]]:
        """Every user's items of the training data (oldest first), restricted to items with text."""
        inter = self.source()[0]
        inter = inter[inter["item_id"].isin(list(self.texts))]
        return {str(u): ids.tolist() for u, ids in inter.groupby("user_id", sort=False)["item_id"]}

    def set_index_options(self, backend: str | None = None, histories: bool | None = None) -> None:
        """Override the export's ``index`` config for the index about to be built."""
        index = self.cfg.index
        self.cfg.index = index.model_copy(update={"backend": backend or index.backend,
                                                  "histories": index.histories if histories is None else histories})

    def save_index(self, out_dir: Path | None = None) -> Path:
        out_dir = Path(out_dir or self.model_dir / INDEX_DIR)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()}, str(out_dir / EMBEDDINGS_FILE))
        ids = self.item_ids.tolist()
        meta = {"item_ids": ids, "titles": self.titles, "texts": [self.texts[i] for i in ids],
                "histories": self.histories if self.cfg.index.histories else None, "backend": self.cfg.index.backend,
                "model_fingerprint": model_fingerprint(self.model_dir), "dim": int(self.embeddings.shape[1])}
        (out_dir / ITEMS_FILE).write_text(json.dumps(meta, ensure_ascii=False))
        self.search_index.save(out_dir)
        return out_dir

    def read_index(self, index_dir: Path) -> dict | None:
        """The saved index's metadata (its vectors loaded into ``self.embeddings``), refused when another model
        wrote it; None when there is none (the caller encodes the catalog)."""
        if not (index_dir / ITEMS_FILE).is_file():
            log.warning("no index at %s; encoding the catalog now (run `translrec index --model %s` once to "
                        "save it)", index_dir, self.model_dir)
            return None
        meta = json.loads((index_dir / ITEMS_FILE).read_text())
        if meta.get("model_fingerprint") != model_fingerprint(self.model_dir):
            raise DataError(f"the index in {index_dir} was built with a different model than {self.model_dir}; "
                            f"rebuild it: translrec index --model {self.model_dir}")
        self.embeddings = load_file(str(index_dir / EMBEDDINGS_FILE))["embeddings"]
        return meta

    def load_index(self, index_dir: Path | None = None) -> None:
        index_dir = Path(index_dir or self.model_dir / INDEX_DIR)
        meta = self.read_index(index_dir)
        if meta is None:
            self.build_index()
            return
        self.item_ids, self.titles = np.asarray(meta["item_ids"], dtype=str), meta["titles"]
        if "texts" in meta:
            self.texts = dict(zip(meta["item_ids"], meta["texts"], strict=True))
            self.histories = meta["histories"]
            self.cfg.index.histories = self.histories is not None
            self.histories = self.histories or {}
        else:  # an index written before it kept texts: read them from the training data once
            log.warning("the index in %s holds no item texts (an older translrec); reading the dataset. Rebuild "
                        "it (translrec index --model %s) to serve without the dataset", index_dir, self.model_dir)
            text = self.source()[2]
            self.texts = {i: text[i] for i in self.item_ids.tolist()}
            self.histories = self.known_histories()
        self.search_index = build_vector_index(meta.get("backend", "exact"), self.embeddings, index_dir)

    def ensure_index(self) -> None:
        if self.embeddings is None:
            self.load_index()

    # ------------------------------------------------------------------ queries

    def user_history(self, user: str) -> list[str]:
        """The user's items, oldest first (items with empty text are skipped), from the index."""
        self.ensure_index()
        history = self.histories.get(str(user))
        if history is None:
            kept = "" if self.cfg.index.histories else " (this index keeps no histories)"
            raise DataError(f"unknown user {user!r}: not in the model's interactions{kept} "
                            f"({self.cfg.data.format}: {self.cfg.data.path or 'built-in'}); pass --history instead")
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
        result = self.recommend_batch([{"user": user, "history": history, "top_k": top_k,
                                        "exclude_seen": exclude_seen}])[0]
        if isinstance(result, DataError):
            raise result
        return result

    def query(self, user: str | None, history: list[str] | None, top_k: int) -> tuple[str, set]:
        """(the user tower's input text, the items the user has seen)."""
        if (user is None) == (history is None):
            raise DataError("give either a user id or a history of item texts")
        if top_k < 1:
            raise DataError(f"top-k must be >= 1, got {top_k}")
        if user is not None:
            items = self.user_history(user)
            return self.history_text([self.texts[i] for i in items[::-1]]), set(items)
        query = self.history_text(history)
        wanted = {h.strip() for h in history}  # a history item counts as seen by its full text or title
        seen = {i for i, t in zip(self.item_ids, self.titles, strict=True) if t in wanted or self.texts[i] in wanted}
        return query, seen

    def recommend_batch(self, requests: list[dict]) -> list[list[dict] | DataError]:
        """Several requests (user/history/top_k/exclude_seen) with one user-tower pass and one search; a bad
        request yields its DataError in its place and does not fail the others (HTTP micro-batches)."""
        self.ensure_index()
        queries: list = []
        for r in requests:
            try:
                queries.append(self.query(r.get("user"), r.get("history"), r.get("top_k", 10)))
            except DataError as e:
                queries.append(e)
        good = [i for i, q in enumerate(queries) if not isinstance(q, DataError)]
        if not good or not len(self.item_ids):
            return [q if isinstance(q, DataError) else [] for q in queries]
        vectors = self.encode([queries[i][0] for i in good], "users")
        wanted = [requests[i].get("top_k", 10) + (len(queries[i][1]) if requests[i].get("exclude_seen") else 0)
                  for i in good]
        scores, rows = self.search_index.search(vectors, max(wanted))
        out: list = list(queries)
        for j, i in enumerate(good):
            seen = queries[i][1] if requests[i].get("exclude_seen") else set()
            hits = [(float(s), int(r)) for s, r in zip(scores[j], rows[j], strict=True)
                    if r >= 0 and self.item_ids[r] not in seen]
            out[i] = [{"item_id": str(self.item_ids[r]), "title": self.titles[r], "score": round(s, 6)}
                      for s, r in hits[:requests[i].get("top_k", 10)]]
        return out

    def explain(self, user: str, item: str) -> dict:
        """How much the score of ``item`` drops when each shown history item is left out (leave-one-out)."""
        self.ensure_index()
        item = str(item)
        if self.texts.get(item, "") == "":
            raise DataError(f"unknown item {item!r} (or its text is empty)")
        shown = self.user_history(user)[::-1][: self.cfg.data.history_length]
        variants = [shown] + [shown[:j] + shown[j + 1:] for j in range(len(shown))]
        text = pd.Series(self.texts)
        queries = [render_history(v, text, self.cfg.data) if v else "" for v in variants]
        users = self.encode(queries, "users")
        scores = (users @ self.encode([text[item]], "items").T)[:, 0].tolist()
        base = scores[0]
        titles = dict(zip(self.item_ids.tolist(), self.titles, strict=True))
        rows = [{"item_id": h, "title": titles.get(h, text[h]), "position": j, "score_without": round(s, 6),
                 "drop": round(base - s, 6)} for j, (h, s) in enumerate(zip(shown, scores[1:], strict=True))]
        rows.sort(key=lambda r: -r["drop"])
        return {"user": str(user), "item": item, "score": round(base, 6), "history": rows}


def read_new_items(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    items = read_table(path, keep_lines=True)
    require_columns(items, ["item_id"], path)
    if items.empty:
        raise DataError(f"{path}: no items")
    lines = items.pop("_line").to_numpy()
    ids = items["item_id"].astype(str).str.strip()
    again = ids.duplicated(keep="first")
    if again.any():  # which text would the index keep? Ask instead of guessing.
        row = int(np.flatnonzero(again.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iat[row]).to_numpy())[0])
        raise DataError(f"{path}, line {lines[row]}: item_id {ids.iat[row]!r} appears again (first at line "
                        f"{lines[first]}; {int(again.sum())} repeated ids in all); give each item once")
    fields = [c for c in items.columns if c != "item_id"]
    empty = items[fields].fillna("").astype(str).apply(lambda col: col.str.strip() == "").all(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{path}, line {lines[row]}: item {items['item_id'].iloc[row]!r} has empty text; "
                        f"an item is indexed from its text, so give it a title or description")
    return items.assign(item_id=ids)
