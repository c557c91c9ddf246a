"""Row checks on parsed interaction columns that a type conversion alone does not catch.

Ratings far outside the data's scale: a finite ``1e308`` passes ``to_numeric`` and then overflows the loss
(training stops with NaN/inf far from the file), or, with ``data.positive_threshold``, silently becomes a positive.
A rating beyond ``RATING_LIMIT``, or more than ``SCALE_FACTOR`` spans (the interquartile range, at least the
median's size and 1: robust to the outliers themselves) away from the median, is a bad row
(``rating_out_of_scale``) under ``data.max_bad_fraction``. A 1-5 scale keeps everything within 3000 of its median.

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


RATING_LIMIT = 1e9  # no rating scale reaches it; squared in a regression loss it still fits in float32
SCALE_FACTOR = 1000


def ratings_out_of_scale(rating: pd.Series, keep: pd.Series) -> tuple[pd.Series, str]:
    """Rows (among ``keep``) whose rating is far outside the others' scale, and the scale in words."""
    values = rating[keep].to_numpy(dtype=float)
    if not len(values):
        return pd.Series(False, index=rating.index), ""
    sane = values[np.abs(values) <= RATING_LIMIT]
    if not len(sane):
        sane = np.zeros(1)
    q1, median, q3 = np.percentile(sane, [25, 50, 75])
    span = max(q3 - q1, abs(median), 1.0)
    absurd = keep & ((rating.abs() > RATING_LIMIT) | ((rating - median).abs() > SCALE_FACTOR * span))
    rest = rating[keep & ~absurd].to_numpy(dtype=float)
    lo, hi = (rest.min(), rest.max()) if len(rest) else (median, median)
    return absurd, f"the other ratings lie between {lo:.6g} and {hi:.6g}"
