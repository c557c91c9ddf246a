"""Reading source files line by line (plain or gzip), with the structural checks every format needs.

Lines are read lazily, so a reader's memory is the parsed rows, never the raw file. Line numbers are
1-based as an editor shows them (the header is line 1).
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from translrec_dist.data.readers.rows import BadRows, excerpt_list
from translrec_dist.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
# Item descriptions can be megabytes; the csv module's default limit (128 KiB) would stop on them. A longer
# field is reported as a bad row (and text is cut to data.max_field_chars anyway).
csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))


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
                if n == 1 and line.startswith(BOM):  # Excel's UTF-8 marker, not part of the first column name
                    line = line[len(BOM):]
                yield n, line.rstrip(b"\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: the gzip stream is broken after line {n} ({e}); the file is truncated or "
                        f"corrupt: download it again") from None
    if n == 0:
        raise DataError(f"{path}: the file has no lines (empty after decompression)")


def text_lines(path: Path, encoding: str, bad: BadRows) -> Iterator[tuple[int, str]]:
    """Decoded non-blank lines; a line that is not valid ``encoding`` is counted and left out."""
    seen_text = False
    for n, raw in raw_lines(path):
        if b"\x00" in raw:  # text tables never hold NUL bytes; binary files and UTF-16 text do
            if not seen_text:
                raise DataError(f"{path}: binary data, not a text table (a NUL byte in line {n}, column "
                                f"{raw.index(0) + 1}); check the file (a UTF-16 export? re-save it as UTF-8)")
            bad.rows_read += 1
            bad.add("binary_data", f"{path}, line {n}", "NUL bytes in the line (binary data)")
            continue
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            bad.rows_read += 1
            bad.add("not_" + encoding.replace("-", "").lower(), f"{path}, line {n}",
                    f"not {encoding}: invalid byte 0x{raw[e.start]:02x} at column {e.start + 1}")
            continue
        if line.strip():
            seen_text = True
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
        split = csv_records(lines, path, sep, width, bad)
    else:
        split = ((n, line.split(sep)) for n, line in lines)
    for n, fields in split:
        bad.rows_read += 1
        if len(fields) != width:
            bad.add("wrong_field_count", f"{path}, line {n}",
                    f"{len(fields)} fields, expected {width} ({excerpt_list(columns)})")
            continue
        rows.append(fields)
        numbers.append(n)
    df = pd.DataFrame(rows, columns=columns, dtype=object)
    df["_line"] = numbers
    return df


def iter_jsonl(path: Path, bad: BadRows) -> Iterator[tuple[int, dict]]:
    """Objects of a JSON Lines file; a line that is not a JSON object is counted and left out."""
    objects, first_bad = 0, None
    for n, line in text_lines(path, "utf-8", bad):
        bad.rows_read += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            first_bad = first_bad or f"line {n}: {e.msg} at column {e.colno}"
            bad.add("not_json", f"{path}, line {n}", f"{e.msg} at column {e.colno}")
            continue
        if not isinstance(obj, dict):
            kind = "array" if isinstance(obj, list) else type(obj).__name__
            first_bad = first_bad or f"line {n} is a JSON {kind}"
            bad.add("not_json", f"{path}, line {n}", f"a JSON {kind}, expected an object")
            continue
        objects += 1
        yield n, obj
    if objects == 0 and first_bad:
        raise DataError(f"{path}: no line holds a JSON object ({first_bad}); JSON Lines is one {{...}} object "
                        f"per line (a JSON array converts with: jq -c '.[]' FILE)")


def csv_records(lines: Iterator[tuple[int, str]], path: Path, sep: str, width: int,
                bad: BadRows) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each CSV record (RFC 4180: a quoted field may span lines).

    An unclosed quote makes the csv module swallow every following line into one field, up to the next
    quote (usually the opening quote of a later field, so text follows it) or the end of the file. A record
    that spans lines is taken as such an accident when it has the wrong number of fields or is not valid
    under strict quoting: the line where the quote opened is counted as a bad row (``unclosed_quote``) and
    the swallowed lines are read again as rows. A well-formed multi-line field is kept (``multiline_records``).
    """
    pending: deque[tuple[int, str]] = deque()
    consumed: list[tuple[int, str]] = []

    class Source:  # an iterator that can be refilled after the file ends (a swallowed tail is re-read)
        def __iter__(self):
            return self

        def __next__(self) -> str:
            item = pending.popleft() if pending else next(lines, None)
            if item is None:
                raise StopIteration
            consumed.append(item)
            return item[1] + "\n"  # the csv module keeps a quoted field's line breaks only if it sees them

    reader = csv.reader(Source(), delimiter=sep)
    while True:
        consumed.clear()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # a field over the size limit
            if not consumed:
                return
            bad.rows_read += 1
            bad.add("csv_error", f"{path}, line {consumed[0][0]}", str(e))
            pending.extendleft(reversed(consumed[1:]))
            continue
        if len(consumed) > 1:
            if len(fields) != width or not strictly_quoted([line for _, line in consumed], sep):
                bad.rows_read += 1
                bad.add("unclosed_quote", f"{path}, line {consumed[0][0]}",
                        f"a quote opened on this line is not closed: it runs to line {consumed[-1][0]} and would "
                        f"swallow {len(consumed) - 1} rows; close it (a quote inside a quoted field is written \"\")")
                pending.extendleft(reversed(consumed[1:]))
                continue
            bad.notes["multiline_records"] += 1
        yield consumed[0][0], fields


def strictly_quoted(lines: list[str], sep: str) -> bool:
    try:
        list(csv.reader([line + "\n" for line in lines], delimiter=sep, strict=True))
    except csv.Error:
        return False
    return True


def require_columns(df: pd.DataFrame, columns: list[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = excerpt_list(c for c in df.columns if c != "_line")
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {found}{hint}")
