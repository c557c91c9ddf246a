"""Training data read from ``translrec prepare``'s output (``data.streaming=true``): train streamed per rank,
eval splits map-style. Sits above both ``prepare`` (which writes the shards) and ``stages`` (what prepare
tokenizes), so neither imports the other back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

from translrec_dist.data.tokenize import ArrowEncoder, load_tokenizer, tokenize_dataset
from translrec_dist.run_dir import RunDir

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.data.stages import TextSplits


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
