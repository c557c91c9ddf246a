"""``sequential``: a SASRec-style recommender over pretrained-encoder item vectors (``models.sequential``).

Data: user windows from the package's leave-one-out split (``data.sequences``) as a map-style dataset, or
with ``data.streaming=true`` from ``translrec prepare``'s window shards streamed per rank
(``data.sequence_shards``); the trainer's per-rank split and exact resume apply as to every task. Frozen
regime: the main process encodes the catalog's texts once and caches them in the run directory
(``item_vectors/``); the other ranks load the cache. Trained regimes: a hook re-encodes the catalog every
``refresh_every`` steps. The refresh and evaluation call the wrapped model (``SequenceModel.infer`` modes), so
they run under ZeRO-3 as well.

Export (``final/``): ``sequential.safetensors`` (every weight, the catalog's text vectors included),
``catalog.json`` (ids, texts, training counts) and, for text models, the item encoder at the top level in
plain Hugging Face format with its tokenizer (new items are encoded from text alone). An ID-only model has
no encoder: its ``config.json`` only describes the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from translrec_dist.data.sequence_shards import load_prepared_windows, window_splits
from translrec_dist.data.sequences import SequenceData, build_sequence_data, eval_histories, training_windows
from translrec_dist.data.stages import read_source
from translrec_dist.errors import ConfigError
from translrec_dist.evaluation.ranking import all_metrics, target_ranks
from translrec_dist.models.encoding import encode_texts, eval_mode, pooled_forward, put_in_order, rank_share
from translrec_dist.models.sequential.item_tower import cached_text_vectors
from translrec_dist.models.sequential.model import SequenceModel
from translrec_dist.models.transfer import merged_encoder
from translrec_dist.run_dir import RunDir
from translrec_dist.safe_io import check_regular
from translrec_dist.tasks.base import DataContext, Task, TaskData
from translrec_dist.tasks.sequential_scorer import CATALOG_FILE, SequentialScorer
from translrec_dist.training.hooks import Hook
from translrec_dist.training.precision import resolve_precision

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)
WEIGHTS_FILE = "sequential.safetensors"


@dataclass
class SequentialExtra:
    data: SequenceData  # catalog, training sequences and eval rows
    vectors: torch.Tensor | None  # the catalog's text vectors (None: an ID-only model)
    run_dir: RunDir | None = None  # where encoder=top_layers|lora caches the frozen lower layers' states


class WindowCollator:
    """Windows as one tensor (what the throughput meter counts: ``SequentialTask.batch_size``).

    ``loss: sampled``: the batch's popularity-sampled negatives are drawn here, from a generator seeded by the
    run's seed and the batch's window ids. Ranks hold disjoint windows, so each rank draws its own negatives
    (a shared seed gave every rank the same ones), every step draws new ones, and a resumed run draws what the
    uninterrupted run drew at that step (no generator state to checkpoint)."""

    def __init__(self, sampling_probs: torch.Tensor | None = None, num_negatives: int = 0, seed: int = 0):
        self.probs, self.num_negatives, self.seed = sampling_probs, num_negatives, seed

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return self.batch(torch.tensor([r["window"] for r in rows], dtype=torch.long),
                          torch.tensor([int(r["example_id"]) for r in rows]))

    def arrow(self, table) -> dict[str, torch.Tensor]:
        """One Arrow read per micro-batch (windows have a fixed length): no per-row Python loop."""
        ids = torch.from_numpy(table.column("example_id").to_numpy().astype(np.int64))
        flat = table.column("window").combine_chunks().flatten().to_numpy().astype(np.int64)
        return self.batch(torch.from_numpy(flat.reshape(len(ids), -1)), ids)

    def batch(self, windows: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"windows": windows, "example_id": ids}
        if self.num_negatives and self.probs is not None:
            out["negatives"] = torch.multinomial(self.probs, self.num_negatives, replacement=True,
                                                 generator=batch_generator(self.seed, ids))
        return out


def batch_generator(seed: int, ids: torch.Tensor) -> torch.Generator:
    """A generator that is a function of the run's seed and the batch's example ids (order included)."""
    digest = hashlib.blake2b(ids.numpy().astype(np.int64).tobytes(), digest_size=8, key=str(seed).encode())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2 ** 63 - 1))


class RefreshCatalog(Hook):
    """Trained encoder regimes: re-encode every item's text every ``refresh_every`` steps (the ranks split the
    catalog when the lower layers are cached). It also tells the item encoder the optimizer step (saved with
    the weights), which ends ``encoder_frozen_steps``' warm-up in a resumed run at the same step."""

    def __init__(self, every: int):
        self.every = every

    def observe(self, trainer, outcome) -> None:
        items = trainer.accelerator.unwrap_model(trainer.model).text_items
        if items is not None:
            items.optimizer_step.fill_(trainer.step)

    def should_run(self, step: int) -> bool:
        return step % self.every == 0

    def run(self, trainer, step: int) -> None:
        with torch.no_grad():  # through the wrapped model's forward: ZeRO-3 gathers the encoder there
            trainer.model(mode="refresh", precision=trainer.accelerator.mixed_precision)


def check_sequence_config(cfg) -> None:
    """What the schema cannot check alone: how the sequential options combine with each other and the data (each
    field's own bounds are the schema's, ``config.schema.SequenceConfig``)."""
    s, d, where = cfg.model.sequence, cfg.data, cfg.source

    def fail(key: str, msg: str):
        raise ConfigError(f"{key}: {msg} ({where})")

    if d.format == "text_label":
        fail("task", "task=sequential needs interactions; use a recommendation format (e.g. synthetic, recbole)")
    if s.unknown_id == "learned" and (s.item_repr != "text+id" or s.id_dropout == 0):
        fail("model.sequence.unknown_id", "learned trains on the items whose ID vector id_dropout drops: it needs "
             "item_repr=text+id and id_dropout > 0 (e.g. 0.2)")
    if s.encoder != "frozen" and s.item_repr == "id":
        fail("model.sequence.encoder", "an ID-only model has no encoder; use encoder=frozen")
    trains = s.encoder != "frozen" and s.item_repr != "id"
    for key, set_ in (("encoder_frozen_steps", s.encoder_frozen_steps), ("encoder_lr", s.encoder_lr is not None)):
        if set_ and not trains:
            fail(f"model.sequence.{key}", "applies to a trained encoder: set model.sequence.encoder to top_layers, "
                 "lora or full (and item_repr to text or text+id)")
    if s.encode_items_per_step is not None and not (s.encoder in ("top_layers", "lora") and s.layer_cache):
        fail("model.sequence.encode_items_per_step", "samples the items run through the top layers over cached "
             "lower-layer states: it needs encoder=top_layers or lora and layer_cache=true")
    if s.distill and s.item_repr != "text+id":
        fail("model.sequence.distill", "teaches the text side to stand in for ID vectors: it needs item_repr=text+id")
    if s.cold_scale != 1.0 and not s.distill:
        fail("model.sequence.cold_scale", "scales the distilled cold head's vectors: it needs distill > 0 (e.g. 1.0)")
    if s.encoder_dropout and not (trains and s.encoder in ("top_layers", "lora") and s.layer_cache):
        fail("model.sequence.encoder_dropout", "switches dropout on in the top layers run over cached lower-layer "
             "states: it needs encoder=top_layers or lora with layer_cache=true (the other regimes keep the "
             "encoder's own dropout)")


def catalog_tokenizer(cfg, texts: list[str]):
    """The item encoder's tokenizer; an ID-only model keeps a small WordPiece vocabulary of its catalog so
    that every export has one (it reads no text)."""
    from translrec_dist.data.tokenize import load_tokenizer, train_wordpiece

    m = cfg.model
    if m.sequence.item_repr != "id" and m.tiny is None:
        return load_tokenizer(m.name_or_path, m.trust_remote_code)
    vocab = m.tiny.vocab_size if m.tiny is not None else 1000
    return train_wordpiece(iter(texts), vocab, cfg.data.max_length)


class SequentialTask(Task):
    name = "sequential"
    serves_recommend = True

    def validate(self, cfg) -> None:
        check_sequence_config(cfg)

    def prepare_inputs(self, cfg) -> dict:
        s = cfg.model.sequence  # the windows' stride; item_repr picks the tokenizer (catalog_tokenizer)
        return {"window_stride": s.window_stride, "item_repr": s.item_repr}

    def prepare_texts(self, cfg):
        data = read_sequence_data(cfg)
        return window_splits(data, cfg.data.max_history, cfg.model.sequence.window_stride,
                             lambda: catalog_tokenizer(cfg, data.texts))

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        if cfg.data.streaming:
            data, train, tokenizer = load_prepared_windows(cfg, ctx.is_main, lambda: self.prepare_texts(cfg),
                                                           self.prepare_inputs(cfg))
            log.info("sequential: %d training windows streamed from %s, catalog %d items", len(train),
                     train.directory, data.num_items)
        else:
            data, train, tokenizer = in_memory_windows(cfg, ctx)
        vectors = None
        if cfg.model.sequence.item_repr != "id":
            vectors = item_text_vectors(cfg, data, ctx.run_dir.item_vectors, ctx)
            if uses_layer_cache(cfg):  # the frozen lower layers' states, computed once (build_model reads them)
                if ctx.is_main:
                    build_text_encoder(cfg, data.texts, ctx.run_dir)
                ctx.barrier()

        def evaluate(model, split: str, accelerator) -> dict:
            return {**evaluate_sequences(model, data, split, cfg.data.max_history, cfg.eval.micro_batch_size,
                                         tuple(cfg.eval.ks), accelerator), "num_items": data.num_items}

        s = cfg.model.sequence
        collate = WindowCollator(torch.as_tensor(data.popularity, dtype=torch.float64).clamp(min=0).float(),
                                 s.num_negatives if s.loss == "sampled" else 0, cfg.seed)
        return TaskData(tokenizer, train, collate, evaluate, None, SequentialExtra(data, vectors, ctx.run_dir))

    def build_model(self, cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None):
        if data is not None:
            model = build_sequential(cfg, data.extra.data, data.extra.vectors, data.extra.run_dir)
        else:  # rebuilt around a checkpoint: shapes from its weights
            state = state_dict or {}
            text = state.get("items.text")
            num_items = len(state["log_q"])
            model = SequenceModel(cfg.model.sequence, num_items, cfg.data.max_history,
                                  text.shape[1] if text is not None else 0, cfg.train.gather_negatives)
            if any(k.startswith("text_items.") for k in state):  # the encoder trained: its weights load into it
                attach_trained_encoder(cfg, model, catalog_of(cfg)["texts"])
        return model

    def hidden_size(self, model) -> int:
        return int(model.cfg.hidden)

    def planned_parameters(self, cfg, encoder_params: int, encoder_config) -> int:
        """The sequence model (item tower, causal transformer; the id table is sized by the data's catalog),
        plus the item encoder when it trains (encoder=top_layers|full); a frozen encoder only encodes."""
        s = cfg.model.sequence
        text_dim = encoder_config.hidden_size if s.item_repr != "id" else 0
        with torch.device("meta"):
            model = SequenceModel(s, 1, cfg.data.max_history, text_dim)
        own = sum(p.numel() for p in model.parameters())
        return own + (encoder_params if s.encoder != "frozen" and s.item_repr != "id" else 0)

    def loss(self, model, batch: dict):
        return model(**batch)

    def batch_size(self, batch: dict):
        """(target positions, windows): the meter reports trained positions/s."""
        w = batch["windows"]
        return ((w[:, :-1] >= 0) & (w[:, 1:] >= 0)).sum(), len(w)

    def hooks(self, cfg, data: TaskData) -> list:
        s = cfg.model.sequence
        return [RefreshCatalog(s.refresh_every)] if s.encoder != "frozen" and s.item_repr != "id" else []

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data=None) -> None:
        encoder_state = {k[len("text_items.encoder."):]: v for k, v in state_dict.items()
                         if k.startswith("text_items.encoder.")}
        weights = {k: v.detach().contiguous().cpu() for k, v in state_dict.items() if not k.startswith("text_items.")}
        save_file(weights, str(out_dir / WEIGHTS_FILE))
        # The run's catalog when the trainer hands its data; rebuilt from the config's source otherwise.
        info = catalog_info(data.extra.data) if data is not None else catalog_of(cfg)
        (out_dir / CATALOG_FILE).write_text(json.dumps(info))
        if model.items.use_text:
            encoder, _ = item_encoder(cfg, info["texts"])
            if encoder_state:  # the encoder trained (top_layers / lora / full): its trained weights
                if cfg.model.sequence.encoder == "lora":  # adapters merged into a plain encoder
                    _, encoder_state = merged_encoder(model.text_items.encoder, encoder_state)
                encoder.load_state_dict(encoder_state)
            encoder.save_pretrained(str(out_dir), safe_serialization=True)
        else:
            (out_dir / "config.json").write_text(json.dumps({"translrec_task": "sequential", "item_repr": "id",
                                                             "num_items": len(info["item_ids"])}))

    def usage(self, cfg, loads: dict) -> list[str]:
        from translrec_dist.models.usage import encoder_usage, recommender_usage, translrec_usage

        lines = [*translrec_usage("translrec index --model final && translrec recommend --model final --user USER_ID"),
                 *recommender_usage(loads["first_item"])]
        return lines + (encoder_usage() if cfg.model.sequence.item_repr != "id" else [])

    def write_interop(self, out_dir: Path, cfg) -> dict:
        catalog = json.loads((Path(out_dir) / CATALOG_FILE).read_text())
        return {"first_item": str(catalog["item_ids"][0])}  # a history the card's example can recommend from

    def read_export(self, model_dir: Path, cfg):
        from translrec_dist.models.pretrained import refuse_partial

        path = check_regular(Path(model_dir) / WEIGHTS_FILE, "weights file")
        weights = load_file(str(path))
        if "log_q" not in weights:  # it sizes the catalog: without it nothing can be built
            refuse_partial(path, "SequenceModel", ["log_q"], [])
        text = weights.get("items.text")
        model = SequenceModel(cfg.model.sequence, len(weights["log_q"]), cfg.data.max_history,
                              text.shape[1] if text is not None else 0)
        model_keys = model.state_dict()
        mismatched = sorted(k for k in set(weights) & set(model_keys) if weights[k].shape != model_keys[k].shape)
        missing, unexpected = sorted(set(model_keys) - set(weights)), sorted(set(weights) - set(model_keys))
        if missing or unexpected or mismatched:
            refuse_partial(path, "SequenceModel", missing, unexpected, mismatched)
        model.load_state_dict(weights)
        return model

    def scorer(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None):
        return SequentialScorer(model, tokenizer, cfg, model_dir, device)

    def evaluate_export(self, cfg, model, tokenizer, split: str, accelerator) -> dict:
        data = read_sequence_data(cfg)
        return {**evaluate_sequences(model, data, split, cfg.data.max_history, cfg.eval.micro_batch_size,
                                     tuple(cfg.eval.ks)), "num_items": data.num_items}


def read_sequence_data(cfg) -> SequenceData:
    """The raw source through the leave-one-out split into catalog, training sequences and eval rows."""
    return build_sequence_data(*read_source(cfg), cfg)


def in_memory_windows(cfg, ctx: DataContext) -> tuple[SequenceData, datasets.Dataset, object]:
    data = read_sequence_data(cfg)
    tokenizer = ctx.tokenizer(lambda: catalog_tokenizer(cfg, data.texts))
    windows = training_windows(data.train, cfg.data.max_history, cfg.model.sequence.window_stride)
    train = datasets.Dataset.from_dict({"example_id": np.arange(len(windows)), "window": windows.tolist()})
    log.info("sequential: %d training windows (%d target positions), catalog %d items", len(windows),
             int(((windows[:, :-1] >= 0) & (windows[:, 1:] >= 0)).sum()), data.num_items)
    return data, train, tokenizer


def catalog_info(seq: SequenceData) -> dict:
    """What the export's ``catalog.json`` holds: ids, texts and training counts in catalog order."""
    return {"item_ids": [str(i) for i in seq.item_ids], "texts": seq.texts, "popularity": seq.popularity.tolist()}


def catalog_of(cfg) -> dict:
    return catalog_info(read_sequence_data(cfg))


def item_encoder(cfg: RunConfig, catalog_texts: list[str]):
    """(encoder, tokenizer) of the item tower: ``model.name_or_path``, or a tiny BERT (seeded, with a
    WordPiece vocabulary trained on the catalog's texts) so that export and reload see the same encoder."""
    from translrec_dist.data.tokenize import load_tokenizer, train_wordpiece
    from translrec_dist.models.encoders import build_encoder

    m = cfg.model
    if m.tiny is None:
        tokenizer = load_tokenizer(m.name_or_path, m.trust_remote_code)
    else:
        tokenizer = train_wordpiece(iter(catalog_texts), m.tiny.vocab_size, cfg.data.max_length)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg, vocab_size=len(tokenizer))
    return encoder, tokenizer


class _NotCached(Exception):
    pass


def item_text_vectors(cfg: RunConfig, data: SequenceData, cache_dir: Path, ctx: DataContext | None = None
                      ) -> torch.Tensor:
    """Pooled vectors of every catalog item's text (cached per encoder state, precision and catalog).

    Every rank encodes its share of the catalog on its own device and the shares are gathered (a catalog of
    millions of items is a long job on one process); the main process writes the cache, which the ranks of a
    later run read instead. Without ``ctx`` (or with one process) this process encodes alone.
    """
    import torch.distributed as dist

    m, texts = cfg.model, data.texts
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if on_gpu else torch.device("cpu")
    precision = resolve_precision(cfg.train.precision, on_gpu=on_gpu)[0]
    key = [str(m.name_or_path), str(m.tiny), str(cfg.seed) if m.tiny else "", m.pooling, str(cfg.data.max_length),
           *([precision] if precision != "no" else [])]  # fp32 keeps the key its caches were written under
    split = ctx is not None and ctx.world > 1 and dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if split else (0, 1)

    def not_cached(_texts):
        raise _NotCached

    def encode(texts):  # a collective when split: every rank runs it
        encoder, tokenizer = item_encoder(cfg, texts)
        with eval_mode(encoder.to(device)):
            return encode_texts(pooled_forward(encoder, m.pooling), texts, tokenizer, cfg.data.max_length,
                                device=device, precision=precision, rank=rank, world=world)

    if not split:
        return cached_text_vectors(cache_dir, key, texts, encode)
    # The main process alone looks at the cache, and tells every rank whether they encode together.
    cached = [None]
    if ctx.is_main:
        try:
            cached[0] = cached_text_vectors(cache_dir, key, texts, not_cached)
        except _NotCached:
            pass
    hit = [cached[0] is not None]
    dist.broadcast_object_list(hit, src=0)
    if hit[0]:
        return cached[0] if ctx.is_main else cached_text_vectors(cache_dir, key, texts, not_cached)
    vectors = encode(texts)  # the whole matrix on every rank
    if ctx.is_main:
        cached_text_vectors(cache_dir, key, texts, lambda _texts: vectors)
    return vectors


def build_sequential(cfg: RunConfig, data: SequenceData, text_vectors: torch.Tensor | None,
                     run_dir=None) -> SequenceModel:
    s = cfg.model.sequence
    model = SequenceModel(s, data.num_items, cfg.data.max_history,
                          text_vectors.shape[1] if text_vectors is not None else 0, cfg.train.gather_negatives)
    if text_vectors is not None and s.item_repr != "id":
        model.items.set_text_vectors(text_vectors)
    if s.encoder != "frozen" and s.item_repr != "id":
        attach_trained_encoder(cfg, model, data.texts, run_dir)
    model.set_popularity(torch.as_tensor(data.popularity))
    return model


def attach_trained_encoder(cfg: RunConfig, model: SequenceModel, texts: list[str], run_dir=None) -> None:
    """Regimes top_layers / lora / full: the item encoder is part of the model (ZeRO shards it like any encoder)."""
    model.attach_text_encoder(build_text_encoder(cfg, texts, run_dir))
    model.encoder_lr = cfg.model.sequence.encoder_lr
    model.encoder_frozen_steps = cfg.model.sequence.encoder_frozen_steps


def uses_layer_cache(cfg: RunConfig) -> bool:
    s = cfg.model.sequence
    return s.item_repr != "id" and s.encoder in ("top_layers", "lora") and s.layer_cache


def build_text_encoder(cfg: RunConfig, texts: list[str], run_dir=None):
    """The trained item encoder over the tokenized catalog; with ``layer_cache``, the frozen lower layers' states
    from the run directory (``run_dir``; written there when missing) or, without one, computed in memory."""
    from translrec_dist.data.retrieval import tokenize_catalog
    from translrec_dist.models.encoding import as_table
    from translrec_dist.models.sequential.layer_cache import cached_lower_states
    from translrec_dist.models.sequential.trainable_items import TextEncoderItems
    from translrec_dist.models.transfer import add_top_lora, transformer_layers

    s = cfg.model.sequence
    encoder, tokenizer = item_encoder(cfg, texts)
    if s.encoder == "lora":
        encoder = add_top_lora(encoder, cfg)
    tokens = tokenize_catalog(pd.Series(texts), tokenizer, cfg.data.max_length)
    lower = None
    if uses_layer_cache(cfg):
        frozen = len(transformer_layers(encoder)) - s.train_layers
        cache_dir = run_dir.layer_states if run_dir is not None else None
        if cache_dir is None:
            from translrec_dist.models.sequential.layer_cache import check_layer_split, compute_lower_states

            check_layer_split(encoder, frozen)
            lower = compute_lower_states(encoder, frozen, as_table(tokens), tokenizer.pad_token_id)
        else:
            lower = cached_lower_states(cache_dir, run_dir.root, encoder, frozen, as_table(tokens),
                                        tokenizer.pad_token_id)
    return TextEncoderItems(encoder, tokens, tokenizer.pad_token_id, cfg.model.pooling, s.encoder, s.train_layers,
                            lower, s.encode_items_per_step, s.encoder_frozen_steps, s.encoder_dropout)


@torch.no_grad()
def evaluate_sequences(model, data: SequenceData, split: str, max_history: int, batch_size: int = 256, ks=(10, 50),
                       accelerator=None) -> dict:
    """Metrics of one split. ``model``: a SequenceModel, or (with ``accelerator``) the wrapped one of a run: each
    rank ranks every W-th user, padded to the same count on every rank (each batch is a forward of the wrapped
    model, a collective under ZeRO-3: a rank with one batch fewer would leave the others waiting), and the
    ranks' results are gathered."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    core = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = model.training
    model.eval()
    frame = data.evals[split]
    histories = torch.as_tensor(eval_histories(frame, max_history))
    targets, seen = torch.tensor(frame["label"].to_numpy()), frame["history"].to_numpy()
    share = torch.as_tensor(rank_share(np.arange(len(frame)), rank, world))
    catalog = model(mode="catalog")
    dev = catalog.device
    ranks = [torch.empty(0, 2, dtype=torch.long, device=dev)]
    for start in range(0, len(share), batch_size):
        rows = share[start:start + batch_size].clamp(min=0)  # padding (-1) repeats row 0, dropped below
        users = model(mode="users", history=histories[rows].to(dev), item_vectors=catalog)
        # fp32 scores: a DeepSpeed bf16 model computes in bf16, whose ties would count against it
        scores = core.score(users.float(), catalog.float())
        r, rm = target_ranks(scores, targets[rows].to(dev), [seen[i] for i in rows.tolist()])
        ranks.append(torch.stack([r, rm], 1))
    model.train(was_training)
    positions, ranks = share.to(dev), torch.cat(ranks)
    if world > 1:
        positions, ranks = accelerator.gather(positions), accelerator.gather(ranks)
    ranks = put_in_order(positions, ranks, len(frame)).cpu().numpy()
    return all_metrics(ranks[:, 0], ranks[:, 1], frame["cold"].to_numpy(bool), ks)
