"""``mlm``: domain-adaptive masked-language-model pretraining on item text.

A seeded share of the items (``data.valid_fraction``) is held out for validation; the metric is the
masked-token loss and its perplexity (lower is better). The export is a plain Hugging Face
``*ForMaskedLM`` checkpoint; a later fine-tune starts from it with ``model.name_or_path=RUN/final``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

from translrec_dist.data.loader import eval_loader, token_lengths
from translrec_dist.data.retrieval import catalog_texts
from translrec_dist.data.stages import build_tokenizer, read_source
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.errors import ConfigError
from translrec_dist.models.mlm.masked_lm import MaskedLM, build_mlm_model
from translrec_dist.models.pretrained import load_whole
from translrec_dist.models.transfer import save_encoder
from translrec_dist.tasks.base import DataContext, Task, TaskData, only_for
from translrec_dist.tasks.retrieval import needs_item_texts, tokenizer_corpus


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


def item_splits(cfg) -> dict[str, pd.DataFrame]:
    """Item texts split into train and a seeded held-out share (valid = test)."""
    _, items = read_source(cfg)
    item_text = catalog_texts(items, cfg)
    order = np.random.default_rng(cfg.seed).permutation(len(item_text))
    n_valid = max(1, int(len(item_text) * cfg.data.valid_fraction))
    frames = {"train": order[n_valid:], "valid": order[:n_valid], "test": order[:n_valid]}
    return {k: pd.DataFrame({"example_id": np.sort(v), "text": item_text.to_numpy()[np.sort(v)], "label": 0})
            for k, v in frames.items()}, item_text


class MlmTask(Task):
    name = "mlm"

    def validate(self, cfg) -> None:
        needs_item_texts(cfg, self.name)
        if cfg.model.init_from is not None:
            raise ConfigError(f"model.init_from: task=mlm starts from model.name_or_path or model.tiny, not a "
                              f"translrec export ({cfg.source})")
        only_for(cfg, "retrieval", "model.item_id_embeddings", "train.gather_negatives")
        if cfg.data.streaming:
            self.prepare_texts(cfg)  # a ConfigError: mlm has no prepared shards (its item texts are few)

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        frames, item_text = item_splits(cfg)
        tokenizer = ctx.tokenizer(lambda: build_tokenizer(cfg, tokenizer_corpus(frames["train"]["text"], item_text)))
        splits = {k: ctx.tokenized(k, lambda f=f: tokenize_frame(f, tokenizer, cfg.data.max_length))
                  for k, f in frames.items()}

        @torch.no_grad()
        def evaluate(model, split: str, accelerator) -> dict:
            model.eval()
            eval_collate = MlmCollator(tokenizer, cfg.train.mlm_probability, cfg.seed + 1)
            loader = eval_loader(splits[split], eval_collate, batch_size=cfg.eval.micro_batch_size,
                                 rank=accelerator.process_index, world=accelerator.num_processes)
            total = torch.zeros(2, device=accelerator.device)
            for batch in loader:
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                real = batch["example_id"] >= 0
                labels = torch.where(real[:, None], batch["labels"], torch.full_like(batch["labels"], -100))
                with accelerator.autocast():
                    loss = model(**{**batch, "labels": labels})
                count = (labels != -100).sum()
                total += torch.stack([loss.float() * count, count.float()])
            model.train()
            total = accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total
            loss = float(total[0] / total[1].clamp(min=1))
            return {"mlm_loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "num_examples": len(frames[split])}

        collate = MlmCollator(tokenizer, cfg.train.mlm_probability, cfg.seed)
        lengths = token_lengths(splits["train"]) if cfg.data.group_by_length else None
        return TaskData(tokenizer, splits["train"], collate, evaluate, lengths)

    def build_model(self, cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None):
        return build_mlm_model(cfg, tokenizer)

    def hidden_size(self, model) -> int:
        return int(model.lm.config.hidden_size)

    def planned_parameters(self, cfg, encoder_params: int, encoder_config) -> int:
        import torch
        from transformers import AutoModelForMaskedLM

        with torch.device("meta"):  # the encoder with its LM head (decoder tied to the embeddings)
            return sum(p.numel() for p in AutoModelForMaskedLM.from_config(encoder_config).parameters())

    def loss(self, model, batch: dict):
        return model(**batch)

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data=None) -> None:
        save_encoder(out_dir, model.lm, state_dict, "lm.")

    def usage(self, cfg, loads: dict) -> list[str]:
        from translrec_dist.models.usage import fill_mask_usage, translrec_usage

        return [*translrec_usage("translrec train CONFIG model.name_or_path=final   # fine-tune the adapted encoder"),
                *fill_mask_usage()]

    def write_interop(self, out_dir: Path, cfg) -> dict:
        return {"masked_lm": "AutoModelForMaskedLM"}

    def read_export(self, model_dir: Path, cfg):
        m = cfg.model
        return MaskedLM(load_whole(AutoModelForMaskedLM, str(model_dir), attn_implementation=m.attn_implementation,
                                   trust_remote_code=m.trust_remote_code))
