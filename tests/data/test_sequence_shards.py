"""task=sequential's prepared windows: prepare writes the in-memory path's windows, catalog and eval rows, the
streamed run reads them back unchanged, and a cache that is half deleted or belongs to another config stops
with the path and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import FAST, TINY
from tests.tasks.test_sequential_task import SEQUENTIAL
from translrec_dist.cli import main
from translrec_dist.data.loader import train_loader
from translrec_dist.data.prepare import prepare
from translrec_dist.data.sequence_shards import load_prepared_windows
from translrec_dist.data.sequences import build_sequence_data, training_windows
from translrec_dist.data.stages import read_source
from translrec_dist.errors import DataError
from translrec_dist.tasks.registry import get_task
from translrec_dist.tasks.sequential import WindowCollator

STREAMED = [*SEQUENTIAL, "data.streaming=true", "data.num_shards=4"]


def streamed_windows(cfg, is_main: bool = True):
    task = get_task(cfg.task)
    return load_prepared_windows(cfg, is_main, lambda: task.prepare_texts(cfg), task.prepare_inputs(cfg))


def test_prepared_windows_catalog_and_eval_rows_equal_the_in_memory_path(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*STREAMED, f"data.cache_dir={tmp_path / 'cache'}")
    data, train, _ = streamed_windows(cfg)
    raw = build_sequence_data(*read_source(cfg), cfg)

    # The catalog mapping (position -> item id, text), popularity and cold flags are the in-memory ones.
    np.testing.assert_array_equal(data.item_ids, raw.item_ids)
    pd.testing.assert_series_equal(data.item_text, raw.item_text)
    np.testing.assert_array_equal(data.popularity, raw.popularity)
    np.testing.assert_array_equal(data.cold_items, raw.cold_items)
    assert raw.cold_items.any() and data.popularity.sum() > 0
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(data.evals[split], raw.evals[split])

    # The shards hold exactly the in-memory windows, each under the id it has there.
    windows = training_windows(raw.train, cfg.data.max_history, cfg.model.sequence.window_stride)
    rows = pq.read_table([str(train.directory / f) for f in train.shard_files]).to_pandas()
    assert len(train.shard_files) == 4 and len(rows) == len(windows) == len(train)
    rows = rows.sort_values("example_id")
    assert rows["example_id"].tolist() == list(range(len(windows)))
    np.testing.assert_array_equal(np.stack(rows["window"].to_numpy()), windows)
    # and the streamed batches collate to those windows
    batches = list(train_loader(train, WindowCollator(), micro=8, accum=1, rank=1, world=2, seed=3, epoch=0))
    assert batches
    for b in batches:
        assert torch.equal(b["windows"], torch.from_numpy(windows[b["example_id"].numpy()]))

    # Task settings outside data.* that change the windows are part of the cache key.
    short = [*STREAMED, f"data.cache_dir={tmp_path / 'cache'}", "data.max_history=3"]
    _, plain, _ = streamed_windows(tiny_cfg(*short))
    _, strided, _ = streamed_windows(tiny_cfg(*short, "model.sequence.window_stride=1"))
    assert strided.directory != plain.directory
    assert len(strided) == len(training_windows(raw.train, 3, 1)) > len(plain) == len(training_windows(raw.train, 3))

    # An ID-only model (no encoder, no tokenizer to load) streams the same windows.
    ids_data, ids_train, _ = streamed_windows(tiny_cfg(*STREAMED, f"data.cache_dir={tmp_path / 'cache'}",
                                                       "model.tiny=null", "model.sequence.item_repr=id"))
    assert ids_train.directory != train.directory and len(ids_train) == len(train)
    np.testing.assert_array_equal(ids_data.item_ids, raw.item_ids)

def test_missing_or_foreign_prepared_shards_stop_with_the_path_and_the_fix(tiny_cfg, tmp_path, capsys):
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    cfg = tiny_cfg(*STREAMED, cache)
    _, train, _ = streamed_windows(cfg)
    args = ["prepare", str(TINY), *FAST, *STREAMED, cache, f"output_dir={tmp_path / 'run'}"]

    # another task's prepared data copied over this config's key
    other = prepare(tiny_cfg(cache, "data.num_shards=4"))
    manifest = train.directory / "manifest.json"
    ours = manifest.read_text()
    manifest.write_text((other / "manifest.json").read_text())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "prepared for task=ctr" in err and str(manifest) in err and "translrec prepare CONFIG --force" in err
    assert "Traceback" not in err
    manifest.write_text(ours)

    shard = train.directory / train.shard_files[2]
    shard.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{shard}: prepared shard missing" in err and "translrec prepare CONFIG --force" in err
    with pytest.raises(DataError, match="prepared shard missing"):  # a rank that waits for the main process too
        streamed_windows(cfg, is_main=False)

    assert main([*args, "--force"]) == 0 and shard.is_file()  # the fix the message gives works
    assert len(streamed_windows(cfg)[1]) == len(train)
