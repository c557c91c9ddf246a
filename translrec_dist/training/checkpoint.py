"""Checkpoints: ``RUN/checkpoints/step_N/`` written complete or not at all (layout: ``run_dir.RunDir``).

Every rank calls ``accelerator.save_state`` into ``step_N.tmp`` (under ZeRO it is a collective and each
rank writes its shard); the main process adds the trainer state file last and renames the directory. A
crash mid-save leaves only a ``.tmp`` directory, which ``resume_from=auto`` never picks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir


def resolve_resume(resume_from: str | None, run: RunDir) -> Path | None:
    if resume_from is None:
        return None
    if resume_from == "auto":
        done = run.complete_checkpoints()
        return done[-1] if done else None
    path = Path(resume_from)
    if not RunDir.is_complete(path):
        raise ConfigError(f"train.resume_from={path} is not a complete checkpoint (no "
                          f"{RunDir.state_file(path).name}); use auto or one of {run.checkpoints}/step_N")
    return path


def save_checkpoint(accelerator, run: RunDir, step: int, state: dict, keep: int) -> Path:
    final = save_state_atomically(accelerator, run.checkpoint(step), state)
    if accelerator.is_main_process:
        for old in run.complete_checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_state_atomically(accelerator, final: Path, state: dict) -> Path:
    """Every rank saves into ``final.tmp`` (a collective under ZeRO); the main process renames it."""
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        RunDir.state_file(tmp).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(path: Path) -> dict:
    return json.loads(RunDir.state_file(path).read_text())


def load_checkpoint(accelerator, path: Path) -> dict:
    state = read_trainer_state(path)
    accelerator.load_state(str(path))
    return state
