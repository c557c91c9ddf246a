"""What a run may do with an output dir: whose it is, and what an earlier run's files may be removed.

A directory is the user's unless a run marked it (``RunDir.marker``, written when a run starts). A non-empty
directory without the marker is refused with exit 2 naming what is there, whatever the flags: translrec neither
deletes nor overwrites anything in it. An unmarked directory written by a translrec version before the marker
is adopted (marked) only when every entry in it is a name the layout knows and ``checkpoints/`` holds a complete
checkpoint and nothing but checkpoints (``_earlier_unmarked_run``).

In a marked directory, like ``transformers``' ``overwrite_output_dir`` and Lightning's ``ckpt_path``: a directory
with checkpoints (or an export) is never started over silently. Without ``train.resume_from`` the run stops before
any work and names both ways on; ``train.overwrite=true`` starts over and removes every file the earlier run
wrote; ``train.resume_from=auto`` that finds no complete checkpoint starts over too (the SLURM scripts always pass
it) and removes the earlier run's results, never its checkpoints. Only paths ``RunDir`` names are removed.

A run that fails on its input (exit 2 before training starts) in a directory it found new or empty leaves it as
it found it (``discard_fresh``): no empty folder, no ``config.yaml`` or tokenizer of a run that never ran.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from translrec_dist import safe_io
from translrec_dist.errors import ConfigError, UserError
from translrec_dist.run_dir import RunDir

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Opened:
    """What ``open_run_dir`` found: the checkpoint to resume (None: a fresh start), and whether the directory was
    new (``created``: from which folder up) or empty (``fresh``: everything in it now is this run's)."""

    resume: Path | None
    fresh: bool
    created: Path | None  # the topmost folder of output_dir this run creates (None: output_dir existed)


def open_run_dir(accelerator, train_cfg, run: RunDir) -> Opened:
    """Every rank: refuse a directory that is not a run's, and to start over an earlier run (before any work);
    find the checkpoint to resume; on the main process clear a fresh start's stale results and mark the directory."""
    from translrec_dist.training.checkpoint import resolve_resume
    from translrec_dist.training.distributed import decided_by_main

    fresh, created = decided_by_main(lambda: claim(run))  # exit 2 on every rank, nothing touched
    decided_by_main(lambda: refuse_to_start_over(train_cfg, run))
    resume = resolve_resume(train_cfg.resume_from, run)
    if accelerator.is_main_process:
        if resume is None:
            clear_for_fresh_start(train_cfg, run)
        mark(run)
    accelerator.wait_for_everyone()
    return Opened(resume, fresh, created)


def claim(run: RunDir) -> tuple[bool, Path | None]:
    """(fresh, the topmost folder to be created) for a directory a run may use; raises for one that holds the
    user's files."""
    root = run.root
    if not root.exists() and not root.is_symlink():
        top = root.absolute()
        while not top.parent.exists():
            top = top.parent
        return True, top
    if not root.is_dir():
        raise ConfigError(f"output_dir={root} exists and is not a directory; choose another output_dir")
    if run.marker.is_file():
        return False, None
    entries = sorted(os.listdir(root))
    if not entries:
        return True, None
    if _earlier_unmarked_run(run, entries):
        log.info("output_dir=%s: a run of an earlier translrec version (no %s marker); adopting it", root,
                 run.marker.name)
        return False, None
    entries.sort(key=lambda e: e in run.names())  # what no run ever writes first: it is surely the user's
    shown = [e + "/" if (root / e).is_dir() else e for e in entries[:8]]
    more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
    raise ConfigError(f"output_dir={root} is not empty and no translrec run wrote it (no {run.marker.name} marker): "
                      f"it holds {', '.join(shown)}{more}. translrec deletes and overwrites nothing there; choose a "
                      f"new or empty output_dir")


def _earlier_unmarked_run(run: RunDir, entries: list[str]) -> bool:
    # A run of a version before the marker: nothing but the layout's names, and checkpoints/ holding complete
    # checkpoints only. A folder that merely reuses a name (a config.yaml, a report/) has no trainer_state.json.
    if not set(entries) <= run.names() or not run.checkpoints.is_dir() or run.checkpoints.is_symlink():
        return False
    if not all(RunDir.is_checkpoint_name(p.name) and p.is_dir() and not p.is_symlink()
               for p in run.checkpoints.iterdir()):
        return False
    return bool(run.complete_checkpoints())


def mark(run: RunDir) -> None:
    """Main process: create the directory if needed and write the marker (kept when it is there already)."""
    if not run.root.exists():
        run.root.mkdir(parents=True)
    if not run.marker.is_file():
        safe_io.write_json(run.marker, {"created_by": "translrec", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime())}, run.root)


def discard_fresh(run: RunDir, opened: Opened | None) -> None:
    """Main process, after a failure before training: leave a directory this run found new or empty as it was."""
    if opened is None or not opened.fresh or not run.root.is_dir():
        return
    for path in [*run.outputs(), run.tracker_run, run.tensorboard, run.marker]:
        remove_layout_path(run.root, path)
    if opened.created is not None:
        folder = run.root.absolute()
        try:
            while folder.is_relative_to(opened.created):
                folder.rmdir()  # empty folders this run made, up to the first one
                folder = folder.parent
        except OSError:  # someone put a file there meanwhile: theirs, kept
            pass


def prepare_in_run_dir(cfg, work: Callable[[], T]) -> T:
    """``translrec prepare`` into OUTPUT_DIR/prepared (the default ``data.cache_dir``): the directory is claimed and
    marked as by a run (the run that follows finds it marked), and left as it was when the input is refused."""
    if cfg.data.cache_dir or int(os.environ.get("RANK", "0")) != 0:
        return work()
    run = RunDir(cfg.output_dir)
    fresh, created = claim(run)
    mark(run)
    try:
        return work()
    except UserError:
        discard_fresh(run, Opened(None, fresh, created))
        raise


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
    was removed. With ``overwrite`` everything it wrote, else its results (checkpoints and caches stay). Only in a
    directory that ``claim`` accepted (marked, or about to be)."""
    removed = []
    for path in run.outputs() if train_cfg.overwrite else run.results():
        if remove_layout_path(run.root, path):
            removed.append(path)
    if removed:
        why = "train.overwrite=true" if train_cfg.overwrite else "no checkpoint to resume from"
        log.info("starting over in %s (%s): removed %s", run.root, why, ", ".join(p.name for p in removed))
    return removed


def remove_layout_path(root: Path, path: Path) -> bool:
    """Remove a file or folder the layout names under ``root``; a link there is removed, never followed."""
    if not path.resolve().is_relative_to(root.resolve()) and not path.is_symlink():
        raise ConfigError(f"{path} resolves outside output_dir={root}; not removing it. Remove it yourself")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        return False
    return True
