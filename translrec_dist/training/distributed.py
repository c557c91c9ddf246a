"""Everything about processes in one place: backend choice, the Accelerator, stop requests."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin, InitProcessGroupKwargs

from translrec_dist.config import RunConfig
from translrec_dist.training.preemption import stop_signal

log = logging.getLogger(__name__)
STOP_FILE = "STOP"


def build_accelerator(cfg: RunConfig) -> Accelerator:
    t = cfg.train
    precision = t.precision
    if not torch.cuda.is_available() and precision != "no":
        log.info("train.precision=%s has no effect on CPU; training in fp32", precision)
        precision = "no"
    # Without a GPU no backend is picked for DeepSpeed and each process would think it is alone.
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    backend = "gloo" if launched and not torch.cuda.is_available() else None
    pg = InitProcessGroupKwargs(backend=backend, timeout=timedelta(seconds=t.collective_timeout_s))
    return Accelerator(
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=t.grad_accum, sync_with_dataloader=False),
        log_with=t.report_to or None,
        project_dir=cfg.output_dir,
        kwargs_handlers=[pg],
        step_scheduler_with_optimizer=False,
    )


def stop_requested(accelerator: Accelerator, output_dir: str) -> bool:
    """True on every rank as soon as any rank sees a STOP file or got SIGTERM/SIGUSR1 (all stop on the same step)."""
    local = stop_signal() is not None or Path(output_dir, STOP_FILE).exists()
    if accelerator.num_processes == 1:
        return local
    flag = torch.tensor([1.0 if local else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def world_info() -> str:
    return f"rank {os.environ.get('RANK', 0)}/{os.environ.get('WORLD_SIZE', 1)}"
