"""task=sequential's prepared data: the training windows as shards, streamed per rank like every task's.

``translrec prepare`` writes (besides the manifest and tokenizer, see ``data.prepare``)::

    train/part-*.parquet    example_id, window: the windows of ``sequences.training_windows`` (catalog
                            positions, right-aligned, PAD=-1); example_id = the window's row in the in-memory
                            path, so both paths name a window alike
    catalog/part-0.parquet  example_id (= catalog position), item_id, text, popularity, held_out
    valid/..., test/...     example_id, user_id, history, label, cold: the eval rows of ``SequenceData.evals``

A streamed run rebuilds its ``SequenceData`` (catalog order, texts, popularity, cold flags, eval rows) from
these files and reads no raw data: the catalog positions in the windows are the ones prepare computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from translrec_dist.data.prepared import load_prepared_splits
from translrec_dist.data.sequences import SequenceData, training_windows
from translrec_dist.data.stages import TextSplits

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.data.streaming import ShardedTrain

EVAL_COLUMNS = ["example_id", "user_id", "history", "label", "cold"]


def window_splits(data: SequenceData, max_history: int, stride: int | None, tokenizer: Callable[[], object]
                  ) -> TextSplits:
    """What prepare writes for ``data``: rows as they are (no text to tokenize), with the task's tokenizer."""
    windows = training_windows(data.train, max_history, stride)
    train = pd.DataFrame({"example_id": np.arange(len(windows)), "window": windows.tolist()})
    catalog = pd.DataFrame({"example_id": np.arange(data.num_items), "item_id": [str(i) for i in data.item_ids],
                            "text": data.texts, "popularity": data.popularity,
                            "held_out": data.cold_items})
    evals = {split: frame[EVAL_COLUMNS].assign(cold=frame["cold"].astype(bool)) for split, frame in data.evals.items()}
    return TextSplits({"train": train, **evals, "catalog": catalog}, data.item_text, tokenize=False,
                      tokenizer=tokenizer)


def sequence_data(splits: dict) -> SequenceData:
    """The ``SequenceData`` of a prepared directory's catalog and eval splits. ``train`` stays empty: the
    windows are streamed from the shards."""
    catalog = splits["catalog"].to_pandas()  # one shard, written in catalog order
    item_ids = catalog["item_id"].to_numpy(dtype=object)
    item_text = pd.Series(catalog["text"].to_numpy(dtype=object), index=item_ids)
    evals = {}
    for split in ("valid", "test"):
        frame = splits[split].to_pandas()[EVAL_COLUMNS]
        frame["history"] = [[int(i) for i in h] for h in frame["history"]]
        evals[split] = frame
    # copies: Arrow's arrays are read-only, and torch warns on tensors made from them
    return SequenceData(item_ids, item_text, [], [], evals, catalog["held_out"].to_numpy(bool, copy=True),
                        catalog["popularity"].to_numpy(np.int64, copy=True))


def load_prepared_windows(cfg: RunConfig, is_main: bool, texts: Callable[[], TextSplits], key_inputs: dict
                          ) -> tuple[SequenceData, ShardedTrain, object]:
    """(catalog and eval data, the streamed windows, tokenizer) of ``cfg``'s prepared directory (prepared on the
    main process first if missing)."""
    prepared = load_prepared_splits(cfg, is_main, texts, key_inputs)  # checks the config hash and the shards
    # Windows all have one length: length grouping has nothing to sort (the map-style path ignores it too).
    return sequence_data(prepared.splits), replace(prepared.splits["train"], group_by_length=False), prepared.tokenizer
