"""Checks ``translrec predict`` makes before it scores anything: where the output goes, and rows with no text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from translrec_dist.errors import DataError


def check_output_file(output: str | None) -> None:
    """Fail now, not after scoring, when ``--output`` cannot be written."""
    if output is None:
        return
    path = Path(output)
    if path.is_dir():
        raise DataError(f"--output {path} is a directory; give a file name, e.g. {path / 'scores.jsonl'}")
    if not path.parent.is_dir():
        raise DataError(f"--output {path}: the folder {path.parent} does not exist; create it first "
                        f"(mkdir -p {path.parent})")


def refuse_empty_text(examples: pd.DataFrame, rows: pd.DataFrame, path: Path) -> None:
    """A row without text would get a score for the empty string: refuse, naming the rows."""
    empty = examples["text"].fillna("").astype(str).str.strip() == ""
    if "text_pair" in examples and not examples["text_pair"].isna().all():
        empty |= examples["text_pair"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        first = np.flatnonzero(empty.to_numpy())
        lines = rows["_line"].to_numpy()[first] if "_line" in rows else first + 2
        shown = ", ".join(str(n) for n in lines[:5])
        raise DataError(f"{path}, line {lines[0]}: empty text ({len(first)} rows with no text to score, at lines "
                        f"{shown}{' ...' if len(first) > 5 else ''}); fill in the text or remove those rows")
