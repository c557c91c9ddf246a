"""RecBole atomic files: ``NAME.inter`` and ``NAME.item``, tab-separated, ``name:type`` headers.

The ``:type`` suffix (token, token_seq, float, float_seq) is dropped from column names; ``data.columns``
maps our names to the file's when they differ (e.g. ``item_id: movie_id``). Every item field other than
the id is item text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from translrec_dist.data.readers.files import read_delimited, require_columns
from translrec_dist.data.readers.rows import BadRows
from translrec_dist.errors import DataError


def find_atomic(directory: Path, need_items: bool = True) -> tuple[Path, Path | None]:
    """(NAME.inter, NAME.item); the .item file may be missing when no item text is read (``need_items``)."""
    inters = sorted(directory.glob("*.inter"))
    if len(inters) != 1:
        found = ", ".join(p.name for p in inters) or "none"
        raise DataError(f"{directory}: expected exactly one .inter file for data.format=recbole, found {found}")
    item = inters[0].with_suffix(".item")
    if not item.is_file() and not need_items:
        return inters[0], None
    if not item.is_file():
        raise DataError(f"{directory}: {inters[0].name} has no {item.name} beside it (items carry the text the "
                        f"model reads)")
    return inters[0], item


def read_atomic_file(path: Path, bad: BadRows, columns: dict[str, str]):
    df = read_delimited(path, "\t", bad)
    df.columns = [c.split(":", 1)[0] if c != "_line" else c for c in df.columns]
    return df.rename(columns={v: k for k, v in columns.items() if v in df.columns})


def read_recbole(path: str | Path, bad: BadRows, columns: dict[str, str], need_items: bool = True):
    """(interactions, items, files read) in raw form for ``normalize.finish``. Without a NAME.item file (allowed
    when ``need_items`` is false: a model that reads no item text) the items are the interactions' item ids."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data.path={path} is not a directory with NAME.inter and NAME.item (data.format=recbole)")
    inter_path, item_path = find_atomic(path, need_items)
    inter = read_atomic_file(inter_path, bad, columns)
    hint = "; map differently named columns with data.columns, e.g. data.columns.item_id=movie_id"
    require_columns(inter, ["user_id", "item_id"], inter_path, hint)
    keep = [c for c in ("user_id", "item_id", "rating", "timestamp", "_line") if c in inter.columns]
    if item_path is None:
        ids = inter[[c for c in ("item_id", "_line") if c in inter.columns]].drop_duplicates("item_id")
        return inter[keep], ids.reset_index(drop=True), [inter_path]
    items = read_atomic_file(item_path, bad, columns)
    require_columns(items, ["item_id"], item_path, hint)
    return inter[keep], items, [inter_path, item_path]


def bundled_ml100k() -> Path:
    """MovieLens-100k as shipped in the recbole wheel (``data.format=recbole`` with no ``data.path``); the
    files are only read, recbole itself is never imported."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.format=recbole with no data.path reads the MovieLens-100k files of the recbole "
                        "wheel: pip install --no-deps recbole==1.2.1 (or set data.path)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
