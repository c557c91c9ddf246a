"""Reading source files line by line (plain or gzip), with the structural checks every format needs.

Lines are read lazily, so a reader's memory is the parsed rows, never the raw file. Line numbers are
1-based as an editor shows them (the header is line 1).
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from translrec_dist.data.readers.rows import BadRows
from translrec_dist.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the newline); gzip detected by its magic bytes, not the suffix."""
    check_file(path)
    with open(path, "rb") as f:
        zipped = f.read(2) == GZIP_MAGIC
    opener = gzip.open if zipped else open
    n = 0
    try:
        with opener(path, "rb") as f:
            for n, line in enumerate(f, start=1):  # noqa: B007 - n is reported if the stream breaks
                yield n, line.rstrip(b"\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: the gzip stream is broken after line {n} ({e}); the file is truncated or "
                        f"corrupt: download it again") from None
    if n == 0:
        raise DataError(f"{path}: the file has no lines (empty after decompression)")


def text_lines(path: Path, encoding: str, bad: BadRows) -> Iterator[tuple[int, str]]:
    """Decoded non-blank lines; a line that is not valid ``encoding`` is counted and left out."""
    for n, raw in raw_lines(path):
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            bad.rows_read += 1
            bad.add("not_" + encoding.replace("-", "").lower(), f"{path}, line {n}",
                    f"not {encoding}: invalid byte 0x{raw[e.start]:02x} at column {e.start + 1}")
            continue
        if line.strip():
            yield n, line


def read_delimited(path: Path, sep: str, bad: BadRows, *, columns: list[str] | None = None, encoding="utf-8",
                   quoted: bool = False) -> pd.DataFrame:
    """A delimited file into string columns plus ``_line``. With ``columns=None`` the first line is the header.

    Rows with the wrong number of fields are counted (``wrong_field_count``) and left out. ``quoted`` uses
    the csv module (RFC 4180 quotes, e.g. MovieLens titles with commas); otherwise a plain split, which
    also handles multi-character separators such as ML-1M's ``::``.
    """
    lines = text_lines(path, encoding, bad)
    if columns is None:
        try:
            _, header = next(lines)
        except StopIteration:
            raise DataError(f"{path}: no header line") from None
        columns = [c.strip() for c in (next(csv.reader([header], delimiter=sep)) if quoted else header.split(sep))]
    width = len(columns)
    rows, numbers = [], []
    if quoted:
        holder = {"n": 0}

        def tracked():
            for n, line in lines:
                holder["n"] = n
                yield line

        split = ((holder["n"], fields) for fields in csv.reader(tracked(), delimiter=sep))
    else:
        split = ((n, line.split(sep)) for n, line in lines)
    for n, fields in split:
        bad.rows_read += 1
        if len(fields) != width:
            bad.add("wrong_field_count", f"{path}, line {n}",
                    f"{len(fields)} fields, expected {width} ({', '.join(columns)})")
            continue
        rows.append(fields)
        numbers.append(n)
    df = pd.DataFrame(rows, columns=columns, dtype=object)
    df["_line"] = numbers
    return df


def iter_jsonl(path: Path, bad: BadRows) -> Iterator[tuple[int, dict]]:
    """Objects of a JSON Lines file; a line that is not a JSON object is counted and left out."""
    for n, line in text_lines(path, "utf-8", bad):
        bad.rows_read += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            bad.add("not_json", f"{path}, line {n}", f"{e.msg} at column {e.colno}")
            continue
        if not isinstance(obj, dict):
            bad.add("not_json", f"{path}, line {n}", f"a JSON {type(obj).__name__}, expected an object")
            continue
        yield n, obj


def require_columns(df: pd.DataFrame, columns: list[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(c for c in df.columns if c != "_line")
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {found}{hint}")
