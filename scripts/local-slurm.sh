#!/usr/bin/env bash
# A Slurm cluster on this machine, for the `slurm` tests and for trying a cluster sweep:
#
#   eval "$(bash scripts/local-slurm.sh up /tmp/local-slurm)"   # starts it; exports SLURM_CONF
#   python train.py -m hydra/launcher=slurm lr=0.1,0.2 ...
#   bash scripts/local-slurm.sh down /tmp/local-slurm           # stops it, by its pid files
#
# `up <folder> 2` makes it two nodes: two slurmd daemons on this host (Slurm's multiple-slurmd
# mode), named after the host and `localhost` so that both names resolve here (Lightning finds
# the DDP master by the first node's name), with the cores and memory shared between them.
# SLURMCTLD_PORT and SLURMD_PORT choose its ports (6817 and 6818 by default; a second node takes
# the port after), so that two clusters can run.
# Needs Debian's slurm-wlm and munge packages (`apt-get install -y slurm-wlm munge`) and root.
# Its own munged, key, config and state live in the given folder: nothing under /etc is changed,
# and Slurm's commands find it through SLURM_CONF. No accounting (slurmdbd), so no sacct; and no
# cgroups: jobs are tracked by process (proctrack/linuxproc), as in a container.
set -euo pipefail

action=${1:-}
dir=${2:-}
nodes=${3:-1}
if [[ -z $action || -z $dir || ! $nodes =~ ^[12]$ ]]; then
    echo "usage: bash scripts/local-slurm.sh up|down <folder> [nodes: 1 or 2]" >&2
    exit 2
fi

stop() {  # a daemon by its pid file; wait for it to end so the next start finds its port free
    local pid_file=$1
    [[ -f $pid_file ]] || return 0
    local pid
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pid_file"
}

if [[ $action == down ]]; then
    [[ -d $dir ]] || exit 0
    if [[ -f $dir/slurmctld.pid ]]; then
        SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
    fi
    for pid_file in "$dir"/slurmd*.pid; do stop "$pid_file"; done
    stop "$dir/slurmctld.pid"
    stop "$dir/munged.pid"
    exit 0
fi
[[ $action == up ]] || { echo "unknown action $action: use up or down" >&2; exit 2; }

for command in slurmctld slurmd munged mungekey sinfo; do
    command -v "$command" >/dev/null || {
        echo "$command is not installed: apt-get install -y slurm-wlm munge" >&2
        exit 1
    }
done
[[ $(id -u) == 0 ]] || { echo "a local Slurm needs root (slurmd starts jobs as their user)" >&2; exit 1; }

dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
bash "$0" down "$dir"
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 711 "$dir/munge"  # the socket is reached through it
[[ -f $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key"
munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"

host=$(hostname -s)
names=("$host")
[[ $nodes == 2 ]] && names+=(localhost)
cpus=$(( $(nproc) / nodes > 0 ? $(nproc) / nodes : 1 ))  # per node
memory_mb=$(( ($(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 - 1024) / nodes ))
slurmd_port=${SLURMD_PORT:-6818}
cat > "$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=$(id -un)
AuthType=auth/munge
# cred_expire: a requeued job waits this long before it may start again (Slurm's default: 120 s).
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CredType=cred/munge
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=$slurmd_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
# The cores and memory below, not the host's: two slurmd share one host.
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# Jobs past their time limit get SIGTERM, then SIGKILL this many seconds later.
KillWait=10
# Memory per CPU, so that jobs that ask for none share the node (rather than each taking all of it).
DefMemPerCPU=$(( memory_mb / cpus ))
EOF
for index in "${!names[@]}"; do
    echo "NodeName=${names[$index]} NodeHostname=$host Port=$((slurmd_port + index))" \
        "CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN" >> "$dir/slurm.conf"
    mkdir -p "$dir/spool/${names[$index]}"
done
echo "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$dir/slurm.conf"

export SLURM_CONF=$dir/slurm.conf
slurmctld
for name in "${names[@]}"; do slurmd -N "$name"; done
for _ in $(seq 150); do  # the nodes register within a few seconds
    if [[ $(sinfo --noheader --Node --states=idle --format=%N 2>/dev/null | wc -l) == "$nodes" ]]; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "the local Slurm did not come up in 30 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
bash "$0" down "$dir"
exit 1
