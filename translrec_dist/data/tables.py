"""The seed's text,label table, and ``read_table`` for small side tables (predict inputs).

Interaction sources are read by ``translrec_dist.data.readers``. Every problem is reported with the file
and row (1-based line numbers as an editor shows them, header = line 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from translrec_dist.errors import DataError

log = logging.getLogger(__name__)
SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")


def read_table(path: Path) -> pd.DataFrame:
    """CSV/TSV/Parquet/JSONL into a DataFrame, with clear errors for the usual breakages."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".jsonl":
            df = pd.read_json(path, lines=True, encoding="utf-8")
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", encoding="utf-8",
                             dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (invalid byte at offset {e.start}); re-encode the file as UTF-8, "
                        f"e.g. iconv -f latin1 -t utf-8") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: malformed table: {e}") from None
    except ValueError as e:
        raise DataError(f"{path}: cannot parse: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")


def to_numeric(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: column {column} = {df[column].iloc[row]!r} is not a number")
    return values


def read_interactions_dir(directory: str | Path, need_rating: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``interactions.*`` + ``items.*`` under the default bad-row budget (kept for callers of the core API)."""
    from types import SimpleNamespace

    from translrec_dist.data.readers import read_source

    # The fields read_source uses, with data.max_bad_fraction's default (config is above this layer).
    data = SimpleNamespace(format="interactions", path=str(directory), columns={}, max_bad_fraction=0.001)
    src = read_source(data, need_rating)
    return src.interactions, src.items


def read_text_label(path: str | Path) -> pd.DataFrame:
    """The seed's table: ``text,label``. Empty text rows are dropped and counted; labels must be 0/1."""
    path = Path(path)
    df = read_table(path)
    require_columns(df, ["text", "label"], path)
    empty = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
    no_label = df["label"].isna()
    dropped = empty | no_label
    if dropped.any():
        log.warning("%s: dropped %d rows with empty text and %d with no label", path,
                    int(empty.sum()), int((no_label & ~empty).sum()))
    labels = to_numeric(df, "label", path)
    bad = ~labels.isin([0, 1]) & ~dropped
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: label {df['label'].iloc[row]!r} is not 0 or 1 (task ctr)")
    out = pd.DataFrame({"text": df["text"].astype(str), "label": labels, "line": np.arange(len(df)) + 2})
    out = out[~dropped.to_numpy()].reset_index(drop=True)
    if out.empty:
        raise DataError(f"{path}: no usable rows (all had empty text or label)")
    return out
