"""data.pretokenize=false: prepare writes text shards and the streaming loader tokenizes them on the fly,
giving the same batches as the pretokenized shards (resume included, in-process or in DataLoader workers)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import TINY, run_cli
from translrec_dist.config.loader import load_config
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.prepare import read_manifest
from translrec_dist.data.prepared import load_prepared_splits
from translrec_dist.data.streaming import stream_loader
from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir

# max_length=24 truncates many synthetic examples, so the on-the-fly truncation is exercised too.
COMMON = ["data.streaming=true", "data.num_shards=4", "data.shuffle_buffer=50", "data.max_length=24"]


@pytest.fixture
def both(tiny_cfg, tmp_path):
    """(pretokenized, raw) prepared splits of the same data, for plain and length-grouped streaming."""
    def load(*extra):
        cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}", *COMMON, *extra)
        return load_prepared_splits(cfg, is_main=True)

    return load


def batches(train, *, rank=0, world=2, epoch=1, skip=0, workers=0, micro=8, accum=2):
    return list(stream_loader(train, PadCollator(0), micro=micro, accum=accum, rank=rank, world=world, seed=5,
                              epoch=epoch, skip_batches=skip, num_workers=workers))


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys() >= {"input_ids", "token_type_ids", "attention_mask", "labels", "example_id"}
        for key in w:
            assert torch.equal(g[key], w[key]), key


def test_prepare_writes_text_shards_without_token_ids(both):
    tok, raw = both(), both("data.pretokenize=false")
    assert raw.directory != tok.directory  # another cache key
    m, mt = read_manifest(raw.directory), read_manifest(tok.directory)
    assert m["pretokenize"] is False and mt["pretokenize"] is True
    for name in ("train", "valid", "test"):
        assert m["splits"][name]["examples"] == mt["splits"][name]["examples"] and m["splits"][name]["tokens"] is None
        for shard, tshard in zip(m["splits"][name]["shards"], mt["splits"][name]["shards"], strict=True):
            table, ttable = pq.read_table(raw.directory / shard["file"]), pq.read_table(tok.directory / tshard["file"])
            assert set(table.column_names) == {"example_id", "label", "text", "text_pair"}
            assert table.column("example_id").equals(ttable.column("example_id"))  # same rows, same order
            assert all(isinstance(t, str) and t for t in table.column("text").to_pylist())
    # eval splits are tokenized at load time with the same tokenizer
    for name in ("valid", "test"):
        assert raw.splits[name]["input_ids"] == tok.splits[name]["input_ids"]
        assert raw.splits[name]["example_id"] == tok.splits[name]["example_id"]


@pytest.mark.parametrize("grouped", [False, True])
def test_raw_stream_batches_equal_pretokenized(both, grouped):
    extra = ["data.group_by_length=true"] if grouped else []
    tok, raw = both(*extra).splits["train"], both("data.pretokenize=false", *extra).splits["train"]
    assert raw.encode is not None and tok.encode is None
    for rank in (0, 1):
        want = batches(tok, rank=rank)
        assert_same(batches(raw, rank=rank), want)
        assert max(b["input_ids"].shape[1] for b in want) == 24  # truncation happened
    if not grouped:  # tokenized in 2 DataLoader workers: same batches, same order
        assert_same(batches(raw, rank=1, workers=2), batches(tok, rank=1))


@pytest.mark.parametrize("workers", [0, 2])
def test_raw_stream_resume_skips_exactly(both, workers):
    raw = both("data.pretokenize=false", "data.group_by_length=true").splits["train"]
    full = batches(raw, world=1, epoch=0, workers=workers, micro=4, accum=1)
    assert len(full) > 70  # more than one length-grouping window of 64 batches
    for skip in (3, 66):
        assert_same(batches(raw, world=1, epoch=0, skip=skip, workers=workers, micro=4, accum=1), full[skip:])


def test_pretokenize_false_needs_streaming():
    with pytest.raises(ConfigError, match="data.pretokenize.*data.streaming=true"):
        load_config(TINY, ["data.pretokenize=false"])


@pytest.mark.slow
def test_train_end_to_end_from_raw_text(tmp_path):
    from tests.conftest import FAST

    out = tmp_path / "run"
    run_cli(["train", str(TINY), *FAST, f"output_dir={out}", f"data.cache_dir={tmp_path / 'cache'}",
             "data.streaming=true", "data.pretokenize=false", "data.num_workers=1", "data.num_shards=2"])
    result = json.loads(RunDir(out).eval.read_text())
    (prepared,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    manifest = read_manifest(prepared)
    assert manifest["pretokenize"] is False
    assert result["num_examples"] == manifest["splits"]["test"]["examples"] and 0 <= result["auc"] <= 1
    assert result["valid"]["num_examples"] == manifest["splits"]["valid"]["examples"]
