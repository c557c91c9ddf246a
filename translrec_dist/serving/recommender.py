"""Top-K serving of any export that recommends: one ``Recommender`` over the export's task scorer
(``tasks.base.Scorer``: retrieval bi-encoder, sequential model), an item-vector index (exact or faiss),
``recommend``, ``recommend_batch`` and ``explain``.

``translrec index --model DIR`` writes ``DIR/index/item_embeddings.safetensors`` and ``items.json`` (ids,
titles, texts, known users' histories unless ``index.histories=false``, and the fingerprint of the model that
encoded them). Items that arrive after training are indexed from their text alone (``--items FILE``).
``program.load_recommender(DIR).recommend(...)`` is the Python API behind the CLI and ``translrec serve``;
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
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from translrec_dist.data.examples import chronological_order, render_item_texts
from translrec_dist.data.stages import read_source
from translrec_dist.data.tables import read_table, require_columns
from translrec_dist.errors import DataError, UserError
from translrec_dist.safe_io import check_regular, write_bytes, write_json
from translrec_dist.serving.vector_index import build_vector_index

log = logging.getLogger(__name__)
INDEX_DIR = "index"
EMBEDDINGS_FILE = "item_embeddings.safetensors"
ITEMS_FILE = "items.json"
BACKENDS = ("exact", "faiss")


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over the weight files: an index is only valid for the exact weights that encoded it."""
    digest = hashlib.sha256()
    # the export's own weights: top level and one folder down (a second encoder), never an index's vectors
    for path in sorted([*model_dir.glob("*.safetensors"), *model_dir.glob("*/model*.safetensors")]):
        check_regular(path, "weights file")  # a link to /dev/zero would never end
        digest.update(str(path.relative_to(model_dir)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def short(value, limit: int = 24) -> str:
    """A client's value in a message: a few characters, never the whole input."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: valid in a Python str (and in JSON), not text
        return False
    return True


class Recommender:
    def __init__(self, scorer, cfg, model_dir: Path):
        self.scorer, self.cfg, self.model_dir = scorer, cfg, Path(model_dir)
        self._source = None
        self.item_ids: np.ndarray | None = None
        self.titles: list[str] = []
        self.texts: dict[str, str] = {}  # item id -> the text it was encoded from
        self.histories: dict[str, list[str]] = {}  # user id -> item ids, oldest first
        self.embeddings: torch.Tensor | None = None  # the scorer's item vectors, one row per indexed item
        self.search_index = None
        self._rows: dict[str, int] = {}  # item id, text or title -> index row

    # ------------------------------------------------------------------ data the model was trained on

    def source(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
        """(interactions, items, item text) of the export's data config, read once."""
        if self._source is None:
            inter, items = read_source(self.cfg)
            self._source = (chronological_order(inter), items, render_item_texts(items, self.cfg.data))
        return self._source

    @staticmethod
    def item_titles(items: pd.DataFrame, text: pd.Series) -> dict[str, str]:
        ids = items["item_id"].astype(str).tolist()
        for column in ("title", "movie_title", "name"):  # generic tables, MovieLens/RecBole, Amazon-like
            if column in items.columns:
                return dict(zip(ids, items[column].fillna("").astype(str), strict=True))
        return {i: str(text.get(i, "")) for i in ids}

    def training_titles(self) -> dict[str, str]:
        try:
            _, items, text = self.source()
        except UserError as e:  # the training data is not on this machine: titles are the item texts
            log.warning("titles from item texts: the training data cannot be read (%s)", e)
            return {}
        return self.item_titles(items, text)

    # ------------------------------------------------------------------ index

    def build_index(self, new_items: pd.DataFrame | None = None) -> None:
        """Encode the training catalog plus ``new_items`` (item_id + the item text columns) from text alone; a
        re-described item is a new item (its trained id vector no longer fits its text)."""
        ids, texts = self.scorer.catalog(self.source)
        positions = list(range(len(ids)))
        titles = self.training_titles()
        if new_items is not None:
            new_items = new_items.astype({"item_id": str})
            new_text = render_item_texts(new_items, self.cfg.data)
            titles.update(self.item_titles(new_items, new_text))
            where = {i: p for p, i in enumerate(ids)}
            for item, text in new_text.items():
                if item in where:
                    texts[where[item]], positions[where[item]] = str(text), -1
                else:
                    ids, texts, positions = [*ids, item], [*texts, str(text)], [*positions, -1]
        keep = [k for k, t in enumerate(texts) if t != ""]
        ids, texts = [ids[k] for k in keep], [texts[k] for k in keep]
        self.item_ids = np.asarray(ids, dtype=str)
        self.titles = [titles.get(i) or t for i, t in zip(ids, texts, strict=True)]
        self.texts = dict(zip(ids, texts, strict=True))
        self.embeddings = self.scorer.item_vectors(texts, np.asarray([positions[k] for k in keep], dtype=np.int64))
        self.histories = self.known_histories() if self.cfg.index.histories else {}
        self.search_index = build_vector_index(self.cfg.index.backend, self.scorer.search_vectors(self.embeddings))
        self._rows = {}

    def known_histories(self) -> dict[str, list[str]]:
        """Every user's items of the training data (oldest first), restricted to indexed items."""
        inter = self.source()[0]
        inter = inter[inter["item_id"].isin(list(self.texts))]
        return {str(u): ids.tolist() for u, ids in inter.groupby("user_id", sort=False)["item_id"]}

    def set_index_options(self, backend: str | None = None, histories: bool | None = None) -> None:
        """Override the export's ``index`` config for the index about to be built."""
        index = self.cfg.index
        self.cfg.index = index.model_copy(update={"backend": backend or index.backend,
                                                  "histories": index.histories if histories is None else histories})

    def save_index(self, out_dir: Path | None = None) -> Path:
        """Every file through ``safe_io`` (temporary name, rename; no link followed, nothing outside ``out_dir``)."""
        out_dir = Path(out_dir or self.model_dir / INDEX_DIR)
        write_bytes(out_dir / EMBEDDINGS_FILE, save({"embeddings": self.embeddings.contiguous()}), out_dir)
        ids = self.item_ids.tolist()
        meta = {"item_ids": ids, "titles": self.titles, "texts": [self.texts[i] for i in ids],
                "histories": self.histories if self.cfg.index.histories else None, "backend": self.cfg.index.backend,
                "model_fingerprint": model_fingerprint(self.model_dir), "dim": int(self.embeddings.shape[1])}
        write_json(out_dir / ITEMS_FILE, meta, out_dir, ensure_ascii=False)
        self.search_index.save(out_dir)
        return out_dir

    def load_index(self, index_dir: Path | None = None) -> None:
        """The saved index (refused when another model wrote it or a file is not what translrec writes), or the
        catalog encoded now when there is none."""
        index_dir = Path(index_dir or self.model_dir / INDEX_DIR)
        if not (index_dir / ITEMS_FILE).exists():
            log.warning("no index at %s; encoding the catalog now (run `translrec index --model %s` once to "
                        "save it)", index_dir, self.model_dir)
            self.build_index()
            return
        meta = read_items_file(index_dir / ITEMS_FILE)
        if meta["model_fingerprint"] != model_fingerprint(self.model_dir):
            raise DataError(f"the index in {index_dir} was built with a different model than {self.model_dir}; "
                            f"rebuild it: translrec index --model {self.model_dir}")
        embeddings = read_embeddings(index_dir / EMBEDDINGS_FILE)
        expected = (len(meta["item_ids"]), meta["dim"])
        if tuple(embeddings.shape) != expected or meta["dim"] != self.scorer.dim:
            raise DataError(f"{index_dir / EMBEDDINGS_FILE}: vectors of shape {tuple(embeddings.shape)}, but "
                            f"{ITEMS_FILE} lists {expected[0]} items of width {expected[1]} and the model's vectors "
                            f"have width {self.scorer.dim}; rebuild it: translrec index --model {self.model_dir}")
        self.item_ids, self.titles = np.asarray(meta["item_ids"], dtype=str), meta["titles"]
        self.embeddings = embeddings
        self.texts = dict(zip(meta["item_ids"], meta["texts"], strict=True))
        self.cfg.index.histories = meta["histories"] is not None
        self.histories = meta["histories"] or {}
        self.search_index = build_vector_index(meta["backend"], self.scorer.search_vectors(embeddings), index_dir)
        if getattr(self.search_index, "index", None) is not None and self.search_index.index.ntotal != expected[0]:
            raise DataError(f"{index_dir}: the faiss index holds {self.search_index.index.ntotal} vectors, "
                            f"{ITEMS_FILE} lists {expected[0]} items; rebuild it: translrec index --model "
                            f"{self.model_dir}")
        self._rows = {}

    def ensure_index(self) -> None:
        if self.embeddings is None:
            self.load_index()

    # ------------------------------------------------------------------ queries

    def rows(self) -> dict[str, int]:
        """Index row of each item, by id, text or title (how a history may name an item)."""
        if not self._rows:
            for row, (i, title) in enumerate(zip(self.item_ids.tolist(), self.titles, strict=True)):
                for key in (self.texts[i], title, i):
                    self._rows.setdefault(str(key).strip(), row)
        return self._rows

    def user_history(self, user: str) -> list[str]:
        """The user's items, oldest first, from the index."""
        self.ensure_index()
        history = self.histories.get(str(user))
        if history is None:
            kept = "" if self.cfg.index.histories else " (this index keeps no histories)"
            raise DataError(f"unknown user {short(user)}: not in the model's interactions{kept}; pass a history "
                            f"instead")
        if not history:
            raise DataError(f"user {short(user)} has no indexed items to recommend from; pass a history")
        return history

    def query(self, user: str | None, history: list[str] | None, top_k: int) -> tuple[list[tuple[str, int]], set]:
        """(the user's history oldest first as (text, index row), the items the user has seen)."""
        if (user is None) == (history is None):
            raise DataError("give either a user id or a history of item texts")
        if top_k < 1:
            raise DataError(f"top-k must be >= 1, got {top_k}")
        for text in [user] if user is not None else history:
            if not isinstance(text, str) or not is_text(text):
                raise DataError(f"{short(text)} is not valid Unicode text (a lone surrogate?)")
        rows = self.rows()
        if user is not None:
            items = self.user_history(user)
            return [(self.texts[i], rows[i]) for i in items], set(items)
        given = [h.strip() for h in history if h and h.strip()][::-1]
        if not given:
            raise DataError("no history: give at least one non-empty item text (--history \"...\") or --user")
        pairs = [(h, rows.get(h, -1)) for h in given]
        return pairs, {str(self.item_ids[r]) for _, r in pairs if r >= 0}

    def recommend(self, user: str | None = None, history: list[str] | None = None, top_k: int = 10,
                  exclude_seen: bool = False) -> list[dict]:
        """Top-K items for a known user, or for a history given as item texts, titles or ids (newest first)."""
        result = self.recommend_batch([{"user": user, "history": history, "top_k": top_k,
                                        "exclude_seen": exclude_seen}])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def user_vectors(self, histories: list[list[tuple[str, int]]]) -> list[torch.Tensor | Exception]:
        """One query per history. A batch that fails is retried one history at a time, so a bad history's
        error is its own (one request must not fail the others of its micro-batch)."""
        try:
            return list(self.scorer.user_vectors(histories, self.embeddings))
        except Exception:  # noqa: BLE001 - which history failed is found below, each alone
            if len(histories) == 1:
                raise
        out: list = []
        for history in histories:
            try:
                out.append(self.scorer.user_vectors([history], self.embeddings)[0])
            except Exception as e:  # noqa: BLE001 - this request's answer
                out.append(e)
        return out

    def recommend_batch(self, requests: list[dict]) -> list[list[dict] | Exception]:
        """Several requests (user/history/top_k/exclude_seen) with one user-vector pass and one search; a bad
        request yields its exception in its place and does not fail the others (HTTP micro-batches)."""
        self.ensure_index()
        queries: list = []
        for r in requests:
            try:
                queries.append(self.query(r.get("user"), r.get("history"), r.get("top_k", 10)))
            except DataError as e:
                queries.append(e)
        out: list = [q if isinstance(q, Exception) else [] for q in queries]
        good = [i for i, q in enumerate(queries) if not isinstance(q, Exception)]
        if not good or not len(self.item_ids):
            return out
        vectors = self.user_vectors([queries[i][0] for i in good])
        for i, v in zip(good, vectors, strict=True):
            if isinstance(v, Exception):
                out[i] = v
        good = [i for i, v in zip(good, vectors, strict=True) if not isinstance(v, Exception)]
        if not good:
            return out
        wanted = [requests[i].get("top_k", 10) + (len(queries[i][1]) if requests[i].get("exclude_seen") else 0)
                  for i in good]
        ok = [v for v in vectors if not isinstance(v, Exception)]
        scores, rows = self.search_index.search(torch.stack(ok), max(wanted))
        for j, i in enumerate(good):
            seen = queries[i][1] if requests[i].get("exclude_seen") else set()
            hits = [(float(s), int(r)) for s, r in zip(scores[j], rows[j], strict=True)
                    if r >= 0 and self.item_ids[r] not in seen]
            out[i] = [{"item_id": str(self.item_ids[r]), "title": self.titles[r], "score": round(s, 6)}
                      for s, r in hits[:requests[i].get("top_k", 10)]]
        return out

    def explain(self, user: str, item: str) -> dict:
        """How much the score of ``item`` drops when each of the user's shown history items is left out
        (leave-one-out over the most recent items the model reads; position 0 is the newest)."""
        self.ensure_index()
        item = str(item)
        where = {i: r for r, i in enumerate(self.item_ids.tolist())}
        if item not in where:
            raise DataError(f"unknown item {short(item)}: not in the index")
        rows = self.rows()
        shown = self.user_history(user)[-self.scorer.history_length:]
        history = [(self.texts[i], rows[i]) for i in shown]
        variants = [history] + [history[:j] + history[j + 1:] for j in range(len(history))]
        asked = [v for v in variants if v]
        users = torch.stack(self.user_vectors(asked)) if asked else None
        key = self.scorer.search_vectors(self.embeddings[where[item]: where[item] + 1]).float()
        scores = iter((users.float() @ key.T)[:, 0].tolist())
        values = [next(scores) if v else None for v in variants]
        base = values[0]
        out = [{"item_id": h, "title": self.titles[rows[h]] if h in rows else self.texts[h],
                "position": len(shown) - 1 - j,
                "score_without": None if s is None else round(s, 6),
                "drop": None if s is None else round(base - s, 6)}
               for j, (h, s) in enumerate(zip(shown, values[1:], strict=True))]
        out.sort(key=lambda r: (r["drop"] is None, -(r["drop"] or 0.0), r["position"]))
        return {"user": str(user), "item": item, "score": round(base, 6), "history": out}


def read_items_file(path: Path) -> dict:
    """``items.json`` checked field by field: a crafted or damaged file is refused, naming what is wrong."""
    check_regular(path, "index file")

    def bad(what: str):
        return DataError(f"{path}: {what}; rebuild the index: translrec index --model MODEL")

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise bad("the top level is not an object")

    def strings(key: str) -> list[str]:
        value = meta.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"'{key}' is not a list of strings")
        return value

    ids = strings("item_ids")
    for key in ("titles", "texts"):
        if len(strings(key)) != len(ids):
            raise bad(f"'{key}' has {len(meta[key])} entries for {len(ids)} item_ids")
    if len(set(ids)) != len(ids):
        raise bad("'item_ids' repeats an id")
    if meta.get("backend") not in BACKENDS:
        raise bad(f"'backend' is {short(meta.get('backend'))}, not one of {', '.join(BACKENDS)}")
    if not isinstance(meta.get("dim"), int) or isinstance(meta["dim"], bool) or meta["dim"] < 1:
        raise bad("'dim' is not a positive integer")
    if not isinstance(meta.get("model_fingerprint"), str):
        raise bad("'model_fingerprint' is not a string")
    histories = meta.get("histories")
    if histories is not None:
        known = set(ids)
        if not isinstance(histories, dict) or not all(
                isinstance(h, list) and all(isinstance(i, str) and i in known for i in h) for h in histories.values()):
            raise bad("'histories' is not a map of user id -> lists of indexed item ids")
    return meta


def read_embeddings(path: Path) -> torch.Tensor:
    check_regular(path, "index file")
    try:
        vectors = load_file(str(path))["embeddings"]
    except (SafetensorError, KeyError, OSError) as e:
        raise DataError(f"{path}: not the index's vectors ({type(e).__name__}); rebuild the index: translrec "
                        f"index --model MODEL") from None
    if vectors.ndim != 2 or not vectors.is_floating_point() or not torch.isfinite(vectors).all():
        raise DataError(f"{path}: the vectors are not a finite 2-d float matrix; rebuild the index")
    return vectors


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
