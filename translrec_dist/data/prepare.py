"""``translrec prepare``: source -> examples -> tokenized Parquet shards + manifest, cached by content.

Layout of ``data.cache_dir/<key>/`` (``key`` hashes everything that changes the shards: the data config,
the task and seed, the tokenizer, and the source files' contents)::

    manifest.json             counts, shards, tokenizer name + hash, config hash, source fingerprints, bad rows
    tokenizer/                the tokenizer the shards were made with (trained here for tiny models)
    train/part-00000.parquet  example_id, label, input_ids[, token_type_ids]; rows shuffled once, then cut
    valid/..., test/...       into equal shards (sizes differ by at most one row)
                              data.pretokenize=false: example_id, label, text[, text_pair] instead of token
                              ids (tokenized on the fly by the streaming loader; no token counts)
    ids/users.parquet         user_id -> index; ids/items.parquet: item_id -> index, text

A task whose examples are not texts (``TextSplits.tokenize=False``: task=sequential's windows, see
``data.sequence_shards``) has its rows written as they are, with its own tokenizer. The key also hashes the task's
settings outside ``data`` that change the shards (``Task.prepare_inputs``); a manifest of another config or a
missing shard stops the run with the fix (``check_prepared``).

A build goes to ``<key>.tmp-PID`` and is renamed when complete, so a crash never leaves a half cache
that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pandas as pd
import pyarrow.compute as pc
from tqdm.auto import tqdm

from translrec_dist import safe_io
from translrec_dist.errors import DataError
from translrec_dist.models.source import model_source
from translrec_dist.run_dir import RunDir

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.data.stages import TextSplits

log = logging.getLogger(__name__)
PREPARE_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"  # inside a prepared directory (named in the manifest)
# Data settings that only change how prepared shards are read, not what they hold.
READ_TIME_KEYS = {"streaming", "shuffle_buffer", "group_by_length", "num_workers", "cache_dir", "num_proc"}
# How long the other ranks wait for the main process's manifest: a first prepare of a large corpus takes long,
# but a data.cache_dir that is not shared between nodes must not make them wait for ever.
MANIFEST_WAIT_S = 4 * 3600


def cache_root(cfg: RunConfig) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else RunDir(cfg.output_dir).prepared


def source_files(cfg: RunConfig) -> list[Path]:
    d = cfg.data
    if d.format == "synthetic":
        return []
    from translrec_dist.data.readers.source import source_path

    path = source_path(d)
    if path.is_dir():
        return sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    files = [path] + ([path.with_name("meta_" + path.name)] if d.format == "amazon" else [])
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: file not found (data.path={d.path})")
    return files


def fingerprint(path: Path, memo: dict) -> dict:
    """blake2b of the contents; remembered by (size, mtime) so a large corpus is hashed once."""
    safe_io.check_regular(path, "source file")  # a link to /dev/zero or a FIFO would hash for ever
    st = path.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    key = str(path.resolve())
    if memo.get(key, {}).get("stamp") != stamp:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        memo[key] = {"stamp": stamp, "blake2b": h.hexdigest()}
    return {"path": str(path), "bytes": st.st_size, "blake2b": memo[key]["blake2b"]}


def tokenizer_spec(cfg: RunConfig) -> dict:
    m = cfg.model
    kind, name = model_source(cfg)
    if kind == "tiny" or name is None:  # None: a model that reads no text (sequential item_repr=id)
        return {"name": "wordpiece trained on the data", "vocab_size": m.tiny.vocab_size if m.tiny else None}
    from translrec_dist.data.tokenize import load_tokenizer

    return {"name": name, "hash": tokenizer_hash(load_tokenizer(name, m.trust_remote_code))}


def tokenizer_hash(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def config_inputs(cfg: RunConfig, key_inputs: dict | None = None) -> tuple[str, dict]:
    """(hash, config) of the settings that change what prepare writes: the data config (less its read-time keys),
    task, seed, and the task's own settings outside ``data`` (``key_inputs``, e.g. sequential's window stride)."""
    data = {k: v for k, v in cfg.data.model_dump().items() if k not in READ_TIME_KEYS}
    config = {"version": PREPARE_VERSION, "task": cfg.task, "seed": cfg.seed, "data": data,
              **({"task_inputs": key_inputs} if key_inputs else {})}  # absent when empty: older keys stay valid
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16], config


def cache_key(cfg: RunConfig, key_inputs: dict | None = None) -> tuple[str, dict]:
    """The key of the prepared data for ``cfg`` and the inputs it hashes (recorded in the manifest)."""
    config_hash, config = config_inputs(cfg, key_inputs)
    root = cache_root(cfg)
    memo_path = root / "fingerprints.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    sources = [fingerprint(f, memo) for f in source_files(cfg)]
    root.mkdir(parents=True, exist_ok=True)
    safe_io.write_json(memo_path, memo, root)
    inputs = {"config_hash": config_hash, "config": config, "tokenizer": tokenizer_spec(cfg), "sources": sources}
    key = hashlib.sha256(json.dumps([config_hash, inputs["tokenizer"], sources], sort_keys=True).encode())
    return key.hexdigest()[:16], inputs


def prepare(cfg: RunConfig, force: bool = False, texts: Callable[[], TextSplits] | None = None,
            key_inputs: dict | None = None) -> Path:
    """Build (or reuse) the prepared data for ``cfg``; returns its directory. ``texts`` gives the task's example
    texts (frames with example_id, text[, text_pair], label; any split name); default ``load_text_splits``.
    ``key_inputs``: the task's settings outside ``data`` that change the shards (``Task.prepare_inputs``)."""
    key, inputs = cache_key(cfg, key_inputs)
    out = cache_root(cfg) / key
    if (out / MANIFEST).is_file() and not force:
        check_prepared(cfg, out, key_inputs)  # a copied or half-deleted cache is not "up to date"
        log.info("prepared data is up to date: %s (same config, tokenizer and source files)", out)
        return out
    tmp = out.with_name(f"{key}.tmp-{os.getpid()}")
    safe_io.check_inside(out, cache_root(cfg))  # a link planted at the key's folder is refused, never followed
    shutil.rmtree(tmp, ignore_errors=True)
    safe_io.make_dirs(tmp, cache_root(cfg))
    try:
        manifest = build(cfg, tmp, inputs, texts)
        manifest["key"] = key
        safe_io.write_json(tmp / MANIFEST, manifest, tmp, indent=2)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("prepared %s", out)
    return out


def build(cfg: RunConfig, out: Path, inputs: dict, make_texts: Callable[[], TextSplits] | None = None) -> dict:
    from translrec_dist.data.stages import build_tokenizer, load_text_splits
    from translrec_dist.data.tokenize import save_tokenizer, text_columns, tokenize_dataset

    d, timings = cfg.data, {}
    start = time.perf_counter()
    texts = make_texts() if make_texts is not None else load_text_splits(cfg)
    timings["read_and_examples_s"] = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = texts.tokenizer() if texts.tokenizer is not None else build_tokenizer(cfg, texts)
    save_tokenizer(tokenizer, out / TOKENIZER_DIR)
    timings["tokenizer_s"] = time.perf_counter() - start
    splits = {}
    start = time.perf_counter()
    for name, df in texts.frames.items():
        if name == "train":  # shuffled once so every shard is a random sample, not a block of users
            df = df.sample(frac=1.0, random_state=cfg.seed).reset_index(drop=True)
        if not texts.tokenize:  # rows already in their training form: written as they are
            splits[name] = write_shards(datasets.Dataset.from_pandas(df, preserve_index=False), out / name,
                                        d.num_shards if name == "train" else 1)
            continue
        ds = text_columns(df)
        if d.pretokenize:
            log.info("tokenizing %s: %d examples", name, len(df))
            datasets.enable_progress_bars()  # the tokenize bar is prepare's progress display
            try:
                ds = tokenize_dataset(ds, tokenizer, d.max_length, num_proc=d.num_proc)
            finally:
                datasets.disable_progress_bars()
        splits[name] = write_shards(ds, out / name, d.num_shards if name == "train" else 1)
    timings["tokenize_and_write_s" if d.pretokenize and texts.tokenize else "write_s"] = time.perf_counter() - start
    write_id_maps(texts, out / "ids")
    frames = texts.frames
    return {
        "version": PREPARE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": cfg.task, "format": d.format, "pretokenize": d.pretokenize or not texts.tokenize, **inputs,
        "tokenizer": {**inputs["tokenizer"], "hash": tokenizer_hash(tokenizer), "dir": TOKENIZER_DIR,
                      "vocab_size": len(tokenizer)},
        "splits": splits, "report": texts.report,
        # the rating head starts there
        "label_mean": float(frames["train"]["label"].mean()) if "label" in frames["train"] else None,
        "ids": {"users": "ids/users.parquet", "items": "ids/items.parquet"} if texts.item_text is not None else None,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def write_shards(ds: datasets.Dataset, directory: Path, num_shards: int, progress: bool = True) -> dict:
    directory.mkdir(parents=True)
    num_shards = max(1, min(num_shards, len(ds)))
    shards = []
    for i in tqdm(range(num_shards), desc=f"write {directory.name}", disable=not progress or num_shards < 4,
                  leave=False):
        part = ds.shard(num_shards=num_shards, index=i, contiguous=True)
        path = directory / f"part-{i:05d}.parquet"
        part.to_parquet(str(path))
        tokens = None  # unknown for raw-text shards
        if "input_ids" in part.column_names:
            tokens = int(pc.sum(pc.list_value_length(part.data.column("input_ids"))).as_py() or 0)
        shards.append({"file": f"{directory.name}/{path.name}", "examples": len(part), "tokens": tokens})
    counted = [s["tokens"] for s in shards if s["tokens"] is not None]
    return {"examples": len(ds), "tokens": sum(counted) if len(counted) == len(shards) else None, "shards": shards}


def write_id_maps(texts, directory: Path) -> None:
    """Dense indices for users and items, saved beside the shards (embedding tables, serving lookups)."""
    if texts.item_text is None:
        return
    directory.mkdir(parents=True)
    users = pd.unique(pd.concat([f["user_id"] for f in texts.frames.values() if "user_id" in f]))
    pd.DataFrame({"user_id": users, "index": np.arange(len(users))}).to_parquet(directory / "users.parquet")
    items = texts.item_text
    pd.DataFrame({"item_id": items.index, "index": np.arange(len(items)), "text": items.to_numpy()}).to_parquet(
        directory / "items.parquet")


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def check_prepared(cfg: RunConfig, directory: Path, key_inputs: dict | None = None) -> dict:
    """The manifest of ``directory`` once it is known to hold ``cfg``'s data with every shard present: a copied,
    edited or half-deleted cache fails here with the fix, not as a stream error in the middle of an epoch."""
    manifest = read_manifest(directory)
    fix = f"rebuild it with `translrec prepare CONFIG --force` (same config), or delete {directory}"
    config_hash, _ = config_inputs(cfg, key_inputs)
    if manifest.get("config_hash") != config_hash:
        made = manifest.get("config", {})
        raise DataError(f"{directory / MANIFEST}: prepared for task={made.get('task', '?')} with another config "
                        f"(config hash {manifest.get('config_hash')}, this run's task={cfg.task} needs "
                        f"{config_hash}); {fix}")
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            if not (directory / shard["file"]).is_file():
                raise DataError(f"{directory / shard['file']}: prepared shard missing (listed in "
                                f"{directory / MANIFEST}); {fix}")
    return manifest


def wait_for_manifest(directory: Path, timeout_s: float = MANIFEST_WAIT_S, max_poll_s: float = 10.0) -> None:
    """Non-main ranks: wait until the main process has written ``directory/manifest.json``.

    A file-system wait, not a collective (a first prepare can outlast any collective timeout); the poll backs
    off to ``max_poll_s`` so many ranks do not hammer a shared file system's metadata server."""
    path = directory / MANIFEST
    main = f"the main process (rank 0, at MASTER_ADDR={os.environ.get('MASTER_ADDR', 'this host')})"
    start = last_log = time.monotonic()
    poll = 0.2
    log.info("waiting for %s to prepare %s", main, path)
    while not path.is_file():
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise DataError(f"waited {waited:.0f} s for {path}, which {main} writes when it has prepared the data. "
                            f"Check that process's log for an error; on several nodes data.cache_dir must be on a "
                            f"file system all nodes share; or run `translrec prepare CONFIG` before training")
        if time.monotonic() - last_log >= 300:
            log.info("still waiting for %s (%.0f s) to write %s", main, waited, path)
            last_log = time.monotonic()
        time.sleep(min(poll, max(timeout_s - waited, 0.0)))
        poll = min(poll * 2, max_poll_s)
