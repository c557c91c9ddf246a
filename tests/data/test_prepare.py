"""translrec prepare (manifest, cache reuse and invalidation) and the per-rank stream over its shards."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from translrec_dist.cli import cmd_synth
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.loader import train_loader, train_steps_per_epoch
from translrec_dist.data.prepare import prepare, read_manifest
from translrec_dist.data.prepared import load_prepared_splits
from translrec_dist.data.stages import build_tokenizer, load_text_splits
from translrec_dist.data.tokenize import batch_encoder


@pytest.fixture
def prepared(tiny_cfg, tmp_path):
    cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}", "data.num_shards=4", "data.streaming=true")
    return cfg, prepare(cfg)


def test_manifest_counts_shards_and_id_maps(prepared):
    cfg, directory = prepared
    m = read_manifest(directory)
    texts = load_text_splits(cfg)
    for name, frame in texts.frames.items():
        assert m["splits"][name]["examples"] == len(frame)
    shards = m["splits"]["train"]["shards"]
    assert len(shards) == 4 and max(s["examples"] for s in shards) - min(s["examples"] for s in shards) <= 1
    rows = [pq.read_table(directory / s["file"]) for s in shards]
    assert [len(r) for r in rows] == [s["examples"] for s in shards]
    assert sum(sum(len(x) for x in r.column("input_ids").to_pylist()) for r in rows) == m["splits"]["train"]["tokens"]
    ids = sorted(i for r in rows for i in r.column("example_id").to_pylist())
    assert ids == sorted(texts.frames["train"]["example_id"].tolist())
    saved = AutoTokenizer.from_pretrained(directory / "tokenizer")
    assert m["tokenizer"]["vocab_size"] == len(saved) <= 300  # model.tiny.vocab_size is an upper bound
    assert len(m["tokenizer"]["hash"]) == 16 and m["config_hash"]
    items = pq.read_table(directory / "ids" / "items.parquet").to_pandas()
    assert items["index"].tolist() == list(range(60)) and items["text"].str.len().min() > 0


def test_cache_reused_and_rebuilt_when_inputs_change(tiny_cfg, tmp_path):
    class Args:
        out, users, items, seed = str(tmp_path / "src"), 40, 30, 0

    cmd_synth(Args)
    base = [f"data.cache_dir={tmp_path / 'cache'}", "data.format=interactions", f"data.path={tmp_path / 'src'}",
            "data.num_shards=2"]
    first = prepare(tiny_cfg(*base))
    created = read_manifest(first)["created"]
    assert prepare(tiny_cfg(*base, "data.streaming=true", "data.shuffle_buffer=7")) == first  # read-time keys
    assert read_manifest(first)["created"] == created
    assert prepare(tiny_cfg(*base, "data.item_text='Title: {title}'")) != first  # template
    assert prepare(tiny_cfg(*base, "model.tiny.vocab_size=200")) != first  # tokenizer
    with open(tmp_path / "src" / "interactions.csv", "a") as f:
        f.write("0,1,5,99999999\n")
    changed = prepare(tiny_cfg(*base))
    assert changed != first and read_manifest(changed)["sources"] != read_manifest(first)["sources"]


def test_batch_encoder_matches_tokenizer_call(tiny_cfg):
    cfg = tiny_cfg()
    texts = load_text_splits(cfg)
    tok = build_tokenizer(cfg, texts)
    df = texts.frames["train"].iloc[:50]
    got = batch_encoder(tok, 24)({"text": df["text"].tolist(), "text_pair": df["text_pair"].tolist()})
    want = tok(df["text"].tolist(), df["text_pair"].tolist(), truncation="longest_first", max_length=24)
    assert got["input_ids"] == want["input_ids"] and got["token_type_ids"] == want["token_type_ids"]
    assert max(map(len, got["input_ids"])) == 24


def rank_batches(train, world, epoch=0, skip=0, micro=8, accum=1):
    return [[b["example_id"].tolist() for b in train_loader(train, PadCollator(0), micro=micro, accum=accum, rank=r,
                                                             world=world, seed=3, epoch=epoch, skip_batches=skip)]
            for r in range(world)]


@pytest.mark.parametrize("shards", [4, 3])  # 3: not a multiple of 2, every rank reads all and keeps half
def test_ranks_disjoint_cover_epoch_and_resume_exactly(tiny_cfg, tmp_path, shards):
    cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}", f"data.num_shards={shards}", "data.streaming=true",
                   "data.shuffle_buffer=50")
    train = load_prepared_splits(cfg, is_main=True).splits["train"]
    spe = train_steps_per_epoch(train, 8, 1, 2)
    per_rank = rank_batches(train, 2)
    assert [len(b) for b in per_rank] == [spe, spe]  # equal steps: no rank runs dry before a collective
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == spe * 16  # disjoint, nothing twice
    left_out = set(range(len(train))) - set(seen)  # train ids are 0..N-1
    assert len(left_out) == len(train) - spe * 16 < 16 + shards  # only the epoch's uneven tail
    assert rank_batches(train, 2, skip=5) == [b[5:] for b in per_rank]  # resume: exactly the remaining batches
    again = rank_batches(train, 2, epoch=1)  # re-seeded per epoch: another order, still disjoint
    assert again[0] != per_rank[0] and not set(sum(again[0], [])) & set(sum(again[1], []))


def test_group_by_length_reduces_padding(tiny_cfg, tmp_path):
    cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}", "data.streaming=true", "data.num_shards=2")
    plain = load_prepared_splits(cfg, is_main=True).splits["train"]
    grouped = load_prepared_splits(tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}", "data.streaming=true",
                                            "data.num_shards=2", "data.group_by_length=true"),
                                   is_main=True).splits["train"]

    def padded(train):
        batches = list(train_loader(train, PadCollator(0), micro=8, accum=1, rank=0, world=1, seed=3, epoch=0))
        ids = sorted(i for b in batches for i in b["example_id"].tolist())
        return sum(b["input_ids"].numel() for b in batches), ids

    (plain_cells, plain_ids), (grouped_cells, grouped_ids) = padded(plain), padded(grouped)
    assert grouped_ids == plain_ids and grouped_cells < plain_cells
    assert rank_batches(grouped, 1, skip=3) == [rank_batches(grouped, 1)[0][3:]]
    json.dumps(read_manifest(grouped.directory))  # the manifest is plain JSON


def test_streamed_checkpoint_refuses_another_world_size(tiny_cfg):
    from translrec_dist.errors import ConfigError
    from translrec_dist.training.resume import check_resume_compatible, trainer_state

    cfg = tiny_cfg("data.streaming=true", "train.micro_batch_size=4")
    state = trainer_state(cfg, 7, 2, 40, None, 20)
    # the data position, plus the global sample counter (7 steps x 4 per micro-batch x 2 processes)
    assert state["data"] == {"epoch": 0, "batches_into_epoch": 7, "steps_per_epoch": 20, "streaming": True,
                             "global_batch": 8, "samples_consumed": 56, "samples_into_epoch": 56}
    check_resume_compatible(cfg, state, 2, "ckpt", None, 20)
    with pytest.raises(ConfigError, match="resume it with 2 processes"):
        check_resume_compatible(tiny_cfg("data.streaming=true", "train.micro_batch_size=8"), state, 1, "ckpt", None, 40)
