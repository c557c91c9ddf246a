# The body of slurm/train.sbatch and slurm/train_multinode.sbatch, sourced by the batch shell.
#
# Runs once, on the first node of the allocation: resolves the run's output_dir, starts one srun task per
# node (each task runs `accelerate launch` with its own node rank), traps the preemption warning signal,
# and requeues the job once the training processes have written a checkpoint.
#
# Environment (all optional):
#   TRANSLREC_CPU=1                  CPU-only cluster: ACCELERATE_USE_CPU=true, gloo (request --gpus-per-node=0)
#   TRANSLREC_NPROC_PER_NODE=N       training processes per node (default: GPUs on the node; 1 with TRANSLREC_CPU)
#   TRANSLREC_ACCELERATE_CONFIG=F    accelerate config file, e.g. DeepSpeed ZeRO with
#                                    `deepspeed_multinode_launcher: standard` (never pdsh under srun)
#   TRANSLREC_PYTHON=python3         interpreter with translrec-dist installed (default: python3 on PATH)
#   TRANSLREC_MASTER_ADDR / _PORT    rendezvous address (default: NodeAddr of the first node) and port
#                                    (default: 29811 + job id % 2000, so reruns of one job agree)
#   TRANSLREC_RDZV_WAIT_S=120        how long nodes > 0 wait for the master before failing with its address

if [[ $# -lt 1 ]]; then
  echo "usage: sbatch $0 CONFIG [key=value ...]   (see slurm/job.sh for environment variables)" >&2
  exit 2
fi
# Traps first: without one, a USR1 during start-up would end the job instead of requeueing it.
output_dir=
stop_file=
stop_requested=0
preempted=0
request_stop() {  # $1: why
  echo "translrec: $(date -u +%FT%TZ) $1; asking training to checkpoint and stop (${stop_file:-?})"
  stop_requested=1
  if [[ -n $stop_file ]]; then touch "$stop_file"; fi
}
trap 'preempted=1; request_stop "got SIGUSR1 (preemption or time limit ahead)"' USR1
trap 'request_stop "got SIGTERM (scancel or time limit)"' TERM

config=$1
shift
overrides=("$@")
py=${TRANSLREC_PYTHON:-python3}
# Numbers from the environment are checked before any (( )) or $(( )): bash arithmetic runs command
# substitutions hidden in a value such as 'a[$(cmd)]', and reads 010 as octal 8 (09 is an error) where SLURM and
# accelerate read decimal 10 and 9. Each is digits only and is rewritten in base 10 before any use.
for var in SLURM_RESTART_COUNT SLURM_JOB_ID SLURM_NNODES SLURM_GPUS_ON_NODE SLURM_CPUS_PER_TASK \
           TRANSLREC_NPROC_PER_NODE TRANSLREC_MASTER_PORT TRANSLREC_RDZV_WAIT_S; do
  [[ -z ${!var:-} ]] && continue
  if [[ ! ${!var} =~ ^[0-9]{1,18}$ ]]; then
    echo "translrec: $var='${!var:0:40}' is not a whole number; set it to one (or unset it)" >&2
    exit 2
  fi
  printf -v "$var" '%d' "$((10#${!var}))"
done
if [[ -n ${TRANSLREC_MASTER_PORT:-} ]] && ! ((TRANSLREC_MASTER_PORT >= 1 && TRANSLREC_MASTER_PORT <= 65535)); then
  echo "translrec: TRANSLREC_MASTER_PORT=$TRANSLREC_MASTER_PORT is not a TCP port (1-65535)" >&2
  exit 2
fi
restarts=${SLURM_RESTART_COUNT:-0}  # unset (not 0) on the first run
# Always resume: a re-submitted job continues its checkpoints instead of starting over, and a requeued one
# continues from its newest complete checkpoint (a checkpoint path given by hand holds for the first run only).
given_resume=0
for o in "${overrides[@]}"; do [[ $o == train.resume_from=* ]] && given_resume=1; done
if ((restarts > 0 || !given_resume)); then overrides+=("train.resume_from=auto"); fi

# validates the whole config now, on one node, before any node starts a process group
output_dir=$("$py" -m translrec_dist config-get "$config" output_dir "${overrides[@]}") || exit 2
stop_file=$("$py" -m translrec_dist run-status "$output_dir" --field stop_file) || exit 2
mkdir -p "$output_dir" && rm -f "$stop_file"
if ((preempted)); then scontrol requeue "$SLURM_JOB_ID"; exit 0; fi  # signalled before anything started
if ((stop_requested)); then exit 143; fi

first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# NodeAddr is what SLURM itself uses to reach the node; it resolves where bare node names may not
node_addr=$(scontrol show node "$first_node" -o | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
master_addr=${TRANSLREC_MASTER_ADDR:-${node_addr:-$first_node}}
master_port=${TRANSLREC_MASTER_PORT:-$((29811 + SLURM_JOB_ID % 2000))}
nnodes=$SLURM_NNODES

if [[ ${TRANSLREC_CPU:-0} == 1 ]]; then
  # CPU DDP needs it; under DeepSpeed it would turn the DeepSpeed state into plain CPU (gloo is set in Python)
  if [[ -z ${TRANSLREC_ACCELERATE_CONFIG:-} ]]; then export ACCELERATE_USE_CPU=true; fi
  nproc=${TRANSLREC_NPROC_PER_NODE:-1}
else
  nproc=${TRANSLREC_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}}
fi
if ! ((nproc >= 1)); then
  echo "translrec: no GPUs on $first_node; request them (--gpus-per-node=N) or set TRANSLREC_CPU=1" >&2
  exit 2
fi
world=$((nproc * nnodes))

launch=(--num_machines "$nnodes" --num_processes "$world" --main_process_ip "$master_addr"
        --main_process_port "$master_port")
if ((nnodes > 1)); then launch+=(--rdzv_backend c10d); fi
if [[ -n ${TRANSLREC_ACCELERATE_CONFIG:-} ]]; then
  launch+=(--config_file "$TRANSLREC_ACCELERATE_CONFIG")  # the file picks DeepSpeed / DDP
elif ((world > 1)); then
  launch+=(--multi_gpu)  # with ACCELERATE_USE_CPU=true this is CPU DDP over gloo
elif [[ ${TRANSLREC_CPU:-0} == 1 ]]; then
  launch+=(--cpu)
fi

echo "translrec: $(date -u +%FT%TZ) job $SLURM_JOB_ID SLURM_RESTART_COUNT=$restarts nodes=$SLURM_JOB_NODELIST" \
     "processes=$world ($nnodes x $nproc) master=$master_addr:$master_port output_dir=$output_dir"

# Runs on every node. Single-quoted so $SLURM_NODEID is expanded per node, not once here: expanded here,
# every node would claim rank 0 and the rendezvous would hang.
node_script='
py=$1 addr=$2 port=$3; shift 3
for var in SLURM_NODEID SLURM_NNODES; do  # set by srun on this node: checked here, where they are read
  if [[ ! ${!var:-} =~ ^[0-9]{1,18}$ ]]; then
    echo "translrec: $var='"'"'${!var:0:40}'"'"' on ${SLURMD_NODENAME:-this node} is not a whole number" >&2
    exit 2
  fi
  printf -v "$var" "%d" "$((10#${!var}))"
done
if ((SLURM_NNODES > 1 && SLURM_NODEID > 0)); then
  "$py" -m translrec_dist check-master "$addr" "$port" --timeout "${TRANSLREC_RDZV_WAIT_S:-120}" || exit 1
fi
echo "translrec: node $SLURMD_NODENAME is node rank $SLURM_NODEID of $SLURM_NNODES"
exec "$py" -m accelerate.commands.launch --machine_rank "$SLURM_NODEID" "$@"
'

# --kill-on-bad-exit: one failed node ends the step instead of leaving the others in a collective.
# --cpus-per-task: since SLURM 22.05 srun no longer inherits it from the allocation; without it, on clusters
# that bind CPUs, every rank and its loader workers share one CPU.
step_opts=(--nodes="$nnodes" --ntasks-per-node=1 --kill-on-bad-exit=1)
if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then step_opts+=(--cpus-per-task="$SLURM_CPUS_PER_TASK"); fi
srun "${step_opts[@]}" \
  bash -c "$node_script" translrec-node "$py" "$master_addr" "$master_port" "${launch[@]}" \
  -m translrec_dist train "$config" "${overrides[@]}" &
srun_pid=$!

# bash runs a trap only between commands: srun runs in the background, and wait_child tells a wait cut short by
# a trap from srun's real exit status
source "$(dirname "${BASH_SOURCE[0]}")/wait_child.sh"
while :; do
  if ((stop_requested)) && kill -0 "$srun_pid" 2>/dev/null; then
    # training deletes a stale STOP when it starts; keep it there until the processes have seen it
    [[ -e $stop_file ]] || touch "$stop_file"
    sleep 2 &
    wait $!
    continue
  fi
  wait_child "$srun_pid" && break
done
rc=$child_rc

# the final step is checkpointed: a late USR1 must not requeue a finished run
last_ckpt=$("$py" -m translrec_dist run-status "$output_dir" --field last_checkpoint 2>/dev/null)
finished=$("$py" -m translrec_dist run-status "$output_dir" --field finished 2>/dev/null || echo 0)
if ((rc == 0 && finished)); then
  echo "translrec: $(date -u +%FT%TZ) job $SLURM_JOB_ID finished; results in $output_dir (eval.json, final/)"
  exit 0
fi
if ((preempted && rc == 0)); then
  echo "translrec: $(date -u +%FT%TZ) stopped with checkpoint ${last_ckpt:-none}; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
resume="sbatch ${submitted:-slurm/train.sbatch} $config ${overrides[*]/train.resume_from=auto/}"
if ((stop_requested)); then
  echo "translrec: $(date -u +%FT%TZ) job $SLURM_JOB_ID cancelled; last complete checkpoint: ${last_ckpt:-none}." \
       "To continue: ${resume% } train.resume_from=auto"
elif ((rc != 0)); then
  echo "translrec: $(date -u +%FT%TZ) training FAILED (srun exit $rc) on job $SLURM_JOB_ID; the first failing" \
       "rank's error is above. Last complete checkpoint: ${last_ckpt:-none}. To continue from it:" \
       "${resume% } train.resume_from=auto" >&2
fi
exit "$rc"
