"""What a run may do with an output dir that already holds an earlier run's files.

Like ``transformers``' ``overwrite_output_dir`` and Lightning's ``ckpt_path``: a directory with checkpoints (or
an export) is never started over silently. Without ``train.resume_from`` the run stops before any work and
names both ways on; ``train.overwrite=true`` starts over and removes every file the earlier run wrote;
``train.resume_from=auto`` that finds no complete checkpoint starts over too (the SLURM scripts always pass it)
and removes the earlier run's results, never its checkpoints. Only paths ``RunDir`` names are removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir

log = logging.getLogger(__name__)


def open_run_dir(accelerator, train_cfg, run: RunDir) -> Path | None:
    """Every rank: refuse to start over an earlier run (before any work), find the checkpoint to resume, clear a
    fresh start's stale results on the main process. Returns the checkpoint, or None for a fresh start."""
    from translrec_dist.training.checkpoint import resolve_resume
    from translrec_dist.training.distributed import decided_by_main

    decided_by_main(lambda: refuse_to_start_over(train_cfg, run))  # exit 2 on every rank, nothing touched
    resume = resolve_resume(train_cfg.resume_from, run)
    if accelerator.is_main_process:
        if resume is None:
            clear_for_fresh_start(train_cfg, run)
        run.root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return resume


def refuse_to_start_over(train_cfg, run: RunDir) -> None:
    """Raise when a fresh run (no ``resume_from``, no ``overwrite``) would replace an earlier run's work."""
    if train_cfg.resume_from is not None or train_cfg.overwrite:
        return
    held = [p for p in (run.checkpoints, run.final) if p.is_dir() and any(p.iterdir())]
    if held:
        raise ConfigError(f"output_dir={run.root} holds an earlier run ({', '.join(p.name + '/' for p in held)}). "
                          f"Continue it with train.resume_from=auto, start over with train.overwrite=true (removes "
                          f"its checkpoints and results), or choose another output_dir")


def clear_for_fresh_start(train_cfg, run: RunDir) -> list[Path]:
    """On the main process, before a run that does not resume: remove what the earlier run left; returns what
    was removed. With ``overwrite`` everything it wrote, else its results (checkpoints and caches stay)."""
    removed = []
    for path in run.outputs() if train_cfg.overwrite else run.results():
        if _remove(run.root, path):
            removed.append(path)
    if removed:
        why = "train.overwrite=true" if train_cfg.overwrite else "no checkpoint to resume from"
        log.info("starting over in %s (%s): removed %s", run.root, why, ", ".join(p.name for p in removed))
    return removed


def _remove(root: Path, path: Path) -> bool:
    if not path.resolve().is_relative_to(root.resolve()) and not path.is_symlink():
        raise ConfigError(f"{path} resolves outside output_dir={root}; not removing it. Remove it yourself")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        return False
    return True
