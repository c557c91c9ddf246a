"""Experiment trackers (``train.report_to``): one project for all runs, one tracker run per training run.

The tracker's run id lives in ``OUTPUT_DIR/tracker_run.json``. A resumed run (``train.resume_from``, e.g. a
requeued SLURM job) reads it back, so W&B continues the same run (``id`` + ``resume="allow"``) and TensorBoard
appends to the same directory (``OUTPUT_DIR/tensorboard/<run id>/<project>``). Accelerate's ``project_name`` is
the W&B *project* (PITFALLS), so it gets ``train.project``, never the output folder's name.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist import safe_io
from translrec_dist.run_dir import RunDir

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)
DEFAULT_PROJECT = "translrec"


def tracker_run(cfg: RunConfig, out_dir: Path) -> dict:
    """The run's identity: kept from an earlier attempt when resuming, new otherwise (main process only)."""
    path = RunDir(out_dir).tracker_run
    project = cfg.train.project or DEFAULT_PROJECT
    name = cfg.train.run_name or Path(cfg.output_dir).resolve().name
    if cfg.train.resume_from is not None and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("project") == project:
            log.info("tracker: continuing run %s (%s)", saved["id"], saved["name"])
            return saved
    run = {"id": uuid.uuid4().hex[:12], "name": name, "project": project}
    safe_io.write_json(path, run, out_dir)
    return run


def init_tracking(accelerator, cfg: RunConfig, out_dir: Path, config: dict) -> dict | None:
    """``accelerator.init_trackers`` for ``train.report_to``; returns the tracker run (None without trackers)."""
    if not cfg.train.report_to:
        return None
    run = tracker_run(cfg, out_dir) if accelerator.is_main_process else None
    if accelerator.is_main_process:  # only the main process holds trackers
        accelerator.project_configuration.logging_dir = str(RunDir(out_dir).tensorboard / run["id"])
    init_kwargs = {"wandb": {"name": run["name"], "id": run["id"], "resume": "allow", "dir": str(out_dir)}
                   if run else {}}
    accelerator.init_trackers(cfg.train.project or DEFAULT_PROJECT, config=config, init_kwargs=init_kwargs)
    return run
