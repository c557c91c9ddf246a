"""A minimal reader of RecBole atomic files (``NAME.inter`` + ``NAME.item``), for the MovieLens-100k demo.

The files ship inside the ``recbole`` wheel (``recbole/dataset_example/ml-100k``); they are read here
as plain tab-separated text, recbole itself is never imported. Headers look like ``item_id:token``;
the type suffix is dropped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from translrec_dist.errors import DataError

# MovieLens columns -> the names item text templates use.
RENAME = {"movie_title": "title", "release_year": "year", "class": "genres"}


def bundled_ml100k() -> Path:
    """The ml-100k directory of the installed recbole wheel, located without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.format=recbole with no data.path needs the recbole wheel for its bundled "
                        "MovieLens-100k: pip install --no-deps recbole==1.2.1 (or set data.path)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def read_atomic(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8")
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    return df


def read_recbole_dir(directory: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) in the interactions format: user_id, item_id, rating, timestamp / item_id, text."""
    directory = Path(directory) if directory else bundled_ml100k()
    if not directory.is_dir():
        raise DataError(f"data.path={directory} is not a directory of RecBole atomic files")
    name = directory.name
    inter = read_atomic(directory / f"{name}.inter")
    items = read_atomic(directory / f"{name}.item").rename(columns=RENAME)
    for col in ("user_id", "item_id", "timestamp"):
        if col not in inter.columns:
            raise DataError(f"{directory / (name + '.inter')}: no {col} column; found {', '.join(inter.columns)}")
    inter["timestamp"] = pd.to_numeric(inter["timestamp"], errors="raise")
    if "rating" in inter.columns:
        inter["rating"] = pd.to_numeric(inter["rating"], errors="raise")
    if "genres" in items.columns:
        items["genres"] = items["genres"].str.split().str.join(", ")
    unknown = ~inter["item_id"].isin(set(items["item_id"]))
    if unknown.any():
        raise DataError(f"{directory}: {int(unknown.sum())} interactions name items missing from {name}.item")
    return inter.reset_index(drop=True), items
