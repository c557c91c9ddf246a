"""Checks between the source tables and training, so a run stops before training rather than after it.

- Repeated interactions: a (user, item) pair counts once, at its earliest interaction (equal timestamps:
  file order). Later repeats are left out, counted and logged; kept, a repeat that became a test target
  would sit in its own user's history (a label leak).
- Splits evaluation needs (``eval.splits``, and valid with ``eval.every_steps``/``eval.best_metric``) must
  have examples; otherwise training would run for nothing and evaluation fail at the end.
- Labels: a click-through run whose training labels are all one class stops (nothing to learn); an
  evaluation split with one class gets a warning (its AUC is written as null).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from translrec_dist.errors import DataError

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)


def drop_repeated_interactions(inter: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(interactions with each (user, item) pair once, at its earliest time; number of repeats left out)."""
    if inter.empty:
        return inter, 0
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy()))  # time, then file order
    repeat = np.zeros(len(inter), dtype=bool)
    repeat[order] = inter.iloc[order].duplicated(["user_id", "item_id"], keep="first").to_numpy()
    n = int(repeat.sum())
    if n:
        first = inter.iloc[int(np.flatnonzero(repeat)[0])]
        log.warning("left out %d repeated (user, item) interactions: each pair counts once, at its earliest "
                    "interaction (e.g. user %s, item %s)", n, first["user_id"], first["item_id"])
    return inter[~repeat], n


def needed_splits(cfg: RunConfig) -> list[str]:
    wanted = set(cfg.eval.splits) | ({"valid"} if cfg.eval.every_steps or cfg.eval.best_metric else set())
    return [s for s in ("valid", "test") if s in wanted]


def why_no_examples(cfg: RunConfig, inter: pd.DataFrame | None, rows: int | None) -> str:
    d = cfg.data
    if inter is None:  # text_label: random split by fraction
        return (f"data.valid_fraction={d.valid_fraction} and data.test_fraction={d.test_fraction} of {rows} usable "
                f"rows make less than one row; raise them or give more rows")
    k = d.eval_items_per_user
    lengths = inter.groupby("user_id").size() if len(inter) else pd.Series([0])
    need = max(2 * k + 1, k + d.min_history + 1)
    short = int((lengths < need).sum())
    return (f"a user has valid and test items only with at least {need} interactions (data.eval_items_per_user="
            f"{k}, data.min_history={d.min_history}); {short} of {len(lengths)} users have fewer (the most active "
            f"has {int(lengths.max())}). Lower data.eval_items_per_user, data.min_history or data.kcore, or give "
            f"more interactions per user")


def check_eval_splits(frames: dict[str, pd.DataFrame], cfg: RunConfig, inter: pd.DataFrame | None = None) -> None:
    """Stop before training when a split evaluation will need is empty."""
    for split in needed_splits(cfg):
        if frames[split].empty:
            why = why_no_examples(cfg, inter, sum(len(f) for f in frames.values()))
            raise DataError(f"no {split} examples (needed by eval.splits/eval.every_steps): {why}")


def check_labels(frames: dict[str, pd.DataFrame], cfg: RunConfig, labels: str = "click") -> None:
    """All-equal labels: a click model stops (one class teaches nothing); an eval split with one class warns.
    ``labels``: "click" (0/1) or "rating" (values), as the task that reads the examples says."""
    train = frames["train"]["label"].to_numpy()
    values = np.unique(train)
    d = cfg.data
    if labels == "click" and len(values) == 1:
        if d.format == "text_label":
            hint = f"the label column of {d.path} holds only {values[0]:g}"
        elif values[0] == 1 and d.positive_threshold is not None:
            hint = (f"every rating reaches data.positive_threshold={d.positive_threshold} and "
                    f"data.negatives_per_positive={d.negatives_per_positive}: raise the threshold or sample negatives")
        elif values[0] == 1:
            hint = ("every example is a positive: set data.negatives_per_positive > 0 (sampled negatives) or "
                    "data.positive_threshold (ratings below it are negatives)")
        else:
            hint = f"no rating reaches data.positive_threshold={d.positive_threshold}: lower it"
        raise DataError(f"all {len(train)} training labels are {values[0]:g}: a click-through model cannot learn "
                        f"from one class; {hint}")
    if labels == "rating" and len(values) == 1:
        log.warning("every training rating is %g: the model can only learn that constant", values[0])
    if labels == "click":
        for split in ("valid", "test"):
            present = np.unique(frames[split]["label"].to_numpy())
            if len(present) == 1:
                log.warning("the %s split has only label %g: its AUC is undefined and is written as null",
                            split, present[0])
