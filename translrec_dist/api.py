"""The Python API: what a notebook needs, in a few names.

    from translrec_dist import load_config, train, evaluate, predict, export, Recommender
    result = train("configs/tiny_cpu.yaml", {"train.max_steps": 20, "output_dir": "runs/nb"})
    result.metrics, result.export_dir
    Recommender.from_pretrained(result.export_dir).recommend(user="0")

A thin layer over the modules the CLI runs (``translrec train`` / ``evaluate``): the same config checks, the
same run directory, the same export. Overrides are a mapping of dotted keys to values (``{"train.lr": 3e-5}``),
or ``KEY=VALUE`` strings as on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from translrec_dist.config.loader import load_config as _load_config
from translrec_dist.config.schema import RunConfig
from translrec_dist.run_dir import RunDir

Overrides = Mapping[str, Any] | list[str] | tuple


def load_config(path: str | Path | None = None, overrides: Overrides = (), **more: Any) -> RunConfig:
    """A validated run config from a YAML file (or the defaults) and overrides (a mapping of dotted keys, or
    ``KEY=VALUE`` strings). ``**more``: further overrides as keyword arguments, ``seed=1``; a dotted key needs the
    mapping. Raises ``translrec_dist.errors.ConfigError`` naming the key and what to do."""
    if more:
        overrides = {**_as_mapping(overrides), **more}
    return _load_config(path, overrides)


@dataclass
class TrainResult:
    """What a finished (or stopped) ``train`` left: the final evaluation (``eval.json``), the export, the run."""

    output_dir: Path
    step: int
    stopped: bool  # stopped before the end (signal, STOP file, train.stop_after_steps): resume with resume_from=auto
    metrics: dict = field(default_factory=dict)  # empty when stopped
    early_stop: dict | None = None  # eval.patience ended it: the step, the best step and value it finished with

    @property
    def export_dir(self) -> Path | None:
        """``OUTPUT_DIR/final``: load it with ``Recommender.from_pretrained`` or the tools its model card names."""
        final = RunDir(self.output_dir).final
        return final if final.is_dir() and not self.stopped else None


def train(config: RunConfig | str | Path | None = None, overrides: Overrides = (), **more: Any) -> TrainResult:
    """Train a run in this process (``translrec train``); ``config``: a ``RunConfig`` or a YAML path. Overrides
    apply to a path, or to a ``RunConfig`` (re-validated from its values)."""
    from translrec_dist.program import train as run_training

    if isinstance(config, RunConfig):
        if overrides or more:
            cfg = _load_config(None, {**_flatten(config.to_dict()), **_as_mapping(overrides), **more})
            cfg.source = config.source
        else:
            cfg = config
    else:
        cfg = load_config(config, overrides, **more)
    result = run_training(cfg)
    return TrainResult(Path(cfg.output_dir), result.step, result.stopped, dict(result.metrics), result.early_stop)


def evaluate(model_dir: str | Path, split: str = "test", config: RunConfig | str | Path | None = None) -> dict:
    """Metrics of an export on a split of its data (``translrec evaluate``); ``config``: default the export's own
    (``translrec.yaml``), or another run config with the same task to evaluate on other data."""
    from translrec_dist.models.export import CONFIG_FILE
    from translrec_dist.program import evaluate_export

    if not isinstance(config, RunConfig):
        config = _load_config(config if config is not None else Path(model_dir) / CONFIG_FILE)
    return evaluate_export(config, Path(model_dir), split)


def predict(model_dir: str | Path, rows, batch_size: int = 64):
    """``translrec predict`` on a DataFrame (``text`` [+ ``text_pair``] columns, or ``user_id`` + ``item_id``) of a
    ctr or rating export: the rows with the prediction as a new column (``probability`` or ``rating``)."""
    import pandas as pd

    from translrec_dist.program import read_export

    model, tokenizer, cfg, task = read_export(model_dir)
    rows = pd.DataFrame(rows).reset_index(drop=True)
    name, scored = task.predict(cfg, model, tokenizer, rows, Path("<rows>"), batch_size)
    values = dict(scored)
    return rows.assign(**{name: [values.get(i) for i in range(len(rows))]})


def export(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """``translrec export``: a checkpoint (DDP or ZeRO-1/2/3, ``RUN/checkpoints/step_N``) as an export."""
    from translrec_dist.program import export_checkpoint

    return export_checkpoint(checkpoint, out_dir)


def _as_mapping(overrides: Overrides) -> dict:
    if isinstance(overrides, Mapping):
        return dict(overrides)
    from translrec_dist.config.loader import parse_yaml
    from translrec_dist.errors import ConfigError

    out = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (example: train.lr=3e-5)")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_yaml(value, f"override {item}") if value != "" else None
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; sections that are None stay whole (``model.tiny: null``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
