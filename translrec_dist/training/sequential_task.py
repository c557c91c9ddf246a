"""The ``sequential`` task for the training loop: user-sequence windows, the SASRec-style model, its
full-catalog evaluator, its export, and the hook that refreshes cached catalog text vectors.

Training rows are the windows of ``data.sequences.training_windows`` as a map-style dataset, so the
loop's per-rank split and exact resume (skip to the step's batch of a seeded permutation) apply as to
every other task. In the frozen regime the item text vectors are encoded once and cached in the run
directory (``OUTPUT_DIR/item_vectors``); the model then trains at the speed of an ID model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from translrec_dist.config import RunConfig
from translrec_dist.data import read_source
from translrec_dist.data.sequences import build_sequence_data, training_windows
from translrec_dist.errors import ConfigError
from translrec_dist.models.cross_encoder import CONFIG_FILE
from translrec_dist.sequential_run import build_sequential, evaluate_sequences, item_text_vectors

log = logging.getLogger(__name__)
WEIGHTS_FILE = "sequential.safetensors"
CATALOG_FILE = "catalog.json"
ENCODER_DIR = "item_encoder"


class WindowCollator:
    """Windows as one tensor; ``attention_mask`` marks trained positions, so the loop's tokens/s meter
    reports target positions/s, and ``labels`` (the window ids) its samples/s."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        windows = torch.tensor([r["window"] for r in rows], dtype=torch.long)
        ids = torch.tensor([int(r["example_id"]) for r in rows])
        return {"windows": windows, "example_id": ids, "labels": ids,
                "attention_mask": (windows[:, :-1] >= 0) & (windows[:, 1:] >= 0)}


def build_sequential_task(cfg: RunConfig):
    from translrec_dist.training.tasks import TaskSetup

    data = build_sequence_data(*read_source(cfg), cfg)
    s = cfg.model.sequence
    vectors = None
    if s.item_repr != "id":
        vectors = item_text_vectors(cfg, data, Path(cfg.output_dir) / "item_vectors")
    model = build_sequential(cfg, data, vectors)
    windows = training_windows(data.train, cfg.data.max_history, s.window_stride)
    train = datasets.Dataset.from_dict({"example_id": np.arange(len(windows)), "window": windows.tolist()})
    log.info("sequential: %d training windows (%d target positions), catalog %d items", len(windows),
             int(((windows[:, :-1] >= 0) & (windows[:, 1:] >= 0)).sum()), data.num_items)

    def evaluate(prepared, split: str, accelerator) -> dict:
        # Every rank ranks all eval users (a few thousand rows against the catalog); rank 0's figures are kept.
        model_ = accelerator.unwrap_model(prepared)
        return {**evaluate_sequences(model_, data, split, cfg.data.max_history, cfg.eval.micro_batch_size,
                                     tuple(cfg.eval.ks)), "num_items": data.num_items}

    def save(out_dir: Path, state_dict: dict, unwrapped, tokenizer, cfg_: RunConfig) -> None:
        save_sequential_export(out_dir, state_dict, unwrapped, data, cfg_)

    def refresh(unwrapped, step: int) -> None:
        if unwrapped.text_items is not None and step % s.refresh_every == 0:
            unwrapped.refresh_catalog()

    return TaskSetup(None, {"train": train}, WindowCollator(), model, evaluate, save, refresh)


def save_sequential_export(out_dir: Path, state_dict: dict, model, data, cfg: RunConfig) -> None:
    """``final/``: weights (safetensors, the catalog's text vectors included so new items can be added
    beside them), the catalog (ids and texts), the config; with text, the encoder and its tokenizer in
    plain Hugging Face format for new items' text."""
    from translrec_dist.config import dump_config, export_config

    out_dir.mkdir(parents=True, exist_ok=True)
    encoder_state = {k[len("text_items.encoder."):]: v for k, v in state_dict.items()
                     if k.startswith("text_items.encoder.")}
    weights = {k: v.detach().contiguous().cpu() for k, v in state_dict.items() if not k.startswith("text_items.")}
    if model.items.use_text:
        weights["items.text"] = model.items.text.detach().contiguous().cpu()
    save_file(weights, str(out_dir / WEIGHTS_FILE))
    (out_dir / CATALOG_FILE).write_text(json.dumps({"item_ids": [str(i) for i in data.item_ids],
                                                    "texts": [str(t) for t in data.item_text.to_numpy()],
                                                    "popularity": data.popularity.tolist()}))
    if model.items.use_text:
        from translrec_dist.sequential_run import item_encoder

        encoder, tokenizer = item_encoder(cfg, [str(t) for t in data.item_text.to_numpy()])
        if encoder_state:  # the encoder trained (top_layers / full): its trained weights, not the pretrained
            encoder.load_state_dict(encoder_state)
        encoder.save_pretrained(str(out_dir / ENCODER_DIR), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir / ENCODER_DIR))
    dump_config(export_config(cfg), out_dir / CONFIG_FILE)


def load_sequential_export(model_dir: str | Path):
    """(model, catalog dict, cfg) from a sequential export directory."""
    from translrec_dist.config import load_config
    from translrec_dist.models.sequential import SequenceModel

    model_dir = Path(model_dir)
    for f in (WEIGHTS_FILE, CONFIG_FILE, CATALOG_FILE):
        if not (model_dir / f).is_file():
            raise ConfigError(f"{model_dir} is not a sequential export (missing {f}); pass RUN_DIR/final")
    cfg = load_config(model_dir / CONFIG_FILE)
    weights = load_file(str(model_dir / WEIGHTS_FILE))
    catalog = json.loads((model_dir / CATALOG_FILE).read_text())
    text = weights.pop("items.text", None)
    n = len(catalog["item_ids"])
    model = SequenceModel(cfg.model.sequence, n, cfg.data.max_history, text.shape[1] if text is not None else 0)
    model.load_state_dict(weights, strict=False)
    if text is not None:
        model.items.set_text_vectors(text)
    model.set_popularity(torch.tensor(catalog["popularity"], dtype=torch.float64))
    return model.eval(), catalog, cfg
