"""Amazon Reviews 2023: ``<Category>.jsonl`` reviews + ``meta_<Category>.jsonl`` item metadata.

Both read lazily line by line, gzip or plain. The item id is ``parent_asin`` (reviews of variants share
it), as the dataset's authors recommend. Item text fields: title, store, main_category, categories,
features, description (lists joined).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from translrec_dist.data.readers.files import iter_jsonl
from translrec_dist.data.readers.rows import BadRows
from translrec_dist.errors import DataError

ITEM_FIELDS = ("title", "store", "main_category", "categories", "features", "description")


def find_amazon(path: Path) -> tuple[Path, Path]:
    """A reviews file (its meta_ file beside it) or a directory holding exactly one such pair."""
    if path.is_dir():
        reviews = [p for p in sorted(path.iterdir()) if ".jsonl" in p.name and not p.name.startswith("meta_")]
        if len(reviews) != 1:
            raise DataError(f"{path}: expected one <Category>.jsonl[.gz] reviews file, found "
                            f"{', '.join(p.name for p in reviews) or 'none'}; point data.path at the file")
        path = reviews[0]
    meta = path.with_name("meta_" + path.name)
    if not meta.is_file():
        raise DataError(f"{path}: no {meta.name} beside it (item titles and descriptions come from it)")
    return path, meta


def as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(as_text(v) for v in value if v not in (None, ""))
    return str(value).strip()


def read_amazon(path: str | Path, bad: BadRows):
    """(interactions, items, files read) in raw form for ``normalize.finish``."""
    reviews, meta = find_amazon(Path(path))
    rows = []
    for n, r in iter_jsonl(reviews, bad):
        rows.append((r.get("user_id"), r.get("parent_asin") or r.get("asin"), r.get("rating"), r.get("timestamp"), n))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "_line"], dtype=object)
    items = []
    for n, m in iter_jsonl(meta, bad):
        items.append((m.get("parent_asin"), *(as_text(m.get(f)) for f in ITEM_FIELDS), n))
    items = pd.DataFrame(items, columns=["item_id", *ITEM_FIELDS, "_line"], dtype=object)
    if inter.empty:
        raise DataError(f"{reviews}: no review could be read")
    if items.empty:
        raise DataError(f"{meta}: no item metadata could be read")
    return inter, items, [reviews, meta]
