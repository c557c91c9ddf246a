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

from translrec_dist.data import readers
from translrec_dist.data.examples import build_examples, split_text_label
from translrec_dist.data.filtering import kcore
from translrec_dist.data.integrity import check_eval_splits, check_labels, drop_repeated_interactions
from translrec_dist.data.tables import read_text_label
from translrec_dist.data.tokenize import ArrowEncoder, load_tokenizer, tokenize_dataset, tokenize_frame, train_wordpiece
from translrec_dist.models.source import model_source
from translrec_dist.run_dir import RunDir

if TYPE_CHECKING:
    from translrec_dist.config import RunConfig

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


@dataclass
class PreparedSplits:
    """Training data read from ``translrec prepare``'s output: train streamed per rank, eval map-style."""

    directory: Path
    tokenizer: object
    splits: dict  # train: ShardedTrain, valid/test (and any other split the task prepared): datasets.Dataset
    label_mean: float | None


def load_prepared_splits(cfg: RunConfig, is_main: bool, texts: Callable[[], TextSplits] | None = None,
                         key_inputs: dict | None = None) -> PreparedSplits:
    """The main process prepares (or finds the cache); the others wait for the manifest on the file system,
    not in a collective, since a first prepare can take longer than any collective timeout. ``texts``: the
    task's example texts (default: the cross-encoder pairs of ``load_text_splits``); ``key_inputs``: the task's
    settings outside ``data`` that change the shards (``Task.prepare_inputs``)."""
    import pyarrow.parquet as pq

    from translrec_dist.data.prepare import (
        cache_key,
        cache_root,
        check_prepared,
        prepare,
        read_manifest,
        wait_for_manifest,
    )
    from translrec_dist.data.streaming import ShardedTrain

    if is_main:
        directory = prepare(cfg, texts=texts, key_inputs=key_inputs)  # checks a cache it reuses
        manifest = read_manifest(directory)
    else:
        directory = cache_root(cfg) / cache_key(cfg, key_inputs)[0]
        wait_for_manifest(directory)
        manifest = check_prepared(cfg, directory, key_inputs)
    shards = manifest["splits"]["train"]["shards"]
    d = cfg.data
    tokenizer = load_tokenizer(str(directory / manifest["tokenizer"]["dir"]))
    raw = not manifest.get("pretokenize", True)  # text shards: tokenized here (eval) and in the loader (train)
    train = ShardedTrain(directory, [s["file"] for s in shards], [s["examples"] for s in shards], d.shuffle_buffer,
                         d.group_by_length, RunDir(cfg.output_dir).example_ids if d.record_example_ids else None,
                         ArrowEncoder(tokenizer, d.max_length) if raw else None)
    splits: dict = {"train": train}
    for name in (n for n in manifest["splits"] if n != "train"):
        files = [str(directory / s["file"]) for s in manifest["splits"][name]["shards"]]
        splits[name] = datasets.Dataset(pq.read_table(files))
        if raw:
            splits[name] = tokenize_dataset(splits[name], tokenizer, d.max_length)
    return PreparedSplits(directory, tokenizer, splits, manifest["label_mean"])
