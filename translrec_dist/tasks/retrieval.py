"""``retrieval``: a bi-encoder (user history tower, item text tower) trained with in-batch negatives.

The model computes its loss from the batch (softmax over the in-batch items, optionally gathered from all
ranks); evaluation ranks every target against the whole catalog (``ranking``). Exports are served by
``translrec index/recommend/explain``.

Export: the (user) encoder in plain Hugging Face format, ``item_encoder/`` when the towers are separate,
``bi_encoder.safetensors`` for the optional item-id embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors.torch import load_file, save_file

from translrec_dist.data.loader import token_lengths
from translrec_dist.data.prepared import load_prepared_splits
from translrec_dist.data.retrieval import (
    RetrievalCollator,
    build_retrieval_data,
    tokenize_catalog,
    tokenize_users,
)
from translrec_dist.data.stages import TextSplits, build_tokenizer, read_source
from translrec_dist.errors import ConfigError
from translrec_dist.evaluation.ranking import evaluate_on_data, evaluate_ranking
from translrec_dist.models.encoders import load_pretrained_encoder
from translrec_dist.models.retrieval.bi_encoder import EXTRA_FILE, ITEM_ENCODER_DIR, BiEncoder, build_bi_encoder
from translrec_dist.models.transfer import save_encoder
from translrec_dist.tasks.base import DataContext, Task, TaskData


@dataclass
class RetrievalExtra:
    num_items: int  # the training catalog's size: rows of the item-id table
    catalog: Any  # the catalog's tokenized item texts (what the collator draws item inputs from)


def tokenizer_corpus(train_texts, item_text: pd.Series) -> TextSplits:
    """What a tiny model's WordPiece vocabulary is trained on: training texts and the item texts."""
    frame = pd.DataFrame({"text": list(train_texts), "text_pair": None})
    return TextSplits({"train": frame}, item_text)


def needs_item_texts(cfg, name: str) -> None:
    if cfg.data.format == "text_label":
        raise ConfigError(f"task: task={name} needs item texts; use a recommendation format (e.g. synthetic, "
                          f"recbole) ({cfg.source})")


def texts_of(data) -> TextSplits:
    """What ``translrec prepare`` shards for retrieval: the user histories of each split (label = the target's
    catalog position) and the catalog's item texts, with the vocabulary trained on the same corpus as
    map-style training."""
    frames = {split: frame[["example_id", "text", "label", "user_id"]].assign(text_pair=None)
              for split, frame in data.splits.items()}
    catalog = pd.DataFrame({"example_id": range(len(data.item_text)), "text": data.item_text.to_numpy(),
                            "label": range(len(data.item_text))})
    return TextSplits({**frames, "catalog": catalog}, data.item_text)


class RetrievalTask(Task):
    name = "retrieval"
    serves_recommend = True

    def validate(self, cfg) -> None:
        needs_item_texts(cfg, self.name)

    def prepare_texts(self, cfg) -> TextSplits:
        return texts_of(build_retrieval_data(*read_source(cfg), cfg))

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        data = build_retrieval_data(*read_source(cfg), cfg)
        n = cfg.data.max_length
        if cfg.data.streaming:  # user histories from prepared shards, streamed per rank; catalog and eval as tables
            prepared = load_prepared_splits(cfg, ctx.is_main, lambda: texts_of(data))
            tokenizer, users = prepared.tokenizer, dict(prepared.splits)
            catalog = users.pop("catalog")
        else:
            corpus = tokenizer_corpus(data.splits["train"]["text"], data.item_text)
            tokenizer = ctx.tokenizer(lambda: build_tokenizer(cfg, corpus))
            catalog = ctx.tokenized("catalog", lambda: tokenize_catalog(data.item_text, tokenizer, n))
            users = {split: ctx.tokenized(split, lambda frame=frame: tokenize_users(frame, tokenizer, n))
                     for split, frame in data.splits.items()}
        eval_collate = RetrievalCollator(tokenizer.pad_token_id)

        def evaluate(model, split: str, accelerator) -> dict:
            return evaluate_ranking(model, users[split], data.splits[split], catalog, eval_collate, accelerator,
                                    cfg.eval.micro_batch_size, cfg.eval.ks)

        lengths = token_lengths(users["train"]) if cfg.data.group_by_length and not cfg.data.streaming else None
        return TaskData(tokenizer, users["train"], RetrievalCollator(tokenizer.pad_token_id, catalog), evaluate,
                        lengths, RetrievalExtra(len(data.item_ids), catalog))

    def build_model(self, cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None):
        if data is not None:
            num_items = data.extra.num_items
        else:  # rebuilt around a checkpoint: the id table's shape says how many items it was trained with
            weight = (state_dict or {}).get("item_ids.weight")
            num_items = weight.shape[0] - 1 if weight is not None else 0
        return build_bi_encoder(cfg, tokenizer, num_items=num_items)

    def planned_parameters(self, cfg, encoder_params: int, encoder_config) -> int:
        # a second encoder for items unless the towers share one; the item-id table depends on the data's catalog
        return encoder_params * (1 if cfg.model.share_towers else 2)

    def loss(self, model, batch: dict):
        return model(**batch)

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data=None) -> None:
        save_encoder(out_dir, model.encoder, state_dict, "encoder.")
        if model.item_encoder is not None:
            save_encoder(out_dir / ITEM_ENCODER_DIR, model.item_encoder, state_dict, "item_encoder.")
        extra = {k: v.contiguous() for k, v in state_dict.items() if k.startswith("item_ids.")}
        if extra:
            save_file(extra, str(out_dir / EXTRA_FILE))

    def write_interop(self, out_dir: Path, cfg) -> dict:
        from translrec_dist.models.interop import write_sentence_transformers

        return {"sentence_transformers": write_sentence_transformers(out_dir, cfg)}

    def usage(self, cfg, loads: dict) -> list[str]:
        from translrec_dist.models.usage import encoder_usage, sentence_transformers_usage, translrec_usage

        items = None if cfg.model.share_towers else ITEM_ENCODER_DIR
        return [*translrec_usage("translrec index --model final && translrec recommend --model final --user USER_ID"),
                *sentence_transformers_usage(loads["sentence_transformers"], items, cfg.model.similarity),
                *encoder_usage()]

    def read_export(self, model_dir: Path, cfg):
        m = cfg.model
        encoder = load_pretrained_encoder(str(model_dir), m.attn_implementation, m.trust_remote_code)
        item_encoder = None
        if (model_dir / ITEM_ENCODER_DIR).is_dir():
            item_encoder = load_pretrained_encoder(str(model_dir / ITEM_ENCODER_DIR), m.attn_implementation,
                                                   m.trust_remote_code)
        extra = load_file(str(model_dir / EXTRA_FILE)) if (model_dir / EXTRA_FILE).is_file() else {}
        num_items = extra["item_ids.weight"].shape[0] - 1 if extra else 0
        model = BiEncoder(encoder, item_encoder, pooling=m.pooling, similarity=m.similarity,
                          temperature=m.temperature, num_items=num_items)
        if extra:
            model.item_ids.load_state_dict({"weight": extra["item_ids.weight"]})
        return model

    def scorer(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None):
        from translrec_dist.tasks.retrieval_scorer import RetrievalScorer

        return RetrievalScorer(model, tokenizer, cfg, model_dir, device)

    def evaluate_export(self, cfg, model, tokenizer, split: str, accelerator) -> dict:
        data = build_retrieval_data(*read_source(cfg), cfg)
        return evaluate_on_data(accelerator.prepare(model), tokenizer, cfg, data, split, accelerator)
