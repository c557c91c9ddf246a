"""What each rank really holds: parameter, gradient and optimizer-state bytes read from the (DeepSpeed) engine.

Written once per run (``RunDir.memory``) after the first optimizer step, so a ZeRO run shows its
partitioning (ZeRO-3: each rank's ``ds_tensor`` partition) and ``bench/memory.py`` compares strategies.

- parameters: tensors the module holds on this rank (ZeRO-3: the rank's partition plus the small parameters
  DeepSpeed keeps whole, ``stage3_param_persistence_threshold``).
- gradients: the gradient buffer this rank reduces into (DDP and ZeRO-1: full size; ZeRO-2/3: its partition).
- optimizer: AdamW moments and step counters, plus the fp32 master partition DeepSpeed keeps beside the model.
- ddp_bucket_bytes: DDP's all-reduce buckets (from DDP's logging data), kept apart from the figures above.
"""

from __future__ import annotations

from pathlib import Path

import torch

from translrec_dist import safe_io

FIELDS = ("param_numel", "param_partition_numel", "param_bytes", "grad_bytes", "optimizer_bytes", "ddp_bucket_bytes")


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(_bytes(s.values()) for s in opt.state.values())


def rank_model_state(model, optimizer, zero_stage: int | None) -> dict[str, int]:
    """Bytes this rank holds; ``model``/``optimizer`` as returned by ``accelerator.prepare``."""
    inner = optimizer.optimizer  # AcceleratedOptimizer -> torch optimizer, or DeepSpeed's ZeRO optimizer
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    full_numel = sum(getattr(p, "ds_numel", p.numel()) for p in params)
    if zero_stage is None or zero_stage == 0:
        opt = inner if zero_stage is None else inner.optimizer
        return {"param_numel": full_numel, "param_partition_numel": full_numel, "param_bytes": _bytes(params),
                "grad_bytes": _bytes(trainable), "optimizer_bytes": _state_bytes(opt),
                "ddp_bucket_bytes": ddp_bucket_bytes(model)}
    torch_opt = inner.optimizer
    if zero_stage == 3:
        partition = sum(p.ds_tensor.numel() for p in params)
        held = sum(p.data.numel() * p.data.element_size() + p.ds_tensor.numel() * p.ds_tensor.element_size()
                   for p in params)
        master = inner.fp32_partitioned_groups_flat
        grad_bytes = _bytes(master)
    else:
        partition = full_numel
        held = _bytes(params)
        master = inner.single_partition_of_fp32_groups
        grad_bytes = _bytes(trainable) if zero_stage == 1 else _bytes(master)
    # The fp32 master partition is a copy beside the module's tensors (the torch optimizer steps it).
    param_ids = {id(p) for p in params}
    extra_master = sum(t.numel() * t.element_size() for t in master if id(t) not in param_ids)
    return {"param_numel": full_numel, "param_partition_numel": partition, "param_bytes": held,
            "grad_bytes": grad_bytes, "optimizer_bytes": _state_bytes(torch_opt) + extra_master,
            "ddp_bucket_bytes": 0}


def ddp_bucket_bytes(model) -> int:
    """DDP's all-reduce buckets: a second copy of the gradients unless gradient_as_bucket_view=True."""
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return 0
    data = model._get_ddp_logging_data()
    if data.get("gradient_as_bucket_view"):
        return 0
    return sum(int(b) for b in str(data.get("bucket_sizes", "")).split(",") if b.strip())


def write_memory_report(accelerator, model, optimizer, zero_stage: int | None, path: Path) -> list[dict]:
    """Gather every rank's figures (a collective: all ranks call it) and write them to ``path`` on the main one."""
    mine = rank_model_state(model, optimizer, zero_stage)
    local = torch.tensor([[float(mine[k]) for k in FIELDS]], dtype=torch.float64, device=accelerator.device)
    rows = accelerator.gather(local).cpu().tolist() if accelerator.num_processes > 1 else local.cpu().tolist()
    ranks = [{"rank": r, **{k: int(v) for k, v in zip(FIELDS, row, strict=True)}} for r, row in enumerate(rows)]
    if accelerator.is_main_process:
        strategy = "ddp" if zero_stage is None else f"zero{zero_stage}"
        safe_io.write_json(path, {"strategy": strategy, "world_size": accelerator.num_processes, "ranks": ranks},
                           path.parent, indent=2)
    return ranks
