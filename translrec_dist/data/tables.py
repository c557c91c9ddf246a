"""The seed's text,label table, and ``read_table`` for small side tables (predict inputs).

Interaction sources are read by ``translrec_dist.data.readers``. Every problem is reported with the file
and row (1-based line numbers as an editor shows them, header = line 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from translrec_dist.data.readers.rows import BadRows, excerpt, excerpt_list
from translrec_dist.errors import DataError

log = logging.getLogger(__name__)
SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")


def read_table(path: Path, keep_lines: bool = False, bad: BadRows | None = None) -> pd.DataFrame:
    """CSV/TSV/Parquet/JSONL (optionally gzipped) through the source readers' checks, empty cells as NaN.

    Without ``bad`` every malformed row (wrong field count, unclosed quote, bad bytes) stops with its file and
    line: these tables (predict inputs, new items) are small and made by hand. ``keep_lines`` keeps ``_line``.
    """
    from translrec_dist.data.readers.table import read_any

    path = Path(path)
    strict = bad is None
    bad = bad if bad is not None else BadRows(0.0, allow=None)
    df = read_any(path, bad)
    if strict:
        bad.check()
    df.columns = [str(c).strip() for c in df.columns]
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].mask(df[column].astype(str) == "")
    return df if keep_lines else df.drop(columns="_line", errors="ignore")


def require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {excerpt_list(df.columns)} (the "
                        f"first line must be the header)")


def to_numeric(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        line = df["_line"].iat[row] if "_line" in df else row + 2
        raise DataError(f"{path}, line {line}: column {column} = {excerpt(df[column].iloc[row])} is not a number")
    return values


def read_interactions_dir(directory: str | Path, need_rating: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``interactions.*`` + ``items.*`` under the default bad-row budget (kept for callers of the core API)."""
    from types import SimpleNamespace

    from translrec_dist.data.readers.source import read_source

    # The fields read_source uses, with data.max_bad_fraction's default (config is above this layer).
    data = SimpleNamespace(format="interactions", path=str(directory), columns={}, max_bad_fraction=0.001)
    src = read_source(data, need_rating)
    return src.interactions, src.items


def read_text_label(path: str | Path, max_bad_fraction: float = 0.001) -> pd.DataFrame:
    """The seed's table: ``text,label``. Rows with empty text or no label are bad rows under
    ``data.max_bad_fraction`` (counted, reported with their line, left out); labels must be 0/1."""
    path = Path(path)
    bad = BadRows(max_bad_fraction)
    df = read_table(path, keep_lines=True, bad=bad)
    require_columns(df, ["text", "label"], path)
    empty = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
    no_label = df["label"].isna() & ~empty
    for kind, mask, what in (("empty_text", empty, "empty text"), ("missing_label", no_label, "no label")):
        if mask.any():
            bad.add(kind, f"{path}, line {df['_line'].iat[int(np.flatnonzero(mask.to_numpy())[0])]}", what,
                    int(mask.sum()))
    dropped = empty | no_label
    if dropped.any():
        log.warning("%s: dropped %d rows with empty text and %d with no label", path, int(empty.sum()),
                    int(no_label.sum()))
    bad.check()
    labels = to_numeric(df, "label", path)
    bad_label = ~labels.isin([0, 1]) & ~dropped
    if bad_label.any():
        row = int(np.flatnonzero(bad_label.to_numpy())[0])
        raise DataError(f"{path}, line {df['_line'].iat[row]}: label {excerpt(df['label'].iloc[row])} is not 0 or 1 "
                        f"(task ctr)")
    out = pd.DataFrame({"text": df["text"].astype(str), "label": labels, "line": df["_line"].to_numpy()})
    out = out[~dropped.to_numpy()].reset_index(drop=True)
    if out.empty:
        raise DataError(f"{path}: no usable rows (all had empty text or label)")
    return out
