"""User item sequences for the sequential (SASRec-style) task, from the package's leave-one-out split.

The split is the one every task uses (``examples.chronological_order`` + ``split_positions``: time order,
ties in file order, last item test, the one before valid). Items are catalog positions in file order.
Training rows are windows of up to ``data.max_history + 1`` training items: inputs ``w[:-1]``, targets
``w[1:]``, so one window trains every position at once. Eval rows are (history, target, items to mask).

Cold start: ``data.cold_item_fraction`` of the catalog (seeded) is held out; every interaction with those
items leaves the training windows, while the items stay in the catalog, in eval histories and as targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from translrec_dist.data.examples import chronological_order, split_positions
from translrec_dist.data.retrieval import catalog_texts
from translrec_dist.errors import ConfigError, DataError

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)
PAD = -1  # padding in windows and histories (catalog positions are >= 0)


@dataclass
class SequenceData:
    item_ids: np.ndarray  # catalog position -> item id (file order)
    item_text: pd.Series  # item id -> text, catalog order
    train: list[np.ndarray]  # per user: training items (catalog positions) in time order, cold items removed
    train_users: list[str]
    evals: dict[str, pd.DataFrame]  # valid/test: example_id, user_id, history (all earlier items), label, cold
    cold_items: np.ndarray  # bool per catalog position: held out of training by cold_item_fraction
    popularity: np.ndarray  # training interactions per catalog item

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def texts(self) -> list[str]:
        """The catalog's item texts in catalog order (what the item encoder reads)."""
        return [str(t) for t in self.item_text.to_numpy()]


def held_out_items(num_items: int, fraction: float, seed: int) -> np.ndarray:
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.cold_item_fraction must be in [0, 1), got {fraction}")
    cold = np.zeros(num_items, dtype=bool)
    cold[np.random.default_rng(seed).permutation(num_items)[: int(round(fraction * num_items))]] = True
    return cold


def build_sequence_data(inter: pd.DataFrame, items: pd.DataFrame, cfg: RunConfig) -> SequenceData:
    d = cfg.data
    item_text = catalog_texts(items, cfg)
    position = pd.Series(np.arange(len(item_text)), index=item_text.index)
    inter = chronological_order(inter[inter["item_id"].isin(item_text.index)])
    held = held_out_items(len(item_text), d.cold_item_fraction, cfg.seed)
    train, train_users = [], []
    rows: dict[str, list] = {"valid": [], "test": []}
    counts = np.zeros(len(item_text), dtype=np.int64)
    for user, group in inter.groupby("user_id", sort=False):
        seq = position.reindex(group["item_id"].to_numpy()).to_numpy()
        splits = np.array(split_positions(len(seq), d.eval_items_per_user))
        kept = seq[(splits == "train") & ~held[seq]]
        if len(kept):
            train.append(kept)
            train_users.append(str(user))
            np.add.at(counts, kept, 1)
        for pos in np.flatnonzero(splits != "train"):
            if pos >= 1:
                rows[splits[pos]].append((str(user), seq[:pos].tolist(), int(seq[pos])))
    if not train:
        raise DataError("no training sequences: users need more than 2 x data.eval_items_per_user interactions")
    evals, next_id = {}, 0
    for split in ("valid", "test"):
        df = pd.DataFrame(rows[split], columns=["user_id", "history", "label"])
        df.insert(0, "example_id", np.arange(next_id, next_id + len(df)))
        df["cold"] = counts[df["label"].to_numpy()] == 0 if len(df) else []
        next_id += len(df)
        evals[split] = df
    log.info("sequences: %d training users, %d training interactions; valid=%d test=%d (cold test targets %d); "
             "%d of %d items held out", len(train), int(counts.sum()), len(evals["valid"]), len(evals["test"]),
             int(evals["test"]["cold"].sum()), int(held.sum()), len(item_text))
    return SequenceData(item_text.index.to_numpy(), item_text, train, train_users, evals, held, counts)


def training_windows(train: list[np.ndarray], max_history: int, stride: int | None = None) -> np.ndarray:
    """[windows x (max_history + 1)] item positions, right-aligned, PAD on the left.

    A sequence is cut from its end into windows of max_history + 1 items starting every ``stride`` items
    (default max_history, so every training target appears exactly once); the first item of a window is
    only an input. A shorter stride repeats targets with longer context (RecBole-style augmentation)."""
    stride = stride or max_history
    if stride < 1 or max_history < 1:
        raise ConfigError("data.max_history and model.sequence.window_stride must be >= 1")
    out = []
    for seq in train:
        if len(seq) < 2:
            continue
        end = len(seq)
        while True:
            start = max(0, end - max_history - 1)
            w = np.full(max_history + 1, PAD, dtype=np.int64)
            w[max_history + 1 - (end - start):] = seq[start:end]
            out.append(w)
            if start == 0:
                break
            end -= stride
            if end < 2:
                break
    return np.stack(out) if out else np.zeros((0, max_history + 1), dtype=np.int64)


def eval_histories(frame: pd.DataFrame, max_history: int) -> np.ndarray:
    """[rows x max_history] last items of each eval history, right-aligned, PAD on the left."""
    out = np.full((len(frame), max_history), PAD, dtype=np.int64)
    for i, h in enumerate(frame["history"]):
        h = h[-max_history:]
        if h:
            out[i, max_history - len(h):] = h
    return out
