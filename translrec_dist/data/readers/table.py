"""Generic tables: ``interactions.*`` + ``items.*`` (CSV, TSV, JSONL, optionally gzipped, or Parquet).

``data.columns`` maps our column names (user_id, item_id, rating, timestamp) to the file's, e.g.
``{user_id: reviewerID, item_id: asin, rating: overall}``; item_id applies to both tables. Every other
items column is item text. ``data.format=interactions`` is this reader with the names used as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from translrec_dist.data.readers.files import check_file, iter_jsonl, read_delimited, require_columns
from translrec_dist.data.readers.rows import BadRows
from translrec_dist.errors import DataError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".csv.gz", ".tsv.gz", ".jsonl.gz")
OUR_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def find_table(directory: Path, stem: str) -> Path:
    for suffix in SUFFIXES:
        if (directory / f"{stem}{suffix}").is_file():
            return directory / f"{stem}{suffix}"
    raise DataError(f"{directory}: no {stem} table found (expected {stem}" + ", ".join(SUFFIXES) + ")")


def read_any(path: Path, bad: BadRows) -> pd.DataFrame:
    """A table as string-ish columns plus ``_line`` (the row's line in the file; Parquet: row number)."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        check_file(path)
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        bad.rows_read += len(df)
        return df.assign(_line=np.arange(1, len(df) + 1))
    if name.endswith(".jsonl"):
        rows = [{**obj, "_line": n} for n, obj in iter_jsonl(path, bad)]
        return pd.DataFrame(rows)
    return read_delimited(path, "\t" if name.endswith(".tsv") else ",", bad, quoted=True)


def read_tables(path: str | Path, bad: BadRows, columns: dict[str, str]):
    """(interactions, items, files read) in raw form for ``normalize.finish``."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"data.path={directory} is not a directory with interactions and items tables")
    ipath, mpath = find_table(directory, "interactions"), find_table(directory, "items")
    rename = {theirs: ours for ours, theirs in columns.items()}
    inter, items = read_any(ipath, bad).rename(columns=rename), read_any(mpath, bad).rename(columns=rename)
    hint = "; map differently named columns with data.columns, e.g. data.columns.user_id=reviewerID"
    require_columns(inter, ["user_id", "item_id"], ipath, hint)
    require_columns(items, ["item_id"], mpath, hint)
    inter = inter[[c for c in (*OUR_COLUMNS, "_line") if c in inter.columns]]
    return inter, items, [ipath, mpath]
