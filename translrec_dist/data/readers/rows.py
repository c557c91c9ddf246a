"""The bad-input policy shared by every reader.

Structural problems (a file that is missing, empty, truncated, or lacks a required column) stop the run
with a ``DataError`` naming the file, the line and the problem. Row-level problems (one row that does not
parse, one rating that is not a number, one interaction whose item has no metadata) are counted by kind
here, the row is left out, and the run stops once they exceed ``data.max_bad_fraction`` of the rows read:
a few bad rows in tens of millions must not kill an 8-hour job, a wrong file must not train quietly.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from translrec_dist.errors import DataError

log = logging.getLogger(__name__)
EXAMPLES_PER_KIND = 3
EXCERPT_CHARS = 60  # a bad value is quoted this far: a 10 MB line must not come back in the message


def excerpt(value, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def clip(text, limit: int = EXCERPT_CHARS) -> str:
    """``str(text)`` cut to ``limit`` characters (an id or a name, shown as is)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def excerpt_list(names, limit: int = 8) -> str:
    """``a, b, c`` of at most ``limit`` names, each cut short (a header-less file makes its first row the header)."""
    names = [str(n) for n in names]
    shown = ", ".join(n if len(n) <= EXCERPT_CHARS else n[:EXCERPT_CHARS] + "..." for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass
class BadRows:
    max_fraction: float = 0.001
    # What lets such rows through; None where the command has no such option (predict's input is all or nothing)
    allow: str | None = "raise data.max_bad_fraction to leave such rows out"
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    rows_read: int = 0
    notes: Counter = field(default_factory=Counter)  # harmless oddities, reported but not counted as bad

    def add(self, kind: str, where: str, detail: str, n: int = 1) -> None:
        """Count ``n`` bad rows of ``kind``; ``where`` is ``file, line N`` of the first one."""
        if n <= 0:
            return
        self.counts[kind] += n
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND:
            kept.append(f"{where}: {detail if len(detail) <= 300 else detail[:300] + '...'}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def check(self) -> None:
        """Log what was left out; stop when it is more than the allowed fraction of the rows read."""
        if not self.total:
            return
        fraction = self.total / max(self.rows_read, 1)
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        first = "; ".join(e[0] for e in self.examples.values())
        if fraction > self.max_fraction:
            if self.allow is None:
                raise DataError(f"{self.total} of {self.rows_read} rows are bad: {summary}. First of each kind: "
                                f"{first}. Fix the input: every row must be well formed")
            raise DataError(f"{self.total} of {self.rows_read} rows are bad ({fraction:.4%} > data.max_bad_fraction="
                            f"{self.max_fraction}): {summary}. First of each kind: {first}. Fix the input, or "
                            f"{self.allow}")
        log.warning("left out %d bad rows of %d (%s); first of each kind: %s", self.total, self.rows_read,
                    summary, first)

    def report(self) -> dict:
        return {"rows_read": self.rows_read, "bad_rows": dict(sorted(self.counts.items())),
                "bad_row_examples": self.examples, "notes": dict(sorted(self.notes.items()))}
