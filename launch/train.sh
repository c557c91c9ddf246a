#!/usr/bin/env bash
# One entry point for every machine: launch/train.sh CONFIG [--accelerate-config FILE] [--nproc N] [overrides]
#   launch/train.sh configs/tiny_cpu.yaml                                   # 1 CPU process (or all GPUs)
#   launch/train.sh configs/tiny_cpu.yaml --nproc 2 train.distributed=zero3 # 2 processes, DeepSpeed ZeRO-3
# Without --accelerate-config it picks cpu.yaml / cpu_ddp.yaml / gpu.yaml / multi_gpu.yaml from the number of
# GPUs and processes; the strategy (ddp, zero1-3, offload) always comes from the run config. Environment:
# PYTHON (default python), MASTER_PORT (default 29500).
set -euo pipefail
usage="usage: launch/train.sh CONFIG [--accelerate-config FILE] [--nproc N] [key=value ...]"
[[ $# -ge 1 && $1 != -* ]] || { echo "$usage" >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
config=$1; shift
acc=""; nproc=""; overrides=()
while (($#)); do
  case $1 in
    --accelerate-config) acc=${2:?"$usage"}; shift 2 ;;
    --nproc) nproc=${2:?"$usage"}; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) overrides+=("$1"); shift ;;
  esac
done
gpus=$("$python" -c "import torch; print(torch.cuda.device_count())")
[[ -n $nproc ]] || nproc=$(( gpus > 0 ? gpus : 1 ))
# digits only, then base 10: $(( )) would run 'a[$(cmd)]' and read 010 as octal 8 where accelerate reads 10
[[ $nproc =~ ^[0-9]{1,9}$ ]] && nproc=$((10#$nproc)) && ((nproc >= 1)) ||
  { echo "--nproc must be a positive integer, got '${nproc:0:40}'" >&2; exit 2; }
port=${MASTER_PORT:-29500}
[[ $port =~ ^[0-9]{1,9}$ ]] && port=$((10#$port)) && ((port >= 1 && port <= 65535)) ||
  { echo "MASTER_PORT must be a TCP port (1-65535), got '${port:0:40}'" >&2; exit 2; }
if [[ -z $acc ]]; then
  if (( gpus > 0 )); then kind=$([[ $nproc -gt 1 ]] && echo multi_gpu || echo gpu)
  else kind=$([[ $nproc -gt 1 ]] && echo cpu_ddp || echo cpu); fi
  acc="$repo/configs/accelerate/$kind.yaml"
fi
[[ -f $acc ]] || { echo "accelerate config not found: $acc" >&2; exit 2; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$python" -m accelerate.commands.launch --config_file "$acc" --num_processes "$nproc" \
  --main_process_port "$port" -m translrec_dist train "$config" ${overrides[@]+"${overrides[@]}"}
