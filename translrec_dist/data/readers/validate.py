"""Row checks on parsed interaction columns that a type conversion alone does not catch.

Timestamp units: one column mixing Unix seconds with milliseconds (or micro-, nanoseconds) sorts every
millisecond row after every second row, so the chronological split is silently wrong. The unit of each
value is read from its magnitude; the unit most rows have is the column's, and rows in another unit are
bad rows (``timestamp_unit``) under ``data.max_bad_fraction``: a stray row is left out with a warning, a
column that really mixes units stops the run with both magnitude ranges. Convert them to one unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from translrec_dist.data.readers.rows import BadRows

# Upper bounds of |value| per unit: seconds below 1e11 (year 5138), then x1000 per unit. ISO 8601 dates are
# parsed to seconds, so they join the seconds.
UNITS = (("seconds", 1e11), ("milliseconds", 1e14), ("microseconds", 1e17), ("nanoseconds", np.inf))


def timestamp_units(seconds_like: pd.Series) -> np.ndarray:
    """Index into ``UNITS`` of each value's unit by magnitude."""
    bounds = np.array([b for _, b in UNITS])
    return np.searchsorted(bounds, np.abs(seconds_like.to_numpy(dtype=float)), side="right")


def mixed_timestamp_units(inter: pd.DataFrame, keep: pd.Series, path, bad: BadRows) -> pd.Series:
    """Rows (among ``keep``) whose timestamp is in another unit than most: counted bad, returned as a mask."""
    unit = pd.Series(timestamp_units(inter["timestamp"]), index=inter.index)
    counts = unit[keep].value_counts()
    if len(counts) < 2:
        return pd.Series(False, index=inter.index)
    major = int(counts.index[0])

    def describe(u: int) -> str:
        values = inter["timestamp"][keep & (unit == u)]
        return f"{counts[u]} rows look like {UNITS[u][0]} ({values.min():.6g} to {values.max():.6g})"

    summary = " and ".join(describe(int(u)) for u in counts.index)
    wrong = keep & (unit != major)
    first = int(np.flatnonzero(wrong.to_numpy())[0])
    value = inter["timestamp"].iat[first]
    bad.add("timestamp_unit", f"{path}, line {inter['_line'].iat[first]}",
            f"timestamp {value:.6g} looks like {UNITS[int(unit.iat[first])][0]} while most are "
            f"{UNITS[major][0]}: the column mixes units ({summary}); convert the column to one unit",
            int(wrong.sum()))
    return wrong
