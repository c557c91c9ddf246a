"""Checkpoints: ``RUN/checkpoints/step_N/`` written complete or not at all, and checked before use (layout:
``run_dir.RunDir``).

Every rank calls ``accelerator.save_state`` into ``step_N.tmp`` (under ZeRO it is a collective and each
rank writes its shard); the main process records every file's size and SHA-256 in ``checkpoint_files.json``,
adds ``trainer_state.json`` last and renames the directory. A crash mid-save leaves only a ``.tmp``
directory, which ``resume_from=auto`` never picks. A checkpoint damaged later (a truncated or overwritten
file: a full disk, a file system fault, a copy cut short) fails its check at resume: ``auto`` skips it with a
warning and takes the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from translrec_dist import safe_io
from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import FILES_MANIFEST, STATE_FILE, RunDir
from translrec_dist.training.distributed import decided_by_main

log = logging.getLogger(__name__)


def resolve_resume(resume_from: str | None, run: RunDir) -> Path | None:
    """The checkpoint to resume from: ``auto`` takes the newest complete one that passes its file check.

    Once the process group is up, the main process alone reads the files and every rank gets its answer (a
    collective then: call it on every rank)."""
    if resume_from is None:
        return None
    return decided_by_main(lambda: _resolve_resume(resume_from, run))


def _resolve_resume(resume_from: str, run: RunDir) -> Path | None:
    if resume_from == "auto":
        done = run.complete_checkpoints()
        skipped = []
        for path in reversed(done):
            problem = checkpoint_problem(path)
            if problem is None:
                return path
            log.warning("skipping checkpoint %s: %s; trying the one before it", path, problem)
            skipped.append(f"{path.name} ({problem})")
        if skipped:
            raise ConfigError(f"train.resume_from=auto: no intact checkpoint in {run.checkpoints}: "
                              f"{'; '.join(skipped)}. Restore one from a backup, or move them away to start over")
        return None
    path = Path(resume_from)
    if not RunDir.is_complete(path):
        raise ConfigError(f"train.resume_from={path} is not a complete checkpoint (no "
                          f"{RunDir.state_file(path).name}); use auto or one of {run.checkpoints}/step_N")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ConfigError(f"train.resume_from={path} is damaged: {problem}. Use train.resume_from=auto (the newest "
                          f"intact checkpoint) or another step_N")
    return path


def checkpoint_problem(path: Path) -> str | None:
    """Why the files of a complete checkpoint cannot be trusted, or None. Sizes first (cheap, catches
    truncation), then SHA-256. Checkpoints written before ``checkpoint_files.json`` existed are not checked."""
    try:
        state = read_trainer_state(path)
        if not isinstance(state, dict) or "step" not in state:
            return f"{STATE_FILE} has no step"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{STATE_FILE} is unreadable ({e})"
    listing = path / FILES_MANIFEST
    if not listing.is_file():
        log.info("%s has no %s (written by an older version); its files are not checked", path, FILES_MANIFEST)
        return None
    try:
        expected = json.loads(listing.read_text())["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        return f"{FILES_MANIFEST} is unreadable ({e})"
    for name, meta in expected.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != meta["bytes"]:
            return f"{name} has {f.stat().st_size} bytes, {meta['bytes']} were written"
    digests = _sha256_all([path / name for name in expected])
    for name, digest in zip(expected, digests, strict=True):
        if digest != expected[name]["sha256"]:
            return f"{name} does not match the SHA-256 recorded when it was written"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _sha256_all(paths: list[Path]) -> list[str]:
    # hashlib releases the GIL on large buffers: threads hash several shard files at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(_sha256, paths))


def write_file_manifest(directory: Path) -> None:
    """Size and SHA-256 of every file the ranks wrote into ``directory`` (main process, after save_state)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in (STATE_FILE, FILES_MANIFEST))
    digests = _sha256_all(files)
    listing = {str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": d}
               for p, d in zip(files, digests, strict=True)}
    safe_io.write_json(directory / FILES_MANIFEST, {"files": listing}, directory, indent=1)


def save_checkpoint(accelerator, run: RunDir, step: int, state: dict, keep: int) -> Path:
    final = save_state_atomically(accelerator, run.checkpoint(step), state)
    if accelerator.is_main_process:
        for old in run.complete_checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(RunDir.universal(old), ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_state_atomically(accelerator, final: Path, state: dict) -> Path:
    """Every rank saves into ``final.tmp`` (a collective under ZeRO); the main process renames it."""
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        root = RunDir.of_checkpoint(final).root
        safe_io.check_inside(tmp, root)  # a link planted at step_N.tmp (or checkpoints/) is refused, not followed
        shutil.rmtree(tmp, ignore_errors=True)
        safe_io.make_dirs(tmp, root)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_file_manifest(tmp)
        safe_io.write_json(RunDir.state_file(tmp), state, tmp, indent=2)  # last: it marks the checkpoint complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(path: Path) -> dict:
    return json.loads(RunDir.state_file(path).read_text())


def load_checkpoint(accelerator, path: Path) -> dict:
    """DeepSpeed unpickles its shards with ``weights_only=False``; a checkpoint may be someone else's (a copied
    run, a shared folder), so every load here is weights-only with DeepSpeed's and accelerate's types allowed."""
    from translrec_dist.training.safe_zero import START_NEW_RUN, checkpoint_loads

    state = read_trainer_state(path)
    with checkpoint_loads(path, START_NEW_RUN):
        accelerator.load_state(str(path))
    return state
