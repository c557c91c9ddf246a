"""Data stages: read source -> text examples -> tokenizer -> tokenized splits. Loaders live in ``loader``."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd

from translrec_dist.config import RunConfig
from translrec_dist.data.examples import build_examples, split_text_label
from translrec_dist.data.recbole_atomic import read_recbole_dir
from translrec_dist.data.synthetic import generate_synthetic
from translrec_dist.data.tables import read_interactions_dir, read_text_label
from translrec_dist.data.tokenize import load_tokenizer, tokenize_frame, train_wordpiece

log = logging.getLogger(__name__)
datasets.disable_progress_bars()


@dataclass
class TextSplits:
    frames: dict[str, pd.DataFrame]  # train / valid / test example tables
    item_text: pd.Series | None  # item_id -> rendered text (recommendation formats)


def read_source(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) of a recommendation format, ids as strings."""
    d = cfg.data
    if d.format == "synthetic":
        inter, items = generate_synthetic(d.synthetic)
        return inter.astype({"user_id": str, "item_id": str}), items.astype({"item_id": str})
    if d.format == "recbole":
        return read_recbole_dir(d.path)
    return read_interactions_dir(d.path, need_rating=cfg.task == "rating" or d.positive_threshold is not None)


def load_text_splits(cfg: RunConfig) -> TextSplits:
    d = cfg.data
    if d.format == "text_label":
        return TextSplits(split_text_label(read_text_label(d.path), d, cfg.seed), None)
    inter, items = read_source(cfg)
    ex = build_examples(inter, items, d, cfg.task, cfg.seed)
    counts = ", ".join(f"{k}={len(v)}" for k, v in ex.splits.items())
    log.info("examples: %s (from %d interactions, %d items)", counts, len(inter), len(items))
    return TextSplits(ex.splits, ex.item_text)


def build_tokenizer(cfg: RunConfig, texts: TextSplits):
    """Pretrained tokenizer, or a WordPiece vocabulary trained on the training texts (tiny models)."""
    m = cfg.model
    if m.tiny is None or m.init_from:
        return load_tokenizer(m.init_from or m.name_or_path, m.trust_remote_code)
    train = texts.frames["train"]
    corpus = itertools.chain(train["text"], train["text_pair"].dropna(),
                             texts.item_text if texts.item_text is not None else [])
    return train_wordpiece(corpus, m.tiny.vocab_size, cfg.data.max_length)


def tokenize_splits(cfg: RunConfig, texts: TextSplits, tokenizer) -> dict[str, datasets.Dataset]:
    return {name: tokenize_frame(df, tokenizer, cfg.data.max_length) for name, df in texts.frames.items()}


def tokenizer_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / "tokenizer"
