"""Which numeric precision a run computes in, on the device it has, and the autocast context for it.

``train.precision`` names what the user asks for; ``resolve_precision`` says what the hardware gives:
- GPU: as asked (accelerate checks the GPU can do it).
- CPU, ``bf16``: autocast to bfloat16 when the CPU has native bf16 instructions (AVX512-BF16 or AMX; oneDNN
  uses them for matmuls, about 2x on BERT fine-tuning, issue 15), otherwise fp32: emulated bf16 is slower
  than fp32.
- CPU, ``fp16``: fp32. fp16 autocast on CPU has no fast kernels and needs loss scaling; bf16 has fp32's range
  and needs none, so the log line points to ``train.precision=bf16`` when the CPU has it. Switching formats
  behind the user's back would change the numbers of a run they asked to be fp16.
- DeepSpeed on CPU: fp32 (DeepSpeed's CPU accelerator path is tested here in fp32 only).

Weights, optimizer states and exports stay fp32 in every case: autocast changes only the dtype of the
matmuls' inputs, so a bf16 run writes the same files as an fp32 run.
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_bf16_support() -> str | None:
    """Why this CPU runs bf16 natively (a short reason), or None when it does not."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # exact: oneDNN's own check also says yes on AVX512 CPUs that only emulate bf16
        flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), set())
        found = [f for f in BF16_CPU_FLAGS if f in flags]
        return "CPU flags " + "+".join(found) if found else None
    try:
        return "oneDNN reports native bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


def resolve_precision(requested: str, on_gpu: bool | None = None, deepspeed: bool = False) -> tuple[str, str]:
    """(precision accelerate gets: "no" | "bf16" | "fp16", why) for ``train.precision=requested``."""
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    if requested == "no":
        return "no", "train.precision=no"
    if on_gpu:
        return requested, f"train.precision={requested} on GPU"
    support = cpu_bf16_support()
    if deepspeed:
        return "no", f"train.precision={requested}: DeepSpeed on CPU runs in fp32"
    if requested == "bf16":
        if support:
            return "bf16", f"train.precision=bf16 and native bf16 on this CPU ({support})"
        return "no", "train.precision=bf16 but this CPU has no native bf16 (avx512_bf16/amx_bf16), where bf16 " \
                     "is slower than fp32; training in fp32"
    hint = " (this CPU has native bf16: use train.precision=bf16)" if support else ""
    return "no", f"train.precision=fp16 has no fast kernels on CPU; training in fp32{hint}"


def log_precision(requested: str, **kwargs) -> str:
    precision, why = resolve_precision(requested, **kwargs)
    log.info("precision: %s (%s)", {"no": "fp32"}.get(precision, precision), why)
    return precision


def autocast(precision: str, device: torch.device | str):
    """The autocast context for inference outside an Accelerator (serving, encoding); a no-op for fp32."""
    device_type = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp16" and device_type == "cuda":
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()
