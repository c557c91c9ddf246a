"""Use an export: ``translrec evaluate`` (metrics on a config's split) and ``translrec predict`` (scores)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator

from translrec_dist.config import RunConfig
from translrec_dist.data import load_text_splits, read_source
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.examples import latest_histories, render_item_texts
from translrec_dist.data.loader import eval_loader
from translrec_dist.data.tables import read_table
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.errors import DataError
from translrec_dist.evaluation import evaluate, predict_scores
from translrec_dist.models.cross_encoder import load_export
from translrec_dist.precision import log_precision


def evaluate_export(cfg: RunConfig, model_dir: Path, split: str = "test") -> dict:
    if cfg.task == "retrieval":
        from translrec_dist.ranking import evaluate_retrieval_export

        return {**evaluate_retrieval_export(cfg, model_dir, split), "split": split, "model": str(model_dir)}
    model, tokenizer, _ = load_export(model_dir)
    accelerator = Accelerator(mixed_precision=log_precision(cfg.train.precision))
    model = accelerator.prepare(model)
    frames = load_text_splits(cfg).frames
    ds = tokenize_frame(frames[split], tokenizer, cfg.data.max_length)
    loader = eval_loader(ds, PadCollator(tokenizer.pad_token_id), batch_size=cfg.eval.micro_batch_size,
                         rank=accelerator.process_index, world=accelerator.num_processes)
    return {**evaluate(model, loader, accelerator, cfg.task), "split": split, "model": str(model_dir)}


def rows_to_examples(rows: pd.DataFrame, cfg: RunConfig, path: Path) -> pd.DataFrame:
    """Input rows -> (text, text_pair): either given as text, or built from user_id + item_id."""
    if "text" in rows.columns:
        out = pd.DataFrame({"text": rows["text"].fillna("").astype(str)})
        out["text_pair"] = rows["text_pair"].fillna("").astype(str) if "text_pair" in rows else None
        return out
    if not {"user_id", "item_id"} <= set(rows.columns):
        raise DataError(f"{path}: needs a text column (and optionally text_pair), or user_id and item_id columns")
    if cfg.data.format == "text_label":
        raise DataError(f"{path}: this model was trained on text,label data; give a text column")
    inter, items = read_source(cfg)
    item_text = render_item_texts(items, cfg.data)
    histories = latest_histories(inter, item_text, cfg.data)
    users, item_ids = rows["user_id"].astype(str), rows["item_id"].astype(str)
    for col, ids, known in (("user_id", users, histories), ("item_id", item_ids, item_text.index)):
        unknown = ~ids.isin(list(known))
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataError(f"{path}, row {i + 1}: {col} {ids.iat[i]!r} is unknown to the model's data "
                            f"({cfg.data.format}: {cfg.data.path or 'synthetic'})")
    return pd.DataFrame({"text": users.map(histories), "text_pair": item_text.reindex(item_ids).to_numpy()})


def predict_file(model_dir: str, input_path: str, output: str | None, batch_size: int = 64) -> None:
    model, tokenizer, cfg = load_export(model_dir)
    path = Path(input_path)
    rows = read_table(path)
    if rows.empty:
        raise DataError(f"{path}: no rows to score")
    examples = rows_to_examples(rows, cfg, path)
    examples = examples.assign(example_id=np.arange(len(examples)), label=0.0)
    if examples["text_pair"].isna().all():
        examples = examples.drop(columns="text_pair")
    ds = tokenize_frame(examples, tokenizer, cfg.data.max_length)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=log_precision(cfg.train.precision))
    loader = eval_loader(ds, PadCollator(tokenizer.pad_token_id), batch_size=batch_size, rank=0, world=1)
    ids, scores, _ = predict_scores(accelerator.prepare(model), loader, accelerator)
    scores = 1 / (1 + np.exp(-scores)) if cfg.task == "ctr" else scores
    key = "probability" if cfg.task == "ctr" else "rating"
    out = open(output, "w") if output else sys.stdout
    try:
        for i, score in zip(ids, scores, strict=True):
            record = {k: _plain(v) for k, v in rows.iloc[int(i)].items() if k not in ("text", "text_pair")}
            out.write(json.dumps({**record, key: float(score)}) + "\n")
    finally:
        if output:
            out.close()


def _plain(v):
    return v.item() if hasattr(v, "item") else v


