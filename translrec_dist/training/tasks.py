"""Tasks whose model computes its own loss from the batch: ``retrieval`` (bi-encoder) and ``mlm``.

``build_self_loss_task`` gives the loop what it needs: the tokenizer, the tokenized training split and
its collator, the model, an evaluator ``(model, split) -> metrics`` and the export writer. The loop
stays the same for every task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformers import DataCollatorForLanguageModeling

from translrec_dist.config import RunConfig
from translrec_dist.data import TextSplits, read_source
from translrec_dist.data.loader import eval_loader
from translrec_dist.data.retrieval import (
    RetrievalCollator,
    build_retrieval_data,
    catalog_texts,
    tokenize_catalog,
    tokenize_users,
)
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.models.bi_encoder import build_bi_encoder, save_bi_export
from translrec_dist.models.mlm import build_mlm_model, save_mlm_export
from translrec_dist.ranking import evaluate_ranking

log = logging.getLogger(__name__)
SELF_LOSS_TASKS = ("retrieval", "mlm", "sequential")


@dataclass
class TaskSetup:
    tokenizer: object
    splits: dict  # tokenized datasets; "train" feeds the training loader
    collate: Callable
    model: torch.nn.Module
    evaluate: Callable  # (prepared model, split name, accelerator) -> metrics
    save_export: Callable  # (out_dir, state_dict, unwrapped model, tokenizer, cfg)
    after_step: Callable | None = None  # (unwrapped model, step): e.g. refresh cached catalog vectors


def build_self_loss_task(cfg: RunConfig, get_tokenizer: Callable[[TextSplits], object]) -> TaskSetup:
    if cfg.task == "sequential":
        from translrec_dist.training.sequential_task import build_sequential_task

        return build_sequential_task(cfg)
    inter, items = read_source(cfg)
    if cfg.task == "retrieval":
        return build_retrieval_task(cfg, inter, items, get_tokenizer)
    return build_mlm_task(cfg, items, get_tokenizer)


def tokenizer_corpus(train_texts, item_text: pd.Series) -> TextSplits:
    frame = pd.DataFrame({"text": list(train_texts), "text_pair": None})
    return TextSplits({"train": frame}, item_text)


def build_retrieval_task(cfg: RunConfig, inter, items, get_tokenizer) -> TaskSetup:
    data = build_retrieval_data(inter, items, cfg)
    tokenizer = get_tokenizer(tokenizer_corpus(data.splits["train"]["text"], data.item_text))
    n = cfg.data.max_length
    catalog = tokenize_catalog(data.item_text, tokenizer, n)
    users = {split: tokenize_users(frame, tokenizer, n) for split, frame in data.splits.items()}
    collate = RetrievalCollator(tokenizer.pad_token_id, catalog)
    eval_collate = RetrievalCollator(tokenizer.pad_token_id)
    model = build_bi_encoder(cfg, tokenizer, num_items=len(data.item_ids))

    def evaluate(prepared, split: str, accelerator) -> dict:
        return evaluate_ranking(prepared, users[split], data.splits[split], catalog, eval_collate, accelerator,
                                cfg.eval.micro_batch_size, cfg.eval.ks)

    return TaskSetup(tokenizer, users, collate, model, evaluate, save_bi_export)


def build_mlm_task(cfg: RunConfig, items, get_tokenizer) -> TaskSetup:
    """Domain-adaptive pretraining on item text; a seeded share of items (data.valid_fraction) is held out."""
    item_text = catalog_texts(items, cfg)
    order = np.random.default_rng(cfg.seed).permutation(len(item_text))
    n_valid = max(1, int(len(item_text) * cfg.data.valid_fraction))
    frames = {"train": order[n_valid:], "valid": order[:n_valid], "test": order[:n_valid]}
    frames = {k: pd.DataFrame({"example_id": np.sort(v), "text": item_text.to_numpy()[np.sort(v)], "label": 0})
              for k, v in frames.items()}
    tokenizer = get_tokenizer(tokenizer_corpus(frames["train"]["text"], item_text))
    splits = {k: tokenize_frame(f, tokenizer, cfg.data.max_length) for k, f in frames.items()}
    collate = MlmCollator(tokenizer, cfg.train.mlm_probability, cfg.seed)
    model = build_mlm_model(cfg, tokenizer)

    @torch.no_grad()
    def evaluate(prepared, split: str, accelerator) -> dict:
        prepared.eval()
        eval_collate = MlmCollator(tokenizer, cfg.train.mlm_probability, cfg.seed + 1)
        loader = eval_loader(splits[split], eval_collate, batch_size=cfg.eval.micro_batch_size,
                             rank=accelerator.process_index, world=accelerator.num_processes)
        total = torch.zeros(2, device=accelerator.device)
        for batch in loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            real = batch["example_id"] >= 0
            labels = torch.where(real[:, None], batch["labels"], torch.full_like(batch["labels"], -100))
            with accelerator.autocast():
                loss = prepared(**{**batch, "labels": labels})
            count = (labels != -100).sum()
            total += torch.stack([loss.float() * count, count.float()])
        prepared.train()
        total = accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total
        loss = float(total[0] / total[1].clamp(min=1))
        return {"mlm_loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "num_examples": len(frames[split])}

    return TaskSetup(tokenizer, splits, collate, model, evaluate, save_mlm_export)


class MlmCollator:
    """Dynamic padding + BERT masking (80/10/10) from transformers, with a seeded generator."""

    def __init__(self, tokenizer, probability: float, seed: int):
        self.mask = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, return_tensors="pt",
                                                    seed=seed)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([int(r["example_id"]) for r in rows])
        features = [{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in r} for r in rows]
        batch = dict(self.mask(features))
        batch["example_id"] = ids
        return batch
