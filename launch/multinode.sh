#!/usr/bin/env bash
# Run on every node (cloud VMs by hand, or from a SLURM script under srun):
#   launch/multinode.sh NNODES NODE_RANK MASTER_ADDR MASTER_PORT CONFIG [key=value ...]
# Starts NPROC_PER_NODE processes here (default: the GPU count, or 1 on a CPU-only node) with DeepSpeed's
# `standard` multi-node launcher and c10d rendezvous at MASTER_ADDR:MASTER_PORT. The strategy comes from the
# run config; the default accelerate config is multi_node_zero3.yaml (ZeRO-3 unless the run config says
# otherwise); ACCELERATE_CONFIG picks another one. Environment: PYTHON, NPROC_PER_NODE, ACCELERATE_CONFIG.
set -euo pipefail
usage="usage: launch/multinode.sh NNODES NODE_RANK MASTER_ADDR MASTER_PORT CONFIG [key=value ...]"
[[ $# -ge 5 ]] || { echo "$usage" >&2; exit 2; }
nnodes=$1 node_rank=$2 master_addr=$3 master_port=$4 config=$5; shift 5
# Every number is digits only and rewritten in base 10 before bash arithmetic: $(( )) runs command substitutions
# hidden in a value such as 'a[$(cmd)]', and reads 010 as octal 8 (09 is an error) where accelerate reads 10 and 9.
decimal() {  # decimal NAME VALUE -> the value in base 10, or exit 2 naming it
  [[ $2 =~ ^[0-9]{1,18}$ ]] || { echo "$1 must be a whole number, got '${2:0:40}' ($usage)" >&2; exit 2; }
  echo $((10#$2))
}
nnodes=$(decimal NNODES "$nnodes")  # one per line: set -e sees only the last substitution of a line
node_rank=$(decimal NODE_RANK "$node_rank")
master_port=$(decimal MASTER_PORT "$master_port")
(( nnodes >= 1 )) || { echo "NNODES must be at least 1" >&2; exit 2; }
(( master_port >= 1 && master_port <= 65535 )) || { echo "MASTER_PORT=$master_port is not a TCP port" >&2; exit 2; }
(( node_rank < nnodes )) || { echo "NODE_RANK=$node_rank must be below NNODES=$nnodes" >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
if [[ -z ${NPROC_PER_NODE:-} ]]; then
  NPROC_PER_NODE=$("$python" -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
NPROC_PER_NODE=$(decimal NPROC_PER_NODE "$NPROC_PER_NODE")
(( NPROC_PER_NODE >= 1 )) || { echo "NPROC_PER_NODE must be a positive integer, got '$NPROC_PER_NODE'" >&2; exit 2; }
acc="${ACCELERATE_CONFIG:-$repo/configs/accelerate/multi_node_zero3.yaml}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$python" -m accelerate.commands.launch --config_file "$acc" \
  --num_machines "$nnodes" --machine_rank "$node_rank" --num_processes $(( nnodes * NPROC_PER_NODE )) \
  --main_process_ip "$master_addr" --main_process_port "$master_port" \
  -m translrec_dist train "$config" "$@"
