"""Use an export: ``translrec evaluate`` (metrics on a config's split) and ``translrec predict`` (scores).

What evaluating or scoring means is the export's task's business (``Task.evaluate_export``, ``Task.predict``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist.data.tables import read_table
from translrec_dist.errors import ConfigError, DataError
from translrec_dist.evaluation.predict_checks import check_output_file
from translrec_dist.models.export import read_export
from translrec_dist.training.distributed import inference_accelerator

if TYPE_CHECKING:
    from translrec_dist.config import RunConfig


def evaluate_export(cfg: RunConfig, model_dir: Path, split: str = "test") -> dict:
    model, tokenizer, export_cfg, task = read_export(model_dir, trust_remote_code=cfg.model.trust_remote_code)
    if export_cfg.task != cfg.task:
        raise ConfigError(f"{model_dir} was trained with task={export_cfg.task}, the config ({cfg.source}) has "
                          f"task={cfg.task}; pass the config of that run")
    accelerator = inference_accelerator(cfg.train.precision)
    metrics = task.evaluate_export(cfg, model, tokenizer, split, accelerator)
    return {**metrics, "split": split, "model": str(model_dir)}


def predict_file(model_dir: str, input_path: str, output: str | None, batch_size: int = 64,
                 trust_remote_code: bool = False) -> None:
    check_output_file(output)  # before loading or scoring anything
    model, tokenizer, cfg, task = read_export(model_dir, trust_remote_code=trust_remote_code)
    path = Path(input_path)
    rows = read_table(path, keep_lines=True)
    if rows.empty:
        raise DataError(f"{path}: no rows to score")
    key, scored = task.predict(cfg, model, tokenizer, rows, path, batch_size)
    out = open(output, "w") if output else sys.stdout
    try:
        for i, score in scored:
            record = {k: _plain(v) for k, v in rows.iloc[int(i)].items() if k not in ("text", "text_pair", "_line")}
            out.write(json.dumps({**record, key: float(score)}) + "\n")
    finally:
        if output:
            out.close()


def _plain(v):
    return v.item() if hasattr(v, "item") else v
