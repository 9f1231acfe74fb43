#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this machine, so that tests/test_slurm.py can run
# the pipeline through the real SLURM executor plugin (sbatch, squeue, srun) instead of a mock.
#
#   scripts/local_slurm.sh start [DIR]   install slurm-wlm + munge if absent (apt-get), write
#                                        DIR/slurm.conf and DIR/gres.conf, start munged,
#                                        slurmctld and slurmd, wait until the node is idle
#   scripts/local_slurm.sh stop [DIR]    cancel its jobs, stop the daemons started from DIR
#
# DIR defaults to $LOCAL_SLURM_DIR or /tmp/databrittle-slurm. Clients reach the cluster through
# DIR/bin (put it first in PATH): sbatch, squeue, srun, ... wrappers that set SLURM_CONF, because
# the executor plugin's job step removes every SLURM_* variable (SLURM_CONF too) before it calls
# srun inside the job. The last line `start` prints is `PATH_PREFIX=DIR/bin`.
# Exit status 77 means "this machine cannot run it" (not root, no apt-get, not Linux, no
# cgroup filesystem); the reason is the last line on stderr, prefixed "SKIP: ".
#
# Why it is built this way:
# - Everything lives in DIR (config, state, logs, its own munge key and socket) and the daemons
#   listen on free ports chosen at start, so a machine's real SLURM or munge is neither used nor
#   touched, and two test runs at once (two DIRs) get two independent clusters.
# - No systemd and no cgroup plugins (proctrack/linuxproc, task/none): containers and VMs
#   without systemd can run it. slurmd 22.05 still insists on a cgroup filesystem being
#   mounted under /sys/fs/cgroup, hence that check.
# - No slurmdbd: `sacct` fails ("accounting storage is disabled"), as on sites without
#   accounting. MinJobAge=300 keeps finished jobs visible to `squeue` (and `scontrol show job`)
#   for 5 minutes, long enough for the executor plugin's squeue status checks; the plugin
#   falls back to sacct when MinJobAge < 3 x its first status delay.
# - The node advertises 2 fake GPUs (gres.conf, no device files), so that jobs asking for a GPU
#   (--gpus=1 or --gres=gpu:1) are scheduled; CPUs and memory are declared at least 4 CPUs and
#   64 GB (SlurmdParameters=config_overrides; no cgroup enforces them), so that every per-job
#   request of the profiles fits on a small CI machine unchanged. DefMemPerCPU keeps a job without a memory request from taking
#   the whole node.
set -euo pipefail

action=${1:-}
dir=${2:-${LOCAL_SLURM_DIR:-/tmp/databrittle-slurm}}

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "local_slurm: $*" >&2; exit 1; }

stop_pidfile() {  # stop the daemon whose pid file is $1 (only that process)
    local pidfile=$1 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop() {
    if [ -f "$dir/slurm.conf" ] && [ -s "$dir/slurmctld.pid" ]; then
        # jobs of this private cluster only (SLURM_CONF points at it)
        SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munge/munged.pid"
}

install_if_absent() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v slurmd >/dev/null || missing+=(slurm-wlm)
    command -v sbatch >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || skip "slurm-wlm/munge are not installed and there is no apt-get to install them"
    echo "local_slurm: installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # no recommends: 7 packages instead of ~33 (plugins for hdf5, influxdb, ipmi, ...)
    # waits for the dpkg lock: another test run may be installing the same packages
    local apt=(apt-get -o DPkg::Lock::Timeout=120 -y -qq --no-install-recommends)
    "${apt[@]}" install slurm-wlm munge >/dev/null 2>&1 || {
        apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null 2>&1 || true
        "${apt[@]}" install slurm-wlm munge >/dev/null || fail "apt-get could not install slurm-wlm munge"
    }
}

free_port() {  # PYTHON: any python3 (the test passes its own)
    "${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    local host cpus mem ctld_port slurmd_port
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    host=$(uname -n); host=${host%%.*}  # slurmctld must run on SlurmctldHost: this machine's short name
    cpus=$(nproc); [ "$cpus" -lt 4 ] && cpus=4
    mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo); [ "$mem" -lt 64000 ] && mem=64000
    cat >"$dir/slurm.conf" <<EOF
# Written by scripts/local_slurm.sh: a single-node test cluster (see the comments there).
ClusterName=databrittle-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
MinJobAge=300
DefMemPerCPU=1000
ReturnToService=2
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    # fake GPUs: slurmd drops a GPU without a device file and wants a character device, so
    # two links to /dev/null stand in for them (nothing constrains devices: no cgroups)
    ln -sfn /dev/null "$dir/fake-gpu0"
    ln -sfn /dev/null "$dir/fake-gpu1"
    echo "NodeName=localhost Name=gpu File=$dir/fake-gpu[0-1]" >"$dir/gres.conf"
    mkdir -p "$dir/bin"
    local tool real system_path
    system_path=$(printf %s "$PATH" | tr : '\n' | grep -vxF "$dir/bin" | paste -sd:)  # never wrap a wrapper
    for tool in sbatch squeue srun scontrol sinfo scancel sacct sacctmgr sshare; do
        real=$(PATH=$system_path command -v "$tool") || continue
        printf '#!/bin/sh\nSLURM_CONF='"'%s'"' exec '"'%s'"' "$@"\n' "$dir/slurm.conf" "$real" >"$dir/bin/$tool"
        chmod +x "$dir/bin/$tool"
    done
}

start_munge() {
    mkdir -p "$dir/munge"
    chmod 700 "$dir/munge"
    [ -s "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket.2" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" || fail "munged did not start: $(tail -3 "$dir/munge/munged.log" 2>/dev/null)"
    for _ in $(seq 50); do
        munge -n --socket="$dir/munge/munge.socket.2" 2>/dev/null | unmunge --socket="$dir/munge/munge.socket.2" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "munged does not answer on $dir/munge/munge.socket.2"
}

start() {
    [ "$(uname -s)" = Linux ] || skip "SLURM test cluster needs Linux"
    [ "$(id -u)" -eq 0 ] || skip "starting slurmctld/slurmd as a test cluster needs root"
    install_if_absent
    grep -q " /sys/fs/cgroup" /proc/mounts || skip "slurmd 22.05 needs a cgroup filesystem mounted under /sys/fs/cgroup"
    stop  # a cluster left over from an interrupted run of the same DIR
    rm -rf "$dir/state" "$dir/spool"
    mkdir -p "$dir/state" "$dir/spool"
    write_config
    export SLURM_CONF="$dir/slurm.conf"
    start_munge
    slurmctld -c -f "$SLURM_CONF" || fail "slurmctld did not start: $(tail -5 "$dir/slurmctld.log" 2>/dev/null)"
    slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start: $(tail -5 "$dir/slurmd.log" 2>/dev/null)"
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
        [ "$state" = idle ] && { echo "PATH_PREFIX=$dir/bin"; return 0; }
        sleep 0.5
    done
    fail "node not idle after 60 s (state '$state'); slurmctld.log: $(tail -5 "$dir/slurmctld.log"); slurmd.log: $(tail -5 "$dir/slurmd.log")"
}

case "$action" in
    start) mkdir -p "$dir"; start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
