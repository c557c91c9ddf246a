"""Checkpoints: ``output_dir/checkpoints/step_N/`` written complete or not at all.

Every rank calls ``accelerator.save_state`` into ``step_N.tmp`` (under ZeRO it is a collective and each
rank writes its shard); the main process adds ``trainer_state.json`` last and renames the directory. A
crash mid-save leaves only a ``.tmp`` directory, which ``resume_from=auto`` never picks.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from translrec_dist.errors import ConfigError

STATE_FILE = "trainer_state.json"
BEST_DIR = "best"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from: str | None, output_dir: str | Path) -> Path | None:
    if resume_from is None:
        return None
    if resume_from == "auto":
        done = complete_checkpoints(checkpoint_root(output_dir))
        return done[-1] if done else None
    path = Path(resume_from)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"train.resume_from={path} is not a complete checkpoint (no {STATE_FILE}); "
                          f"use auto or one of {checkpoint_root(output_dir)}/step_N")
    return path


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict, keep: int) -> Path:
    root = checkpoint_root(output_dir)
    final = save_state_atomically(accelerator, root / f"step_{step}", state)
    if accelerator.is_main_process:
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def best_checkpoint(output_dir: str | Path) -> Path:
    """``checkpoints/best``: the state with the best validation ``eval.best_metric`` (never pruned)."""
    return checkpoint_root(output_dir) / BEST_DIR


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
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text())


def load_checkpoint(accelerator, path: Path) -> dict:
    state = read_trainer_state(path)
    accelerator.load_state(str(path))
    return state
