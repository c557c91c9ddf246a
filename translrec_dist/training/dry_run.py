"""``translrec config CONFIG [overrides]``: what a launch would use, without starting anything.

Three YAML documents: the resolved config, the launch (world size and where it came from, global batch), and
the DeepSpeed config after every "auto" the YAML owns is filled (``null`` for DDP). The DeepSpeed document is
JSON, so it can be cut out and diffed against a cluster's own file.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import yaml

from translrec_dist.errors import ConfigError
from translrec_dist.training.preflight import check_world_size

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


def world_size(nproc: int | None) -> tuple[int, str]:
    """(processes, where the number came from): --nproc, the launcher's WORLD_SIZE, the SLURM job, or 1."""
    if nproc is not None:
        if nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {nproc}")
        return nproc, "--nproc"
    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"]), "WORLD_SIZE"
    nodes, per_node = os.environ.get("SLURM_JOB_NUM_NODES"), os.environ.get("TRANSLREC_NPROC_PER_NODE")
    if nodes and per_node:  # what slurm/job.sh starts
        return int(nodes) * int(per_node), "SLURM_JOB_NUM_NODES x TRANSLREC_NPROC_PER_NODE"
    return 1, "default (one process; pass --nproc N)"


def describe_run(cfg: RunConfig, nproc: int | None = None, cpu: bool = False) -> str:
    from translrec_dist.training.zero_config import resolve_deepspeed_config

    world, origin = world_size(nproc)
    check_world_size(cfg, world)
    t = cfg.train
    precision = "no" if cpu else t.precision  # build_accelerator trains in fp32 without a GPU
    deepspeed = resolve_deepspeed_config(cfg, world, precision)
    launch = {"world_size": world, "world_size_from": origin,
              "global_batch": t.micro_batch_size * t.grad_accum * world,
              "global_batch_is": f"micro_batch_size {t.micro_batch_size} x grad_accum {t.grad_accum} x {world} "
                                 f"processes",
              "precision": precision, "strategy": t.distributed if deepspeed is not None else "ddp"}
    return "\n".join([f"# resolved config ({cfg.source})", yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip(),
                      "--- # launch", yaml.safe_dump(launch, sort_keys=False).rstrip(),
                      "--- # DeepSpeed config (null: plain DDP); Accelerate fills \"auto\" bucket sizes from the model",
                      json.dumps(deepspeed, indent=2)])
