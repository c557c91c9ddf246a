"""Every export (``RUN/final``, ``translrec export``) is written and read here.

An export is a directory with the task's weights in plain Hugging Face format (the task's ``write_export``
decides the layout: an encoder plus a head, two towers, a masked-LM), the tokenizer files, and
``translrec.yaml``: the run's config without its training strategy, from which the task (registry) and
the model are rebuilt. ``AutoModel.from_pretrained(DIR)`` loads the (first) encoder alone.
"""

from __future__ import annotations

from pathlib import Path

from translrec_dist.config import RunConfig, dump_config, export_config, load_config
from translrec_dist.data.tokenize import load_tokenizer
from translrec_dist.errors import ConfigError
from translrec_dist.models.model_card import write_model_card
from translrec_dist.models.safety import user_trust
from translrec_dist.models.usage import for_directory
from translrec_dist.run_dir import RunDir
from translrec_dist.safe_io import write_tree
from translrec_dist.tasks import get_task

CONFIG_FILE = "translrec.yaml"


def write_export(out_dir: Path, state_dict: dict, model, tokenizer, cfg: RunConfig, root: Path | None = None) -> None:
    """Write an export from a full (consolidated) state dict and the unwrapped model. Main process only.

    Every writer (the task's weights, ``save_pretrained``, the card) fills a new folder, which is then moved into
    ``out_dir`` inside ``root`` (default: ``out_dir`` itself) without following a link planted there (``safe_io``).
    """
    out_dir = Path(out_dir)
    task = get_task(cfg.task)
    run = RunDir(cfg.output_dir)
    name = run.final.name if out_dir.resolve() == run.final_tmp.resolve() else out_dir.name  # renamed when done

    def write(stage: Path) -> None:
        task.write_export(stage, state_dict, model)
        tokenizer.save_pretrained(str(stage))
        dump_config(export_config(cfg), stage / CONFIG_FILE)
        loads = task.write_interop(stage, cfg)  # files other tools load, then the card that says how
        write_model_card(stage, cfg, for_directory(task.usage(cfg, loads), name), loads)

    write_tree(out_dir, root or out_dir, write)


def read_export(model_dir: str | Path, expect: str | None = None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer, cfg, task) from an export directory.

    ``expect``: a capability the caller needs (``"recommend"``), checked before any weights are read.
    ``trust_remote_code`` is the user's choice, never the export's own ``translrec.yaml`` (``models.safety``).
    """
    model_dir = Path(model_dir)
    for f in ("config.json", CONFIG_FILE):
        if not (model_dir / f).is_file():
            raise ConfigError(f"{model_dir} is not a translrec export (missing {f}); pass RUN_DIR/final or run "
                              f"`translrec export` on a checkpoint")
    cfg = user_trust(load_config(model_dir / CONFIG_FILE), trust_remote_code)
    task = get_task(cfg.task)
    if expect == "recommend" and not task.serves_recommend:
        raise ConfigError(f"{model_dir} was trained with task={cfg.task}; retrieval commands need a model "
                          f"trained with task=retrieval")
    tokenizer = load_tokenizer(str(model_dir), cfg.model.trust_remote_code)
    model = task.read_export(model_dir, cfg)
    return model.eval(), tokenizer, cfg, task
