#!/usr/bin/env bash
# One prepared GPU check (H100/H200 with CUDA PyTorch; nothing is downloaded): fine-tune throughput of a
# bert-base-sized cross-encoder with SDPA: DDP vs ZeRO-2 vs ZeRO-3 on one GPU, bf16 vs fp32, dynamic vs
# max_length padding, sequence 128 and 256, MFU; plus the sequential recommender when the package has
# `task: sequential` (else a "skipped" row). Prints one table; about 5 minutes (under 8) on an H100/H200.
#   bash bench/gpu.sh              # on the GPU machine, from the repo root, with the package installed
#   bash bench/gpu.sh --dry-run    # anywhere: CPU, tiny model, seconds (CI checks the plumbing this way)
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [[ "${1:-}" != "--dry-run" ]]; then
  python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec python bench/gpu_throughput.py "$@"
