"""``translrec export CHECKPOINT_DIR OUT_DIR``: any checkpoint (DDP or ZeRO-1/2/3) -> the ``final/`` export format.

ZeRO checkpoints hold one partition per rank; DeepSpeed's own ``zero_to_fp32`` route merges them into full fp32
weights in one process, without a process group (it needs about twice the checkpoint size in RAM), with every
shard unpickled ``weights_only`` (``safe_zero``). The run's
``config.yaml`` (two levels up) says how to rebuild the model and tokenizer around the weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from translrec_dist.config import RunConfig, load_config
from translrec_dist.errors import ConfigError
from translrec_dist.training.checkpoint import STATE_FILE

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
    run_dir = checkpoint_dir.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir / 'config.yaml'} not found: {checkpoint_dir} must sit in RUN/checkpoints/ "
                          f"next to the run's config.yaml")
    # trust_remote_code is the user's (--trust-remote-code), never what a checkpoint's run config says
    return load_config(run_dir / "config.yaml", [*_PLAIN, f"output_dir={run_dir}",
                                                 f"model.trust_remote_code={str(trust_remote_code).lower()}"])


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path, trust_remote_code: bool = False) -> Path:
    from translrec_dist.data.tokenize import load_tokenizer
    from translrec_dist.models.cross_encoder import build_model, save_export

    ckpt, out = Path(checkpoint_dir), Path(out_dir)
    if not (ckpt / STATE_FILE).is_file():
        raise ConfigError(f"{ckpt} is not a complete checkpoint (no {STATE_FILE}); pass RUN/checkpoints/step_N")
    cfg = run_config_of(ckpt, trust_remote_code)
    m = cfg.model
    if m.tiny is not None and not m.init_from:
        tokenizer = load_tokenizer(str(Path(cfg.output_dir) / "tokenizer"))
    else:
        tokenizer = load_tokenizer(m.init_from or m.name_or_path, m.trust_remote_code)
    state_dict = consolidated_state_dict(ckpt)
    model = build_model(cfg, tokenizer)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{ckpt} does not match the model of {cfg.source}: missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}")
    out.mkdir(parents=True, exist_ok=True)
    save_export(out, model.state_dict(), model, tokenizer, cfg)
    log.info("exported %s -> %s (%d tensors)", ckpt, out, len(state_dict))
    return out
