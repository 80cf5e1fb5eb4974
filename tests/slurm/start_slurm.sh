#!/usr/bin/env bash
# Start a one-node Slurm on this machine (slurmctld + slurmd + munge on localhost) for the tests
# of `wiring.study --executor slurm`, and wait until `sinfo` shows the node idle.
#
#   tests/slurm/start_slurm.sh            # start it (or find it running); exit 0 when the node is idle
#
# Needs root and Debian's packages (`apt-get install -y slurm-wlm munge`; .ci/run installs them).
# Writes /etc/slurm/slurm.conf for this host with this machine's cores (the node line of
# `slurmd -C`), every job's cpus counted (SelectType=cons_tres, cores consumable), no cgroups
# (proctrack/linuxproc: runs inside containers too). Exits 1 with one line on stderr saying why
# it cannot start; the tests skip with that line.
set -u
fail() { echo "start_slurm: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "not root (slurmctld, slurmd and munged need root here)"
for cmd in slurmctld slurmd munged sinfo sbatch; do
  command -v "$cmd" >/dev/null || fail "no $cmd: apt-get install -y slurm-wlm munge"
done
if sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle; then exit 0; fi     # already running

host=$(hostname -s)
node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
spool=/var/spool/slurm
mkdir -p /etc/slurm "$spool/ctld" "$spool/d" /var/log/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge
cat > /etc/slurm/slurm.conf <<CONF
# written by tests/slurm/start_slurm.sh: one node, this machine
ClusterName=wiring
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null || fail "cannot write the munge key"
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c munged 2>/dev/null || munged --force || fail "munged did not start"
  else
    munged --force || fail "munged did not start"
  fi
fi
munge -n | unmunge >/dev/null 2>&1 || fail "munge does not answer (munge -n | unmunge failed)"
pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"
for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1)
  [ "$state" = idle ] && exit 0
  case "$state" in down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1;; esac
  sleep 1
done
fail "the node did not become idle in 60 s (sinfo: ${state:-no answer}; see /var/log/slurm/)"
