"""``ctr`` and ``rating``: a cross-encoder scores one (user history, item) pair.

ctr: binary cross-entropy on logits, metrics auc/logloss/accuracy. rating: mean squared error, the head's
bias starts at the mean training rating, metrics rmse/mae. Both stream from prepared shards
(``data.streaming``) and group by length (``data.group_by_length``).

Export: the encoder in plain Hugging Face format plus ``head.safetensors``; the score is
``head(pool(encoder(x)))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from translrec_dist.data.collate import PadCollator
from translrec_dist.data.examples import latest_histories, render_item_texts
from translrec_dist.data.loader import eval_loader, token_lengths
from translrec_dist.data.prepared import load_prepared_splits
from translrec_dist.data.stages import build_tokenizer, load_text_splits, read_source
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.errors import ConfigError, DataError
from translrec_dist.evaluation.metrics import binary_metrics, evaluate, predict_scores, regression_metrics
from translrec_dist.evaluation.predict_checks import refuse_empty_text
from translrec_dist.models.encoders import load_pretrained_encoder
from translrec_dist.models.pointwise.cross_encoder import HEAD_FILE, CrossEncoder, build_model
from translrec_dist.models.transfer import save_encoder
from translrec_dist.tasks.base import DataContext, Task, TaskData, only_for


@dataclass
class PointwiseExtra:
    label_mean: float | None  # the training labels' mean: the rating head's starting bias

class PointwiseTask(Task):
    """Shared by ctr and rating; subclasses set the loss, the metrics and the prediction's name."""

    prediction_name = "score"
    labels = "click"  # what an example's label is: "click" (0/1 with sampled negatives) or "rating"
    score_expression = "the logit"  # what the text-classification pipeline's score is, for the model card
    problem_type = "regression"  # transformers' config.problem_type of the exported one-label classifier

    def validate(self, cfg) -> None:
        only_for(cfg, "retrieval", "model.item_id_embeddings", "train.gather_negatives")

    def metrics(self, scores: np.ndarray, labels: np.ndarray) -> dict:
        raise NotImplementedError

    def to_prediction(self, scores: np.ndarray) -> np.ndarray:
        return scores

    def prepare_texts(self, cfg):
        return load_text_splits(cfg, self.labels)

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        if cfg.data.streaming:  # prepared shards (translrec prepare; built here if missing), streamed per rank
            prepared = load_prepared_splits(cfg, ctx.is_main, texts=lambda: self.prepare_texts(cfg))
            tokenizer, splits, label_mean = prepared.tokenizer, prepared.splits, prepared.label_mean
        else:
            texts = self.prepare_texts(cfg)
            tokenizer = ctx.tokenizer(lambda: build_tokenizer(cfg, texts))
            splits = {name: ctx.tokenized(name, lambda df=df: tokenize_frame(df, tokenizer, cfg.data.max_length))
                      for name, df in texts.frames.items()}
            label_mean = float(texts.frames["train"]["label"].mean())
        collate = PadCollator(tokenizer.pad_token_id, cfg.data.pad_to_multiple_of)
        lengths = token_lengths(splits["train"]) if cfg.data.group_by_length and not cfg.data.streaming else None

        def evaluate_split(model, split: str, accelerator) -> dict:
            loader = eval_loader(splits[split], collate, batch_size=cfg.eval.micro_batch_size,
                                 rank=accelerator.process_index, world=accelerator.num_processes)
            return evaluate(model, loader, accelerator, self.metrics)

        return TaskData(tokenizer, splits["train"], collate, evaluate_split, lengths, PointwiseExtra(label_mean))

    def build_model(self, cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None):
        return build_model(cfg, tokenizer, self.initial_bias(data))

    def initial_bias(self, data: TaskData | None) -> float | None:
        return None

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data=None) -> None:
        head = {k[len("head."):]: v.contiguous() for k, v in state_dict.items() if k.startswith("head.")}
        if not head:
            raise RuntimeError("refusing to write an export without the scoring head's weights")
        save_encoder(out_dir, model.encoder, state_dict, "encoder.")
        save_file(head, str(out_dir / HEAD_FILE))

    def write_interop(self, out_dir: Path, cfg) -> dict:
        from translrec_dist.models.interop import write_sequence_classification

        return {"sequence_classification": write_sequence_classification(out_dir, cfg, self.problem_type,
                                                                          self.prediction_name)}

    def usage(self, cfg, loads: dict) -> list[str]:
        from translrec_dist.models import usage as card

        lines = card.translrec_usage("translrec predict --model final --input rows.csv")
        if loads.get("sequence_classification"):
            return lines + card.text_classification_usage(loads["sequence_classification"],
                                                          cfg.data.max_length, self.score_expression)
        return lines + card.hand_scoring_usage(cfg.model.pooling, cfg.data.max_length)

    def read_export(self, model_dir: Path, cfg):
        if not (model_dir / HEAD_FILE).is_file():
            raise ConfigError(f"{model_dir} is not a {self.name} export (missing {HEAD_FILE})")
        m = cfg.model
        encoder = load_pretrained_encoder(str(model_dir), m.attn_implementation, m.trust_remote_code)
        model = CrossEncoder(encoder, m.pooling, m.head_dropout)
        model.head.load_state_dict(load_file(str(model_dir / HEAD_FILE)))
        return model

    def evaluate_export(self, cfg, model, tokenizer, split: str, accelerator) -> dict:
        frames = self.prepare_texts(cfg).frames
        ds = tokenize_frame(frames[split], tokenizer, cfg.data.max_length)
        loader = eval_loader(ds, PadCollator(tokenizer.pad_token_id), batch_size=cfg.eval.micro_batch_size,
                             rank=accelerator.process_index, world=accelerator.num_processes)
        return evaluate(accelerator.prepare(model), loader, accelerator, self.metrics)

    def predict(self, cfg, model, tokenizer, rows: pd.DataFrame, path: Path, batch_size: int):
        """(prediction name, [(row index, value)]) for the rows of a ``translrec predict`` input file."""

        from translrec_dist.training.distributed import inference_accelerator

        examples = rows_to_examples(rows, cfg, path)
        refuse_empty_text(examples, rows, path)
        examples = examples.assign(example_id=np.arange(len(examples)), label=0.0)
        if examples["text_pair"].isna().all():
            examples = examples.drop(columns="text_pair")
        ds = tokenize_frame(examples, tokenizer, cfg.data.max_length)
        accelerator = inference_accelerator(cfg.train.precision)
        loader = eval_loader(ds, PadCollator(tokenizer.pad_token_id), batch_size=batch_size, rank=0, world=1)
        ids, scores, _ = predict_scores(accelerator.prepare(model), loader, accelerator)
        return self.prediction_name, list(zip(ids.tolist(), self.to_prediction(scores).tolist(), strict=True))


class CtrTask(PointwiseTask):
    name = "ctr"
    score_expression = "sigmoid(logit), the click probability"
    prediction_name = "probability"
    # one logit under which transformers' text-classification pipeline applies a sigmoid and its models (HF
    # Trainer) train with BCEWithLogitsLoss (transformers' pipelines/text_classification.py, loss_utils.py)
    problem_type = "multi_label_classification"

    def validate(self, cfg) -> None:
        super().validate(cfg)
        d = cfg.data
        if d.format != "text_label" and d.negatives_per_positive == 0 and d.positive_threshold is None:
            raise ConfigError(f"data.negatives_per_positive: ctr with no negatives and no positive_threshold has "
                              f"only one class; set data.negatives_per_positive>=1 ({cfg.source})")

    def planned_parameters(self, cfg, encoder_params: int, encoder_config) -> int:
        return encoder_params + encoder_config.hidden_size + 1  # the one-unit head

    def loss(self, model, batch: dict) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(**batch).float(), batch["labels"])

    def metrics(self, scores, labels) -> dict:
        return binary_metrics(scores, labels)

    def to_prediction(self, scores: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-scores))


class RatingTask(PointwiseTask):
    name = "rating"
    labels = "rating"
    score_expression = "the logit, the predicted rating"
    prediction_name = "rating"
    problem_type = "regression"  # the pipeline's score is the logit; HF Trainer trains with MSE

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if cfg.data.format == "text_label":
            raise ConfigError(f"task: data.format=text_label holds binary labels; use task=ctr ({cfg.source})")

    def loss(self, model, batch: dict) -> torch.Tensor:
        return F.mse_loss(model(**batch).float(), batch["labels"])

    def metrics(self, scores, labels) -> dict:
        return regression_metrics(scores, labels)

    def initial_bias(self, data: TaskData | None) -> float | None:
        # Rating regression starts at the mean rating, so early steps learn structure, not the offset.
        return data.extra.label_mean if data is not None else None


def rows_to_examples(rows: pd.DataFrame, cfg, path: Path) -> pd.DataFrame:
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
