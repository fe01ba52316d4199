#!/usr/bin/env bash
# Starts a one-host Slurm cluster on this machine (munged, slurmctld, slurmd,
# all as root) for the Slurm tests: `srun -N1 hostname` works when it returns.
#
# Idempotent: a cluster that already answers is left alone; a fresh Debian
# machine gets `slurm-wlm` and `munge` from apt first. Needs root.
#
# The node is declared with PP_SLURM_CPUS CPUs (default 8, more than this
# machine has: several test allocations run side by side) and Slurm's
# KillWait is 30 s, above the nodes' --grace that ppclient passes.
set -euo pipefail

CPUS="${PP_SLURM_CPUS:-8}"
CONF=/etc/slurm/slurm.conf
LOG=/var/log/slurm-pp
HOST="$(hostname -s)"

say() { echo "slurm-up: $*"; }

if [ "$(id -u)" != 0 ]; then
    say "must run as root (it starts slurmctld, slurmd and munged)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v srun >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
fi

# An already running cluster that answers: nothing to do.
if scontrol ping 2>/dev/null | grep -q UP \
    && timeout 20 srun -N1 -t 1 --quiet true 2>/dev/null; then
    say "already up on $HOST"
    exit 0
fi

# munge: a key, its run directory, the daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    pkill_pidfile() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
    pkill_pidfile /run/munge/munged.pid
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
munge -n | unmunge >/dev/null

# slurm.conf for this one host.
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG"
cat >"$CONF.new" <<EOF
# Written by scripts/slurm-up.sh: a one-host cluster for the pp tests.
ClusterName=pp
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
MinJobAge=5
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=pp Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"

stop_pidfile() {
    if [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; then
        kill "$(cat "$1")" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$(cat "$1")" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$1"
}
# Restart both daemons so that they read this configuration.
stop_pidfile /run/slurmd.pid
stop_pidfile /run/slurmctld.pid
say "starting slurmctld and slurmd on $HOST ($CPUS CPUs)"
slurmctld -i
slurmd

# Wait (bounded) until the node takes jobs.
for _ in $(seq 60); do
    if scontrol ping 2>/dev/null | grep -q UP \
        && sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        break
    fi
    sleep 0.5
done
scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
if ! timeout 30 srun -N1 -t 1 hostname; then
    say "srun does not work; the logs:" >&2
    tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
    exit 1
fi
say "up: $(sinfo -h -o '%P %a %D %C')"
