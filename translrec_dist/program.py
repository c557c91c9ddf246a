"""The program assembled at the top: the one place that asks the task registry for a run's task.

Loading a config is pure (``config.loader``: YAML -> typed config). Here the task is found by name, its own
config checks run, and it is handed to the layers that need it: the Trainer, checkpoint export, export
reading, evaluation/prediction and serving (a ``Recommender`` over the task's scorer). Nothing below this
module imports the registry; the CLI (``cli.py``) and the Python API call these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist.config.loader import load_config
from translrec_dist.errors import ConfigError
from translrec_dist.tasks.registry import get_task

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.serving.recommender import Recommender
    from translrec_dist.tasks.base import Task


def task_for(cfg: RunConfig) -> Task:
    """The run's task (unknown name: a ConfigError with "did you mean"), after its own config checks."""
    task = get_task(cfg.task, cfg.source)
    task.validate(cfg)
    return task


def validate_task(cfg: RunConfig) -> None:
    task_for(cfg)


def load_run(path: str | Path | None, overrides: list[str] | tuple = ()) -> tuple[RunConfig, Task]:
    """A config file plus dotted overrides -> (validated config, its task)."""
    cfg = load_config(path, overrides)
    return cfg, task_for(cfg)


def train(cfg: RunConfig):
    from translrec_dist.training.trainer import train as run_training

    return run_training(cfg, task_for(cfg))


def write_export(out_dir: Path, state_dict: dict, model, tokenizer, cfg: RunConfig, data=None) -> None:
    from translrec_dist.models.export import write_export as write

    write(out_dir, state_dict, model, tokenizer, cfg, task_for(cfg), data)


def read_export(model_dir: str | Path, expect: str | None = None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer, cfg, task) of an export directory.

    ``expect="recommend"``: the caller serves recommendations; an export whose task has no scorer is refused
    before any weights are read. ``trust_remote_code`` is the user's choice, never the export's own config.
    """
    from translrec_dist.models.export import read_export_config, read_export_model

    model_dir = Path(model_dir)
    cfg = read_export_config(model_dir, trust_remote_code)
    task = task_for(cfg)
    if expect == "recommend" and not task.serves_recommend:
        raise ConfigError(f"{model_dir} was trained with task={cfg.task}, which does not recommend items; "
                          f"retrieval commands need a model trained with a task that does (retrieval, sequential)")
    model, tokenizer = read_export_model(model_dir, cfg, task)
    return model, tokenizer, cfg, task


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path, trust_remote_code: bool = False) -> Path:
    from translrec_dist.training.consolidate import export_checkpoint as export
    from translrec_dist.training.consolidate import run_config_of

    cfg = run_config_of(Path(checkpoint_dir), trust_remote_code)
    return export(Path(checkpoint_dir), Path(out_dir), cfg, task_for(cfg))


def load_recommender(model_dir: str | Path, device: str | None = None, index: bool = True,
                     trust_remote_code: bool = False, cls: type[Recommender] | None = None) -> Recommender:
    """A ``Recommender`` (or ``cls``, a subclass) over the export's scorer; ``index``: load the saved index (or
    encode the catalog)."""
    from translrec_dist.serving.recommender import Recommender

    model, tokenizer, cfg, task = read_export(model_dir, expect="recommend", trust_remote_code=trust_remote_code)
    rec = (cls or Recommender)(task.scorer(model, tokenizer, cfg, Path(model_dir), device), cfg, Path(model_dir))
    if index:
        rec.load_index()
    return rec


def evaluate_export(cfg: RunConfig, model_dir: str | Path, split: str = "test") -> dict:
    """Metrics of an export on ``split`` of ``cfg``'s data (``translrec evaluate``)."""
    from translrec_dist.evaluation.scoring import evaluate_export as evaluate

    export = read_export(model_dir, trust_remote_code=cfg.model.trust_remote_code)
    return evaluate(cfg, export, Path(model_dir), split)


def predict_file(model_dir: str | Path, input_path: str, output: str | None, batch_size: int = 64,
                 trust_remote_code: bool = False) -> None:
    """Scores of an input file's rows (``translrec predict``)."""
    from translrec_dist.evaluation.scoring import predict_file as predict

    predict(lambda: read_export(model_dir, trust_remote_code=trust_remote_code), input_path, output, batch_size)
