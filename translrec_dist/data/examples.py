"""Interactions -> text examples: chronological per-user split, histories, sampled negatives.

An example is one row of ``example_id, text, text_pair, label, user_id, item_id``: ``text`` is the
user's recent history (newest first), ``text_pair`` the candidate item's text.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from translrec_dist.data.integrity import drop_repeated_interactions
from translrec_dist.errors import ConfigError, DataError

if TYPE_CHECKING:
    from translrec_dist.config.schema import DataConfig

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def render_item_texts(items: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Item text through ``data.item_text`` (a format template over the items' columns), fields truncated."""
    fields = [c for c in items.columns if c not in ("item_id", "_line")]
    if not fields and cfg.item_text is None:  # ids only (model.sequence.item_repr=id reads no text): id as title
        return pd.Series(items["item_id"].astype(str).to_numpy(), index=items["item_id"].to_numpy())
    template = cfg.item_text or " . ".join("{" + f + "}" for f in fields)
    wanted = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    unknown = [w for w in wanted if w not in items.columns]
    if unknown:
        example = " ".join("{" + f + "}" for f in fields[:2])
        # the same template renders an export's new items (translrec index --items), where no override exists
        raise ConfigError(f"data.item_text: field {{{unknown[0]}}} is not an items column; available: "
                          f"{', '.join(fields)}. Training: set data.item_text to a template over them, e.g. "
                          f"\"data.item_text='{example}'\" on the command line. New items for an export "
                          f"(translrec index --items): give the file the columns its template {template!r} uses")
    cols = {w: items[w].fillna("").astype(str).str.slice(0, cfg.max_field_chars) for w in set(wanted)}
    rendered = [template.format(**{w: cols[w].iat[i] for w in cols}).strip() for i in range(len(items))]
    return pd.Series(rendered, index=items["item_id"].to_numpy())


def chronological_order(inter: pd.DataFrame) -> pd.DataFrame:
    """Sort by user then time; equal timestamps keep file order (never item id, which leaks order)."""
    inter = inter.assign(_row=np.arange(len(inter)))
    return inter.sort_values(["user_id", "timestamp", "_row"], kind="stable").reset_index(drop=True)


def split_positions(n: int, k: int) -> list[str]:
    """Leave-k-out for one user with n interactions in time order: last k test, k before valid."""
    if n < 2 * k + 1:
        return ["train"] * n
    return ["train"] * (n - 2 * k) + ["valid"] * k + ["test"] * k


def render_history(recent_items, item_text: pd.Series, cfg: DataConfig) -> str:
    """Items newest first, each through ``data.history_template``, joined by the separator."""
    return cfg.history_separator.join(cfg.history_template.format(text=item_text[i]) for i in recent_items)


def latest_histories(inter: pd.DataFrame, item_text: pd.Series, cfg: DataConfig) -> dict[str, str]:
    """Each user's most recent ``history_length`` items as text (what a served model conditions on)."""
    inter = chronological_order(inter[inter["item_id"].isin(item_text.index[item_text != ""])])
    return {user: render_history(g["item_id"].to_numpy()[-cfg.history_length:][::-1], item_text, cfg)
            for user, g in inter.groupby("user_id", sort=False)}


@dataclass
class Examples:
    splits: dict[str, pd.DataFrame]
    item_text: pd.Series  # item_id -> text
    dropped: dict[str, int]


def build_examples(inter: pd.DataFrame, items: pd.DataFrame, cfg: DataConfig, labels: str, seed: int) -> Examples:
    """``labels``: "click" (an interaction is a positive, plus sampled negatives) or "rating" (its rating)."""
    item_text = render_item_texts(items, cfg)
    empty = item_text == ""
    dropped = {"empty_item_text": 0}
    if empty.any():
        bad = set(item_text.index[empty])
        mask = inter["item_id"].isin(bad)
        dropped["empty_item_text"] = int(mask.sum())
        log.warning("dropped %d interactions with %d items whose text is empty", int(mask.sum()), len(bad))
        inter = inter[~mask]
    if labels == "rating" and "rating" not in inter.columns:
        raise DataError("rating labels need a rating column in the interactions table (task=rating)")
    inter, dropped["repeated_interaction"] = drop_repeated_interactions(inter)  # no target in its own history
    inter = chronological_order(inter)
    rng = np.random.default_rng(seed)
    all_items = item_text.index.to_numpy()
    rows: dict[str, list] = {s: [] for s in SPLITS}
    k, n_hist = cfg.eval_items_per_user, cfg.history_length

    for user, group in inter.groupby("user_id", sort=False):
        seq = group["item_id"].to_numpy()
        ratings = group["rating"].to_numpy() if "rating" in group else np.ones(len(seq))
        seen = set(seq.tolist())
        for pos, split in enumerate(split_positions(len(seq), k)):
            if pos < cfg.min_history:
                continue
            recent = seq[max(0, pos - n_hist):pos][::-1]
            history = render_history(recent, item_text, cfg)
            if labels == "rating":
                rows[split].append((history, seq[pos], float(ratings[pos]), user))
                continue
            positive = cfg.positive_threshold is None or ratings[pos] >= cfg.positive_threshold
            rows[split].append((history, seq[pos], 1.0 if positive else 0.0, user))
            if positive:
                for neg in sample_negatives(rng, all_items, seen, cfg.negatives_per_positive):
                    rows[split].append((history, neg, 0.0, user))

    splits, next_id = {}, 0
    for split in SPLITS:
        df = pd.DataFrame(rows[split], columns=["text", "item_id", "label", "user_id"])
        df["text_pair"] = item_text.reindex(df["item_id"]).to_numpy() if len(df) else []
        df.insert(0, "example_id", np.arange(next_id, next_id + len(df)))
        next_id += len(df)
        splits[split] = df
    if splits["train"].empty:
        raise DataError("no training examples: users need more than 2 x data.eval_items_per_user + "
                        "data.min_history interactions")
    return Examples(splits, item_text, dropped)


def sample_negatives(rng: np.random.Generator, items: np.ndarray, seen: set, n: int) -> list:
    """n items the user never interacted with, uniformly at random (rejection sampling)."""
    if n == 0 or len(seen) >= len(items):
        return []
    out: list = []
    while len(out) < n:
        for i in items[rng.integers(0, len(items), size=2 * n)]:
            if i not in seen and len(out) < n:
                out.append(i)
    return out


def split_text_label(df: pd.DataFrame, cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Seeded random split of the seed's text,label table, with optional class resampling of train."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    n_valid, n_test = int(len(df) * cfg.valid_fraction), int(len(df) * cfg.test_fraction)
    parts = {"valid": order[:n_valid], "test": order[n_valid:n_valid + n_test], "train": order[n_valid + n_test:]}
    out = {}
    for split, idx in parts.items():
        part = df.iloc[np.sort(idx)].reset_index(drop=True)
        if split == "train":
            part = resample(part, cfg.resample, rng)
        out[split] = part
    next_id = 0
    for split in SPLITS:
        out[split] = out[split].assign(text_pair=None)
        out[split].insert(0, "example_id", np.arange(next_id, next_id + len(out[split])))
        next_id += len(out[split])
    return out


def resample(df: pd.DataFrame, how: str, rng: np.random.Generator) -> pd.DataFrame:
    if how == "none" or df.empty:
        return df
    groups = [g for _, g in df.groupby("label")]
    target = max(map(len, groups)) if how == "oversample" else min(map(len, groups))
    parts = [g.iloc[rng.choice(len(g), size=target, replace=how == "oversample" and target > len(g))]
             for g in groups]
    out = pd.concat(parts).sort_values("line", kind="stable").reset_index(drop=True)
    log.info("resampled train (%s): %d -> %d rows", how, len(df), len(out))
    return out
