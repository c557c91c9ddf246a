#!/usr/bin/env bash
# A real two-node SLURM on this one host, for tests and for trying the sbatch scripts by hand.
#
#   tests/slurm/cluster.sh start DIR   # install (Debian, root) if missing, start munged, slurmctld, 2 x slurmd
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch / squeue / scontrol talk to it
#   tests/slurm/cluster.sh stop DIR    # stop the daemons this script started (by PID), keep DIR
#
# Nodes n1 and n2 are two slurmd processes (-N n1 / -N n2) on ports 17001/17002, both at 127.0.0.1.
# Everything (config, state, spool, logs, PIDs) lives under DIR. Ports: slurmctld 17010, slurmd 17001+.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DIR}
dir=${2:?usage: cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
export SLURM_CONF=$dir/slurm.conf
ctld_port=${TRANSLREC_SLURMCTLD_PORT:-17010}
node_port=${TRANSLREC_SLURMD_PORT:-17001}

stop() {
  for name in slurmd-n2 slurmd-n1 slurmctld munged; do
    pidfile=$dir/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

install_if_missing() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return
  if [[ $(id -u) != 0 ]]; then
    echo "cluster.sh: slurmctld/slurmd/slurm-client/munge are not installed and this is not root" >&2; exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi  # a working munged is already there
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
      cp /run/munge/munged.pid "$dir/munged.pid"
      return
    fi
    sleep 0.1
  done
  echo "cluster.sh: munged did not come up" >&2; exit 1
}

write_conf() {
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  mkdir -p "$dir/state" "$dir/log" "$dir/spool"
  cat > "$SLURM_CONF" <<EOF
ClusterName=translrec
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd-%n.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
# Batch jobs are not requeueable unless submitted with --requeue (as slurm/*.sbatch are): the tests show that
# the scripts themselves make requeue work, not a site default (SLURM's own default is JobRequeue=1).
JobRequeue=0
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=30
InactiveLimit=0
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$node_port CPUs=$cpus RealMemory=2000 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((node_port + 1)) CPUs=$cpus RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

wait_idle() {
  for _ in $(seq 300); do
    states=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u || true)
    if [[ $(grep -c ' idle$' <<<"$states") == 2 ]]; then return; fi
    if grep -qE 'down|drain' <<<"$states"; then scontrol update nodename=n1,n2 state=resume 2>/dev/null || true; fi
    sleep 0.2
  done
  echo "cluster.sh: nodes not idle after 60 s: $states (logs in $dir/log)" >&2; exit 1
}

case $cmd in
  start)
    stop
    install_if_missing
    start_munge
    write_conf
    rm -rf "$dir/state"/* && mkdir -p "$dir/spool/n1" "$dir/spool/n2"
    slurmctld -D -i -f "$SLURM_CONF" >>"$dir/log/slurmctld.out" 2>&1 &
    echo $! > "$dir/slurmctld.pid"
    for node in n1 n2; do
      slurmd -D -N "$node" -f "$SLURM_CONF" >>"$dir/log/slurmd-$node.out" 2>&1 &
      echo $! > "$dir/slurmd-$node.pid"
    done
    wait_idle
    echo "SLURM up: export SLURM_CONF=$SLURM_CONF"
    ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
