"""Retrieval examples: (user history text, next item) pairs from the same leave-one-out split as ``examples``.

One row per target interaction: ``text`` is the history before it (newest first, ``data.history_length``
items), ``label`` the target's position in the catalog, ``history`` every earlier item of the user (the
items masked out of the ranking in the ``_masked`` metrics), ``cold`` whether the target never occurs in
a training interaction. Item texts are tokenized once (the catalog) and looked up by the collator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pandas as pd
import torch

from translrec_dist.data.collate import PadCollator
from translrec_dist.data.examples import SPLITS, chronological_order, render_history, render_item_texts, split_positions
from translrec_dist.data.integrity import check_eval_splits, drop_repeated_interactions
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.errors import DataError

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)


@dataclass
class RetrievalData:
    item_ids: np.ndarray  # catalog position -> item id
    item_text: pd.Series  # item id -> text, in catalog order
    splits: dict[str, pd.DataFrame]  # example_id, text, label (target position), user_id, history, cold
    popularity: np.ndarray  # training interactions per catalog item (the popularity baseline)


def catalog_texts(items: pd.DataFrame, cfg: RunConfig) -> pd.Series:
    """Items with a non-empty rendered text, in file order: the ranking catalog."""
    text = render_item_texts(items, cfg.data)
    empty = text == ""
    if empty.any():
        log.warning("%d items have empty text and are left out of the catalog (e.g. item %s)",
                    int(empty.sum()), text.index[empty][0])
    if (~empty).sum() == 0:
        raise DataError("every item text is empty; check data.item_text")
    return text[~empty]


def build_retrieval_data(inter: pd.DataFrame, items: pd.DataFrame, cfg: RunConfig) -> RetrievalData:
    d = cfg.data
    item_text = catalog_texts(items, cfg)
    position = pd.Series(np.arange(len(item_text)), index=item_text.index)
    inter, _ = drop_repeated_interactions(inter[inter["item_id"].isin(item_text.index)])
    inter = chronological_order(inter)
    rows: dict[str, list] = {s: [] for s in SPLITS}
    train_counts = np.zeros(len(item_text), dtype=np.int64)
    for user, group in inter.groupby("user_id", sort=False):
        seq = position.reindex(group["item_id"].to_numpy()).to_numpy()
        splits = split_positions(len(seq), d.eval_items_per_user)
        for pos, split in enumerate(splits):
            if split == "train":
                train_counts[seq[pos]] += 1
            if pos < max(d.min_history, 1):
                continue
            recent = item_text.index[seq[max(0, pos - d.history_length):pos][::-1]]
            rows[split].append((render_history(recent, item_text, d), int(seq[pos]), str(user), seq[:pos].tolist()))
    out, next_id = {}, 0
    for split in SPLITS:
        df = pd.DataFrame(rows[split], columns=["text", "label", "user_id", "history"])
        df.insert(0, "example_id", np.arange(next_id, next_id + len(df)))
        df["cold"] = train_counts[df["label"].to_numpy()] == 0 if len(df) else []
        next_id += len(df)
        out[split] = df
    if out["train"].empty:
        raise DataError("no retrieval training examples: users need more than 2 x data.eval_items_per_user + 1 "
                        "interactions")
    check_eval_splits(out, cfg, inter)
    log.info("retrieval examples: %s; catalog %d items, %d cold test targets",
             ", ".join(f"{k}={len(v)}" for k, v in out.items()), len(item_text), int(out["test"]["cold"].sum()))
    return RetrievalData(item_text.index.to_numpy(), item_text, out, train_counts)


def tokenize_catalog(item_text: pd.Series, tokenizer, max_length: int) -> datasets.Dataset:
    frame = pd.DataFrame({"example_id": np.arange(len(item_text)), "text": item_text.to_numpy(),
                          "label": np.arange(len(item_text))})
    return tokenize_frame(frame, tokenizer, max_length)


def tokenize_users(frame: pd.DataFrame, tokenizer, max_length: int) -> datasets.Dataset:
    """History texts; truncation drops the oldest items (the text is newest first)."""
    return tokenize_frame(frame[["example_id", "text", "label"]], tokenizer, max_length)


class RetrievalCollator:
    """Pads user rows; with a catalog, adds the target items' tokens as ``item_*`` and ``item_index``."""

    def __init__(self, pad_token_id: int, catalog: datasets.Dataset | None = None):
        self.pad = PadCollator(pad_token_id)
        self.catalog = catalog.to_list() if catalog is not None else None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return self.add_items(self.pad(rows))

    def arrow(self, table) -> dict[str, torch.Tensor]:
        """The same batch from an Arrow table of user rows (streamed shards)."""
        return self.add_items(self.pad.arrow(table))

    def add_items(self, out: dict) -> dict[str, torch.Tensor]:
        out["item_index"] = out["labels"].long()
        rows = out["item_index"].tolist()
        if self.catalog is not None:
            items = self.pad([self.catalog[i] for i in rows])
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if key in items:
                    out[f"item_{key}"] = items[key]
        return out
