"""Raw reader output -> the common (interactions, items) tables, applying the row-level policy.

Every reader hands over string columns plus ``_line``; this module owns the conversions and the checks
so that every format treats a bad rating, a bad timestamp, a duplicate item or an unknown item alike.
Result: interactions ``user_id, item_id (str), [rating (float)], timestamp (float seconds)``; items
``item_id (str)`` + text fields.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from translrec_dist.data.readers.rows import BadRows, clip, excerpt
from translrec_dist.data.readers.validate import mixed_timestamp_units, ratings_out_of_scale
from translrec_dist.errors import DataError

log = logging.getLogger(__name__)


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _count(bad: BadRows, mask: pd.Series, df: pd.DataFrame, kind: str, path, describe) -> None:
    if mask.any():
        first = int(np.flatnonzero(mask.to_numpy())[0])
        bad.add(kind, f"{path}, line {df['_line'].iat[first]}", describe(first), int(mask.sum()))


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Unix seconds (or milliseconds, as Amazon writes them, left as is: only the order matters) or ISO 8601.
    One unit per column: ``validate.mixed_timestamp_units`` counts rows in another unit as bad."""
    out = pd.to_numeric(values, errors="coerce").astype(float)
    rest = out.isna() & ~_blank(values)
    if rest.any():
        dt = pd.to_datetime(values[rest], errors="coerce", utc=True, format="ISO8601")
        out[rest] = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return out


def clean_interactions(inter: pd.DataFrame, path, bad: BadRows) -> pd.DataFrame:
    keep = pd.Series(True, index=inter.index)
    for col in ("user_id", "item_id"):
        empty = _blank(inter[col])
        _count(bad, empty, inter, f"missing_{col}", path, lambda i, c=col: f"empty {c}")
        keep &= ~empty
    if "rating" in inter.columns:
        rating = pd.to_numeric(inter["rating"], errors="coerce").astype(float)
        wrong = ~np.isfinite(rating) & keep  # inf and nan are no rating either
        _count(bad, wrong, inter, "bad_rating", path,
               lambda i: f"column rating = {excerpt(inter['rating'].iat[i])} is not a number")
        inter["rating"] = rating
        keep &= ~wrong
        absurd, scale = ratings_out_of_scale(rating, keep)
        _count(bad, absurd, inter, "rating_out_of_scale", path,
               lambda i: f"rating {rating.iat[i]:.6g} is far outside the data's scale ({scale})")
        keep &= ~absurd
    if "timestamp" in inter.columns:
        ts = parse_timestamps(inter["timestamp"])
        wrong = ~np.isfinite(ts) & keep
        _count(bad, wrong, inter, "bad_timestamp", path,
               lambda i: f"timestamp {excerpt(inter['timestamp'].iat[i])} is neither a number nor an ISO 8601 date")
        inter["timestamp"] = ts
        keep &= ~wrong
        keep &= ~mixed_timestamp_units(inter, keep, path, bad)
    else:
        log.warning("%s has no timestamp: file order is taken as time order", path)
        inter["timestamp"] = inter["_line"].astype(float)
    inter = inter[keep.to_numpy()]
    return inter.assign(user_id=inter["user_id"].astype(str).str.strip(),
                        item_id=inter["item_id"].astype(str).str.strip())


def clean_items(items: pd.DataFrame, path, bad: BadRows) -> pd.DataFrame:
    empty = _blank(items["item_id"])
    _count(bad, empty, items, "missing_item_id", path, lambda i: "empty item_id")
    items = items[~empty.to_numpy()].assign(item_id=lambda d: d["item_id"].astype(str).str.strip())
    fields = [c for c in items.columns if c not in ("item_id", "_line")]
    dup = items["item_id"].duplicated(keep="first")
    if dup.any():
        first = items[~dup].set_index("item_id")[fields].astype(str)
        again = items[dup]
        same = (again[fields].astype(str).to_numpy() == first.loc[again["item_id"]].to_numpy()).all(axis=1)
        conflict = pd.Series(~same, index=again.index)
        _count(bad, conflict, again, "duplicate_item_conflict", path,
               lambda i: f"item_id {clip(again['item_id'].iat[i])} appears again with different text (the first "
                         f"is kept)")
        bad.notes["duplicate_item_identical"] += int(same.sum())
        items = items[~dup.to_numpy()]
    if items.empty:
        bad.check()  # when bad rows emptied the table, their report is the useful error
        raise DataError(f"{path}: no rows with an item_id")
    return items.drop(columns="_line").reset_index(drop=True)


def link(inter: pd.DataFrame, items: pd.DataFrame, bad: BadRows, inter_path, items_path) -> pd.DataFrame:
    """Interactions whose item has no metadata row are counted and left out (the model needs item text)."""
    unknown = ~inter["item_id"].isin(items["item_id"])
    _count(bad, unknown, inter, "item_without_metadata", inter_path,
           lambda i: f"item_id {clip(inter['item_id'].iat[i])} is not in {items_path}")
    inter = inter[~unknown.to_numpy()]
    if inter.empty:
        bad.check()
        raise DataError(f"{inter_path}: no rows left whose item is in {items_path}")
    return inter.drop(columns="_line").reset_index(drop=True)


def finish(inter: pd.DataFrame, items: pd.DataFrame, bad: BadRows, inter_path, items_path):
    """Clean both tables, link them, and apply the bad-row budget."""
    if inter.empty:
        raise DataError(f"{inter_path}: no rows")
    items = clean_items(items, items_path, bad)
    inter = link(clean_interactions(inter, inter_path, bad), items, bad, inter_path, items_path)
    bad.check()
    return inter, items
