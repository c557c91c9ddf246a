"""Checks of a loaded config against the world it runs in: files it names, the launcher's environment and the
number of processes. They run before any process group starts or any data is read, so a bad setting stops
every rank at once with a message, instead of one rank failing inside a collective.

``translrec_dist.config`` checks the config on its own and reads nothing; everything that looks outside it
is here (which also keeps the config package free of imports from training/).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist.errors import ConfigError
from translrec_dist.training.zero_config import select_deepspeed_json

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


def preflight(cfg: RunConfig, world: int) -> None:
    """Every check that needs the file system, the environment or the world size, in one call."""
    where = cfg.source
    out = Path(cfg.output_dir)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)  # a file may sit above it too
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"output_dir: {existing} is a file, not a directory ({where}); choose another "
                          f"output_dir or move the file away")
    resume = cfg.train.resume_from
    if resume not in (None, "auto") and not Path(resume).is_dir():
        raise ConfigError(f"train.resume_from: {resume} is not a directory ({where}); use auto, null or a "
                          f"checkpoint directory")
    select_deepspeed_json(cfg)  # missing/malformed JSON, stage outside 0-3, parameter offload below stage 3
    check_world_size(cfg, world)
    check_trackers(cfg)


# train.report_to name -> the pip package that provides it
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet-ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}


def check_trackers(cfg: RunConfig) -> None:
    """A requested tracker that is not installed stops the run before it starts: accelerate would skip it with
    a warning, and a run the user meant to watch would go unrecorded."""
    if not cfg.train.report_to:
        return
    import accelerate.utils

    missing = [name for name in cfg.train.report_to if not getattr(accelerate.utils, f"is_{name}_available")()]
    if missing:
        packages = " ".join(TRACKER_PACKAGES[name] for name in missing)
        raise ConfigError(f"train.report_to: {', '.join(missing)} requested but not installed ({cfg.source}); "
                          f"pip install {packages}, or drop it from train.report_to")


def check_world_size(cfg: RunConfig, world_size: int) -> None:
    t = cfg.train
    if t.global_batch_size is not None:
        got = t.micro_batch_size * t.grad_accum * world_size
        if got != t.global_batch_size:
            raise ConfigError(
                f"train.global_batch_size={t.global_batch_size} but micro_batch_size={t.micro_batch_size} x "
                f"grad_accum={t.grad_accum} x world_size={world_size} = {got} ({cfg.source}). "
                f"Change train.grad_accum or train.micro_batch_size so the product matches."
            )
