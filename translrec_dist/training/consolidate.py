"""``translrec export CHECKPOINT_DIR OUT_DIR``: any checkpoint (DDP or ZeRO-1/2/3) -> the ``final/`` export format.

ZeRO checkpoints hold one partition per rank; DeepSpeed's own ``zero_to_fp32`` route merges them into full fp32
weights in one process, without a process group (it needs about twice the checkpoint size in RAM), with every
shard unpickled ``weights_only`` (``safe_zero``). The run's config (two levels up) says how to rebuild the
model, through its task, and the tokenizer around the weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from translrec_dist.config.loader import load_config
from translrec_dist.config.schema import RunConfig
from translrec_dist.errors import ConfigError
from translrec_dist.models.export import write_export
from translrec_dist.models.source import model_source
from translrec_dist.run_dir import RunDir

if TYPE_CHECKING:
    from translrec_dist.tasks.base import Task

log = logging.getLogger(__name__)
# A checkpoint is consolidated in one process whatever strategy wrote it.
_PLAIN = ["train.distributed=ddp", "train.offload=none", "train.deepspeed_config=null", "train.resume_from=null"]


def consolidated_state_dict(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    if (checkpoint_dir / "model.safetensors").is_file():  # DDP: accelerate saved the full model
        return load_file(str(checkpoint_dir / "model.safetensors"))
    if (checkpoint_dir / "latest").is_file():  # DeepSpeed: partitions per rank, tag named in `latest`
        from translrec_dist.training.safe_zero import zero_state_dict_weights_only

        return zero_state_dict_weights_only(checkpoint_dir)
    raise ConfigError(f"{checkpoint_dir} holds neither model.safetensors (DDP) nor a DeepSpeed checkpoint "
                      f"(latest + pytorch_model/); pass a RUN/checkpoints/step_N directory")


def run_config_of(checkpoint_dir: Path, trust_remote_code: bool = False) -> RunConfig:
    run = RunDir.of_checkpoint(checkpoint_dir)
    if not run.config.is_file():
        raise ConfigError(f"{run.config} not found: {checkpoint_dir} must sit in RUN/checkpoints/ next to the "
                          f"run's config")
    # trust_remote_code is the user's (--trust-remote-code), never what a checkpoint's run config says
    return load_config(run.config, [*_PLAIN, f"output_dir={run.root}",
                                    f"model.trust_remote_code={str(trust_remote_code).lower()}"])


def export_checkpoint(checkpoint_dir: Path, out_dir: Path, cfg: RunConfig, task: Task) -> Path:
    """Rebuild the run's model through its task, load the consolidated weights, write the export. ``cfg``: the
    run's config (``run_config_of``); ``task``: its task (``program.export_checkpoint`` finds it)."""
    from translrec_dist.data.tokenize import load_tokenizer

    ckpt, out = Path(checkpoint_dir), Path(out_dir)
    if not RunDir.is_complete(ckpt):
        raise ConfigError(f"{ckpt} is not a complete checkpoint (no {RunDir.state_file(ckpt).name}); pass "
                          f"RUN/checkpoints/step_N")
    kind, path = model_source(cfg)
    if kind == "tiny":
        tokenizer = load_tokenizer(str(RunDir(cfg.output_dir).tokenizer))
    else:
        tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
    state_dict = consolidated_state_dict(ckpt)
    model = task.build_model(cfg, tokenizer, None, state_dict)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{ckpt} does not match the {cfg.task} model of {cfg.source}: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    write_export(out, model.state_dict(), model, tokenizer, cfg, task)
    log.info("exported %s -> %s (%d tensors)", ckpt, out, len(state_dict))
    return out
