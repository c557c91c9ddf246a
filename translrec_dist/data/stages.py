"""Data stages: read source -> text examples -> tokenizer -> tokenized splits. Loaders live in ``loader``."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import pandas as pd

from translrec_dist.data.examples import build_examples, split_text_label
from translrec_dist.data.filtering import kcore
from translrec_dist.data.integrity import check_eval_splits, check_labels, drop_repeated_interactions
from translrec_dist.data.readers import source as readers
from translrec_dist.data.tables import read_text_label
from translrec_dist.data.tokenize import load_tokenizer, tokenize_frame, train_wordpiece
from translrec_dist.models.source import model_source

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)
datasets.disable_progress_bars()


@dataclass
class TextSplits:
    frames: dict[str, pd.DataFrame]  # train / valid / test example tables
    item_text: pd.Series | None  # item_id -> rendered text (recommendation formats)
    files: list[Path] = field(default_factory=list)  # source files read
    report: dict = field(default_factory=dict)  # bad rows left out, filtering counts
    # False: the frames already hold the shards' rows (task=sequential's item windows); prepare writes them as
    # they are, with the tokenizer ``tokenizer`` builds (default: ``build_tokenizer`` on these texts)
    tokenize: bool = True
    tokenizer: Callable[[], object] | None = None


def read_source_full(cfg: RunConfig, need_rating: bool = False) -> readers.Source:
    # model.sequence.item_repr=id (the ID-only SASRec baseline) reads no item text: no items file needed
    return readers.read_source(cfg.data, need_rating=need_rating or cfg.data.positive_threshold is not None,
                               need_text=cfg.model.sequence.item_repr != "id")


def read_source(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) of a recommendation format, ids as strings."""
    src = read_source_full(cfg)
    return src.interactions, src.items


def load_text_splits(cfg: RunConfig, labels: str = "click") -> TextSplits:
    """(text, text_pair, label) examples of the cross-encoder tasks; ``labels``: "click" (0/1, sampled negatives)
    or "rating" (the rating itself)."""
    d = cfg.data
    if d.format == "text_label":
        frames = split_text_label(read_text_label(d.path, d.max_bad_fraction), d, cfg.seed)
        check_eval_splits(frames, cfg)
        check_labels(frames, cfg, labels)
        return TextSplits(frames, None, [Path(d.path)])
    src = read_source_full(cfg, need_rating=labels == "rating")
    deduped, repeated = drop_repeated_interactions(src.interactions)
    inter = kcore(deduped, d.kcore)
    ex = build_examples(inter, src.items, d, labels, cfg.seed)
    check_eval_splits(ex.splits, cfg, inter)
    check_labels(ex.splits, cfg, labels)
    counts = ", ".join(f"{k}={len(v)}" for k, v in ex.splits.items())
    log.info("examples: %s (from %d interactions, %d items)", counts, len(inter), len(src.items))
    report = {**src.report, "interactions_read": len(src.interactions), "repeated_interactions": repeated,
              "interactions_after_kcore": len(inter),
              "items": len(src.items), "left_out_by_examples": ex.dropped}
    return TextSplits(ex.splits, ex.item_text, src.files, report)


def build_tokenizer(cfg: RunConfig, texts: TextSplits):
    """Pretrained tokenizer, or a WordPiece vocabulary trained on the training texts (tiny models)."""
    m = cfg.model
    kind, path = model_source(cfg)
    if kind != "tiny":
        return load_tokenizer(path, m.trust_remote_code)
    train = texts.frames["train"]
    corpus = itertools.chain(train["text"], train["text_pair"].dropna(),
                             texts.item_text if texts.item_text is not None else [])
    return train_wordpiece(corpus, m.tiny.vocab_size, cfg.data.max_length)


def tokenize_splits(cfg: RunConfig, texts: TextSplits, tokenizer) -> dict[str, datasets.Dataset]:
    return {name: tokenize_frame(df, tokenizer, cfg.data.max_length) for name, df in texts.frames.items()}
