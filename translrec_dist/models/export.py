"""Every export (``RUN/final``, ``translrec export``) is written and read here, with the task it is handed.

An export is a directory with the task's weights in plain Hugging Face format (the task's export adapter
decides the layout: an encoder plus a head, two towers, a masked-LM, a sequence model with its catalog), the
tokenizer files, and ``translrec.yaml``: the run's config without its training strategy, from which the
program (``translrec_dist.program``) finds the task and rebuilds the model. ``AutoModel.from_pretrained(DIR)``
loads the (first) encoder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist.config.loader import dump_config, export_config, load_config
from translrec_dist.data.tokenize import load_tokenizer
from translrec_dist.errors import ConfigError
from translrec_dist.models.model_card import write_model_card
from translrec_dist.models.safety import user_trust
from translrec_dist.models.usage import for_directory
from translrec_dist.run_dir import RunDir
from translrec_dist.safe_io import write_tree

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.tasks.base import Task, TaskData

CONFIG_FILE = "translrec.yaml"


def write_export(out_dir: Path, state_dict: dict, model, tokenizer, cfg: RunConfig, task: Task,
                 data: TaskData | None = None, root: Path | None = None) -> None:
    """Write an export from a full (consolidated) state dict and the unwrapped model. Main process only.
    ``data``: the run's data when it is at hand (the trainer), so the adapter need not read the source again.

    Every writer (the task's weights, ``save_pretrained``, the card) fills a new folder, which is then moved into
    ``out_dir`` inside ``root`` (default: ``out_dir`` itself) without following a link planted there (``safe_io``).
    """
    out_dir = Path(out_dir)
    run = RunDir(cfg.output_dir)
    name = run.final.name if out_dir.resolve() == run.final_tmp.resolve() else out_dir.name  # renamed when done

    def write(stage: Path) -> None:
        task.write_export(stage, state_dict, model, cfg, data)
        tokenizer.save_pretrained(str(stage))
        dump_config(export_config(cfg), stage / CONFIG_FILE)
        loads = task.write_interop(stage, cfg)  # files other tools load, then the card that says how
        write_model_card(stage, cfg, for_directory(task.usage(cfg, loads), name), loads)

    write_tree(out_dir, root or out_dir, write)


def read_export_config(model_dir: Path, trust_remote_code: bool = False) -> RunConfig:
    """The export's config; ``trust_remote_code`` is the user's choice, never the export's (``models.safety``)."""
    for f in ("config.json", CONFIG_FILE):
        if not (model_dir / f).is_file():
            raise ConfigError(f"{model_dir} is not a translrec export (missing {f}); pass RUN_DIR/final or run "
                              f"`translrec export` on a checkpoint")
    return user_trust(load_config(model_dir / CONFIG_FILE), trust_remote_code)


def read_export_model(model_dir: Path, cfg: RunConfig, task: Task):
    """(model in eval mode, tokenizer) through the task's export adapter."""
    tokenizer = load_tokenizer(str(model_dir), cfg.model.trust_remote_code)
    return task.read_export(model_dir, cfg).eval(), tokenizer
