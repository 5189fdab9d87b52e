"""Slurm across an emulated cluster's nodes (issue 28): slurmctld in node 0,
one ``slurmd -N nodeI`` in each node's namespace, so ``sbatch -N 2`` spans
nodes and ``srun`` starts ranks over the cluster's shaped links.

    python -m grappa.emulated_cluster up --name demo --nodes 2 --profile 1gbit
    python -m grappa.emulated_slurm up --name demo            # prints SLURM_CONF=...
    python -m grappa.emulated_cluster run --name demo -- env SLURM_CONF=... sbatch -N 2 jobs/train_grappa.slurm
    python -m grappa.emulated_cluster down --name demo        # stops the daemons too

The daemons are the cluster's: their PIDs and directory are recorded in its
state file, so ``emulated_cluster down`` stops and removes them with the
rest. They run in the foreground (``-D``) under ``nsenter --net`` plus a
private mount and UTS namespace: under ``ip netns exec`` slurmd fails (it
remounts /sys without the cgroup file system); the node's hosts file is
bind-mounted over /etc/hosts as ``ip netns exec`` would. munge is the
machine's (``bash hpc/slurm/start.sh`` starts it); its socket is a file, not
a network address, so every node reaches it.
"""
from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from grappa.cli_util import reports_input_errors
from grappa.emulated_cluster import STATE_DIR, Cluster, in_node
from grappa.errors import InputError

COMMON_CONF = Path(__file__).resolve().parents[2] / "hpc" / "slurm" / "common.conf"
CPUS_PER_NODE = 4  # declared, as hpc/slurm/start.sh does: slurmd trusts the configuration


def conf_dir(c: Cluster) -> Path:
    return STATE_DIR / f"{c.name}-slurm"


def write_conf(c: Cluster, memory_mb: int) -> Path:
    d = conf_dir(c)
    nodes = "".join(f"NodeName=node{i} NodeAddr={c.address(i)} CPUs={CPUS_PER_NODE} RealMemory={memory_mb} "
                    "State=UNKNOWN\n" for i in range(c.nodes))
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName={c.name}
SlurmctldHost=node0({c.address(0)})
Include {COMMON_CONF}
JobCompLoc={d}/jobcomp.log
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
{nodes}PartitionName=emulated Nodes=node[0-{c.nodes - 1}] Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def node_conf(c: Cluster, i: int, conf: Path) -> Path:
    """Node ``i``'s copy of slurm.conf, beside its own mpi.conf: the nodes share this machine's
    /tmp, where PMIx would make the same directory for a step on every node (and fail on the
    second: "File exists"). Real nodes each have their own /tmp."""
    d = conf_dir(c) / f"node{i}"
    (d / "pmix").mkdir(parents=True)
    (d / "slurm.conf").write_text(conf.read_text())
    (d / "mpi.conf").write_text(f"PMIxCliTmpDirBase={d / 'pmix'}\n")
    return d / "slurm.conf"


def daemon_in_node(c: Cluster, i: int, cmd: list[str]) -> list[str]:
    """``cmd`` in node ``i``'s network namespace with its hostname and hosts file, /sys untouched."""
    script = (f"mount --bind /etc/netns/{c.ns(i)}/hosts /etc/hosts && hostname node{i} && exec \"$@\"")
    return ["nsenter", f"--net=/run/netns/{c.ns(i)}", "unshare", "--mount", "--uts", "sh", "-c", script, "sh", *cmd]


def start(c: Cluster, i: int, cmd: list[str], log: Path) -> None:
    with open(log, "a") as out:
        proc = subprocess.Popen(daemon_in_node(c, i, cmd), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    c.record(f"pid:{proc.pid}")  # foreground daemon: this PID is the daemon's (nsenter/unshare/sh exec it)


def munge_running() -> bool:
    r = subprocess.run("munge -n | unmunge", shell=True, capture_output=True)
    return r.returncode == 0


def sinfo_idle(c: Cluster, conf: Path) -> int:
    r = subprocess.run(in_node(c, 0, ["sinfo", "-h", "-N", "-o", "%T"]), capture_output=True, text=True,
                       env={"SLURM_CONF": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return sum(s in ("idle", "mixed", "allocated") for s in r.stdout.split())


def slurm_up(c: Cluster, memory_mb: int = 4096, timeout: float = 60.0) -> Path:
    """Start slurmctld in node 0 and a slurmd in every node; returns the SLURM_CONF path."""
    if not munge_running():
        raise InputError("munge", "munged is not running: Slurm cannot authenticate",
                         "start it with: bash hpc/slurm/start.sh")
    d = conf_dir(c)
    if d.exists():
        raise InputError(d, f"Slurm is already up on cluster {c.name!r}",
                         f"take the cluster down first: python -m grappa.emulated_cluster down --name {c.name}")
    c.record(f"dir:{d}")
    (d / "state").mkdir(parents=True)
    conf = write_conf(c, memory_mb)
    start(c, 0, ["slurmctld", "-D", "-i", "-f", str(conf)], d / "slurmctld.out")
    for i in range(c.nodes):
        (d / f"spool-node{i}").mkdir()
        start(c, i, ["slurmd", "-D", "-N", f"node{i}", "-f", str(node_conf(c, i, conf))], d / f"slurmd-node{i}.out")
    end = time.time() + timeout
    while time.time() < end:
        if sinfo_idle(c, conf) == c.nodes:
            return conf
        time.sleep(0.2)
    raise RuntimeError(f"Slurm nodes not idle within {timeout:.0f} s: see {d}/slurmctld.log and slurmd-node*.log")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grappa.emulated_slurm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("up", help="start Slurm on an emulated cluster that is up")
    s.add_argument("--name", default="grappa", help="the cluster's name (default: grappa)")
    s.add_argument("--memory-mb", type=int, default=4096, help="RealMemory each node declares (default 4096)")
    return p


@reports_input_errors
def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    c = Cluster.load(a.name)
    print(f"SLURM_CONF={slurm_up(c, a.memory_mb)}", flush=True)


if __name__ == "__main__":
    main()
