"""Consolidate a DeepSpeed ZeRO checkpoint without unpickling arbitrary objects.

DeepSpeed's ``zero_to_fp32`` loads every shard with ``torch.load(weights_only=False)``: a crafted shard runs
any code it likes on load, and ``translrec export`` is exactly the command one runs on a checkpoint someone
else wrote. The merge stays DeepSpeed's (one implementation of its partition layout), but every load in it
runs under ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` (torch's switch that overrides an explicit
``weights_only=False``) with only tensors, containers and DeepSpeed's own checkpoint types allowed.
"""

from __future__ import annotations

import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from translrec_dist.errors import ConfigError

# What a user can do with a checkpoint that resume refused to unpickle.
START_NEW_RUN = "it cannot be resumed: start a new run (another output_dir, or train.overwrite=true)"
FORCE, FORCE_NO = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def deepspeed_checkpoint_types() -> list:
    """The non-tensor classes DeepSpeed pickles into ZeRO-1/2/3 shards (fp32 and fp16/bf16 runs)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def allowed_types() -> list:
    """DeepSpeed's checkpoint types, and the numpy types of accelerate's RNG states (its own loader allows them:
    arrays and dtypes, no code)."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    return [*deepspeed_checkpoint_types(), *TORCH_SAFE_GLOBALS]


@contextmanager
def weights_only_loads():
    """Every ``torch.load`` inside is ``weights_only=True`` with DeepSpeed's types allow-listed."""
    if not hasattr(torch.serialization, "safe_globals"):
        raise ConfigError(f"translrec export of a ZeRO checkpoint needs torch >= 2.5 to load it safely "
                          f"(weights_only with an allow-list); this is torch {torch.__version__}")
    saved = {k: os.environ.pop(k, None) for k in (FORCE, FORCE_NO)}
    os.environ[FORCE] = "1"
    try:
        with torch.serialization.safe_globals(allowed_types()):
            yield
    finally:
        os.environ.pop(FORCE, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


@contextmanager
def checkpoint_loads(checkpoint_dir: Path, how: str):
    """``weights_only_loads`` for every load of a checkpoint someone else may have written (export, resume,
    the universal conversion); a refused global becomes exit 2 naming the file and the global. ``how``: what the
    user can do instead, for the message."""
    with weights_only_loads():
        try:
            yield
        except pickle.UnpicklingError as e:
            culprit, names = unsafe_globals(checkpoint_dir)
            what = f"it names {', '.join(names)}" if names else str(e).splitlines()[0][:200]
            raise ConfigError(f"{culprit or checkpoint_dir}: refusing to unpickle it: {what}, which is neither a "
                              f"tensor nor one of DeepSpeed's checkpoint types. translrec never runs code from a "
                              f"checkpoint; {how}") from None


def zero_state_dict_weights_only(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """Full fp32 weights of a ZeRO checkpoint (``latest`` + ``TAG/*_states.pt``), loaded weights-only."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = (checkpoint_dir / "latest").read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", tag) or set(tag) == {"."}:
        raise ConfigError(f"{checkpoint_dir / 'latest'}: {tag[:80]!r} is not a checkpoint tag (a folder name "
                          f"inside {checkpoint_dir}); the checkpoint is damaged")
    with checkpoint_loads(checkpoint_dir / tag, "if you wrote this checkpoint yourself with another DeepSpeed "
                                               "version, consolidate it with that version's zero_to_fp32.py"):
        try:
            return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=tag)
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise ConfigError(f"{checkpoint_dir}: not a readable DeepSpeed ZeRO checkpoint ({e})") from None


# What accelerate and DeepSpeed pickle into a checkpoint directory (shards, optimizer, scheduler, RNG states).
PICKLED = ("*.pt", "*.bin", "*.pkl", "*.pth")


def unsafe_globals(directory: Path) -> tuple[Path | None, list[str]]:
    """The first pickled file under ``directory`` naming a global outside the allow-list, and those names (read
    from its opcodes, nothing unpickled)."""
    with torch.serialization.safe_globals(allowed_types()):  # torch reports only what is not allowed
        for path in sorted(p for pattern in PICKLED for p in directory.rglob(pattern) if p.is_file()):
            try:
                found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except Exception:  # not a torch zip file at all: that file is the culprit too
                return path, []
            if found:
                return path, sorted(found)
    return None, []
