"""Everything about processes in one place: backend choice, the Accelerator, stop requests."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DistributedType, GradientAccumulationPlugin, InitProcessGroupKwargs

from translrec_dist.training.precision import log_precision
from translrec_dist.training.preemption import stop_signal
from translrec_dist.training.preflight import preflight
from translrec_dist.training.zero_config import (
    fill_hidden_size_buckets,
    resolve_deepspeed_config,
    select_deepspeed_json,
)

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


def tell_deepspeed_cpu_without_gpu() -> None:
    """Without a GPU the package runs on the CPU. Saying so to DeepSpeed before anything imports it (accelerate's
    ``unwrap_model`` does, even in a DDP run) keeps its detection warning off stdout, where commands print JSON."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def inference_accelerator(precision: str) -> Accelerator:
    """One process on the GPU if there is one: ``translrec evaluate`` and ``predict`` with an export."""
    tell_deepspeed_cpu_without_gpu()
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=log_precision(precision))


def build_accelerator(cfg: RunConfig) -> Accelerator:
    """The Accelerator for this run: DDP, or DeepSpeed ZeRO when the run config asks for it.

    The strategy comes from the run config (``train.distributed``/``train.deepspeed_config``), so any launcher
    that starts N processes (``accelerate launch``, ``torchrun``, ``srun``) runs the same strategy. All checks
    that can fail run here, before the process group starts.
    """
    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    preflight(cfg, world)
    tell_deepspeed_cpu_without_gpu()
    precision = log_precision(t.precision, deepspeed=select_deepspeed_json(cfg) is not None)
    ds_config = resolve_deepspeed_config(cfg, world, precision)
    plugin = None
    if ds_config is not None:
        plugin = deepspeed_plugin(ds_config, t.grad_accum)
    elif world > 1 and not torch.cuda.is_available():
        # Started by torchrun/srun/`accelerate launch --multi_gpu` on CPUs: without this flag accelerate sets
        # up no data parallelism (DistributedType.NO) and each rank trains its own model.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    # Without a GPU no backend is picked for DeepSpeed and each process would think it is alone.
    launched = world > 1 or plugin is not None
    backend = "gloo" if launched and not torch.cuda.is_available() else None
    pg = InitProcessGroupKwargs(backend=backend, timeout=timedelta(seconds=t.collective_timeout_s))
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=t.grad_accum, sync_with_dataloader=False),
        log_with=t.report_to or None,
        project_dir=cfg.output_dir,
        kwargs_handlers=[pg],
        step_scheduler_with_optimizer=False,
        deepspeed_plugin=plugin,
    )
    if plugin is not None:
        # accelerate registers the DeepSpeed config with transformers even with zero3_init_flag=False, and then
        # from_config/from_pretrained build the encoder under zero.Init (other initial weights than under DDP).
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    if world > 1 and accelerator.distributed_type == DistributedType.NO:
        raise RuntimeError(f"{world} processes were started but accelerate set up no data parallelism; check the "
                           f"launcher config (distributed_type) and ACCELERATE_* environment")
    return accelerator


def deepspeed_plugin(ds_config: dict, grad_accum: int) -> DeepSpeedPlugin:
    stage = ds_config["zero_optimization"]["stage"]
    if os.environ.pop("ACCELERATE_USE_CPU", None) is not None:
        # A CPU launcher config sets this; it would silently turn DeepSpeed off (accelerate state.py). On a
        # machine without GPUs DeepSpeed runs on its CPU accelerator with gloo instead.
        log.info("ignoring ACCELERATE_USE_CPU: DeepSpeed ZeRO-%d runs on its CPU accelerator", stage)
    # The plugin is built from the resolved dict alone; accelerate would reject the launcher's list of inline
    # DeepSpeed fields (e.g. mixed_precision) next to a config file.
    os.environ.pop("ACCELERATE_CONFIG_DS_FIELDS", None)
    if "LOCAL_RANK" not in os.environ:
        # One process started without a launcher (e.g. ZeRO-Offload on one GPU): DeepSpeed still needs the
        # torch.distributed environment a launcher would set.
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR=os.environ.get("MASTER_ADDR",
                          "127.0.0.1"), MASTER_PORT=os.environ.get("MASTER_PORT", str(free_port())))
    offload = ds_config["zero_optimization"]
    log.info("DeepSpeed ZeRO-%d (offload optimizer: %s, parameters: %s)", stage,
             (offload.get("offload_optimizer") or {}).get("device", "none"),
             (offload.get("offload_param") or {}).get("device", "none"))
    # zero3_init_flag=False: every rank builds the full model exactly as under DDP (same initial weights) and
    # DeepSpeed partitions it in prepare(); BERT-large fits one host many times over.
    return DeepSpeedPlugin(hf_ds_config=ds_config, gradient_accumulation_steps=grad_accum, zero_stage=stage,
                           zero3_init_flag=False, zero3_save_16bit_model=stage == 3)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def size_zero_buckets(accelerator: Accelerator, hidden_size: int) -> None:
    """Before ``prepare``: fill the DeepSpeed bucket sizes left "auto" from the model's hidden size."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        fill_hidden_size_buckets(plugin.deepspeed_config, hidden_size)


def zero_stage(accelerator: Accelerator) -> int | None:
    """The ZeRO stage of a DeepSpeed run, None under DDP."""
    plugin = accelerator.state.deepspeed_plugin
    return None if plugin is None else int(plugin.deepspeed_config["zero_optimization"]["stage"])


def stop_requested_here(stop_file: Path) -> bool:
    """This rank got SIGTERM/SIGUSR1, or (rank 0 only) a STOP file exists; ``agree`` shares the vote.

    Only rank 0 looks for the file: every rank stat-ing it every step is metadata load on a shared file system
    at scale, and the all-reduce in ``agree`` already carries rank 0's vote to all others."""
    return stop_signal() is not None or (global_rank() == 0 and stop_file.exists())


def global_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def agree(accelerator: Accelerator, *counts: float | torch.Tensor) -> list[float]:
    """Per-rank counts summed over all ranks in one all-reduce: every decision that all ranks must take at the
    same step (skip a non-finite step, stop) costs one host sync per optimizer step, not one each."""
    dev = accelerator.device
    stacked = torch.stack([torch.as_tensor(c, dtype=torch.float32, device=dev).reshape(()) for c in counts])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="sum")
    return stacked.tolist()


def decided_by_main(decide: Callable[[], T]) -> T:
    """``decide()`` runs on the main process only and every rank gets its result, or its exception, so that all
    ranks take the same decision from one reading of the file system. A collective once the process group is up
    (every rank must call it); a plain call before that."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
            torch.distributed.get_world_size() == 1:
        return decide()
    box: list = [None]
    if torch.distributed.get_rank() == 0:
        try:
            box[0] = (True, decide())
        except Exception as e:  # the others must not wait in the broadcast for an answer that never comes
            box[0] = (False, e)
    torch.distributed.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


# How long a leaving rank idles for gloo's threads to drop their last work (see shutdown_process_group).
COLLECTIVE_RELEASE_S = 0.5


def shutdown_process_group() -> None:
    """Leave the process group together, then give gloo's worker threads time to let go of the last collectives.

    - A rank exiting while the rendezvous host (another node's agent) is already gone aborts in the store's
      threads (SIGABRT, a failed job after a finished run): hence the barrier.
    - A gloo worker thread drops a finished collective, whose tensors are Python objects, a moment after the
      main thread has woken from it (the final barrier keeps the collectives before it alive). If the
      interpreter is already finalizing by then, taking the GIL ends that thread with ``pthread_exit`` inside
      a destructor: "terminate called without an active exception", SIGABRT. Seen in about 1 of 30
      2-process runs on a loaded 2-core machine. Sleeping releases the GIL for the thread to finish.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        time.sleep(COLLECTIVE_RELEASE_S)


def end_run(accelerator: Accelerator) -> None:
    """``Accelerator.end_training`` (trackers finished, group destroyed), leaving as ``shutdown_process_group``."""
    for tracker in accelerator.trackers:
        tracker.finish()
    shutdown_process_group()


def world_info() -> str:
    return f"rank {os.environ.get('RANK', 0)}/{os.environ.get('WORLD_SIZE', 1)}"
