"""Source readers: one module per family of formats, all ending in the same two tables.

``read_source`` picks the reader for ``data.format``, applies the bad-input policy (``rows``) and the
common cleaning (``normalize``), and returns a ``Source``: interactions ``user_id, item_id, [rating],
timestamp`` and items ``item_id`` + text fields, with the files read and the bad-row report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from translrec_dist.data.readers.amazon import read_amazon
from translrec_dist.data.readers.movielens import read_movielens
from translrec_dist.data.readers.normalize import finish
from translrec_dist.data.readers.recbole import bundled_ml100k, read_recbole
from translrec_dist.data.readers.rows import BadRows
from translrec_dist.data.readers.table import read_tables
from translrec_dist.data.synthetic import generate_synthetic
from translrec_dist.errors import DataError

if TYPE_CHECKING:
    from translrec_dist.config.schema import DataConfig


@dataclass
class Source:
    interactions: pd.DataFrame
    items: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def source_path(cfg: DataConfig) -> Path:
    """Where the source lives: ``data.path``, or for ``format=recbole`` without one the recbole wheel's ml-100k."""
    return bundled_ml100k() if cfg.path is None and cfg.format == "recbole" else Path(cfg.path)


def read_source(cfg: DataConfig, need_rating: bool, need_text: bool = True) -> Source:
    """``need_text``: false for a model that reads no item text (an items file may then be missing)."""
    if cfg.format == "synthetic":
        inter, items = generate_synthetic(cfg.synthetic)
        return Source(inter.astype({"user_id": str, "item_id": str}), items.astype({"item_id": str}))
    bad = BadRows(cfg.max_bad_fraction)
    if cfg.format == "movielens":
        inter, items, files = read_movielens(cfg.path, bad)
    elif cfg.format == "recbole":
        inter, items, files = read_recbole(source_path(cfg), bad, cfg.columns, need_items=need_text)
    elif cfg.format == "amazon":
        inter, items, files = read_amazon(cfg.path, bad)
    elif cfg.format in ("interactions", "table"):
        inter, items, files = read_tables(cfg.path, bad, cfg.columns if cfg.format == "table" else {})
    else:
        raise DataError(f"data.format={cfg.format} has no interactions reader")
    if need_rating and "rating" not in inter.columns:
        raise DataError(f"{files[0]}: no rating column, which task=rating and data.positive_threshold need; "
                        f"map it with data.columns.rating=NAME")
    inter, items = finish(inter, items, bad, files[0], files[-1])
    return Source(inter, items, files, bad.report())
