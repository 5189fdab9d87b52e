"""An emulated cluster on one machine: one network namespace per node, joined
by a bridge, each link shaped to a set rate (issue 28).

    python -m grappa.emulated_cluster up --name demo --nodes 2 --profile 1gbit
    python -m grappa.emulated_cluster run --name demo --node 0 -- mpirun ...
    python -m grappa.emulated_cluster down --name demo
    python -m grappa.emulated_cluster exec --nodes 2 --profile 1gbit -- CMD   # up, CMD in node 0, down

Topology (docs/ARCHITECTURE.md, "Emulated cluster"): a namespace NAME-fabric
holds bridge br0; node i is namespace NAME-node<i> whose eth0 is one end of
a veth pair whose other end is a bridge port. Addresses are on a private
test subnet that exists only inside these namespaces; nothing is created in
the machine's own namespace except the per-node hosts files under
/etc/netns (``ip netns exec`` mounts them over /etc/hosts), removed again by
``down``. A link's rate is a tbf on both of its egress sides, with a burst
above the GSO size (a smaller one collapses busy links). This kernel has no
netem, so added delay comes from a small NFQUEUE program in each node
(hpc/cluster/delay_queue.c): every packet arriving at a node's eth0 is held
for the one-way delay. It is held on arrival, not on departure: a packet
held on the sender's side still counts against its socket (TCP small
queues), which then sends two packets per delay (2 Mbit/s on the wan link).

What was made is recorded in /run/grappa-cluster/NAME.json before it is
made, so ``down`` removes everything, also after an interrupted ``up``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grappa.cli_util import reports_input_errors
from grappa.errors import InputError

STATE_DIR = Path("/run/grappa-cluster")
SUBNET = "10.77.0"  # a private test subnet, inside the cluster's own namespaces only
PROFILES = {"shm": None, "10gbit": ("10gbit", 0.0), "1gbit": ("1gbit", 0.0), "100mbit": ("100mbit", 0.0),
            "wan": ("100mbit", 20.0)}  # (rate, delay in ms); shm: no namespaces, one node
UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
SMALL_PACKETS_UP_TO = 200e6  # bits/s: links this slow send MTU-sized packets (see shape)


def rate_bits(rate: str) -> float:
    """'1gbit' -> 1e9 bits per second (tc's units)."""
    for unit, scale in UNITS.items():
        if rate.endswith(unit) and rate[: -len(unit)].replace(".", "", 1).isdigit():
            return float(rate[: -len(unit)]) * scale
    raise InputError("--rate", f"not a rate: {rate!r}", "give a number with kbit, mbit or gbit, as tc reads it")


@dataclass
class Cluster:
    """An emulated cluster's names, addresses and links (what ``up`` makes)."""

    name: str
    nodes: int
    rate: str | None = None  # None: unshaped veths
    delay_ms: float = 0.0  # one-way, added as packets arrive at each node
    made: list = field(default_factory=list)  # namespaces and hosts directories, in creation order

    def fabric(self) -> str:
        return f"{self.name}-fabric"

    def ns(self, i: int) -> str:
        return f"{self.name}-node{i}"

    @staticmethod
    def address(i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def hosts(self) -> list[str]:
        return [self.address(i) for i in range(self.nodes)]

    def state_path(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def record(self, what: str) -> None:
        """Write down ``what`` before making it: ``down`` then finds it whatever happens next."""
        self.made.append(what)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(self.state_path())

    @classmethod
    def load(cls, name: str) -> Cluster:
        path = cls(name, 0).state_path()
        if not path.exists():
            raise InputError(path, f"no emulated cluster named {name!r} is up", "list them with: ls " + str(STATE_DIR))
        return cls(**json.loads(path.read_text()))


def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


def shape(ns: str, dev: str, rate: str) -> None:
    """tbf on ``dev``'s egress. The burst (bytes sent at once, above the rate) must hold the
    largest packet: with GSO a packet is up to 64 kB, and a smaller burst collapses busy fast
    links (CLUSTER_NOTES), so fast links get max(80 kB, 200 us at the rate). On a slow link that
    burst is milliseconds of free line time (6.4 ms at 100 Mbit/s: a 92 kB gradient crossed in a
    third of its time), so up to 200 Mbit/s the packets are split to the MTU (gso_max_segs 1;
    the CPU keeps up there, not at 1 Gbit/s) and the burst is 200 us at the rate, at least two
    full frames."""
    bits = rate_bits(rate)
    burst = max(80_000, int(bits * 200e-6 / 8))
    if bits <= SMALL_PACKETS_UP_TO:
        sh("ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1")
        burst = max(2 * 1514, int(bits * 200e-6 / 8))
    sh("ip", "-n", ns, "link", "set", dev, "txqueuelen", "1000")
    sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
       "burst", str(burst), "latency", "100ms")


def up(c: Cluster) -> Cluster:
    """Make the namespaces, bridge, veths, addresses, links and hosts files of ``c``."""
    if not 2 <= c.nodes <= 8:
        raise InputError("--nodes", f"{c.nodes} nodes", "give 2 to 8")
    if c.rate is not None:
        rate_bits(c.rate)
    if c.state_path().exists():
        raise InputError(c.state_path(), f"a cluster named {c.name!r} is already up",
                         f"take it down first: python -m grappa.emulated_cluster down --name {c.name}")
    fabric = c.fabric()
    c.record(f"netns:{fabric}")
    try:
        sh("ip", "netns", "add", fabric)
    except RuntimeError as e:
        c.made.pop()
        c.state_path().unlink(missing_ok=True)
        raise InputError("ip netns add", f"cannot make a network namespace ({e})",
                         "run as root on Linux with network namespaces (an unprivileged container cannot)") from None
    sh("ip", "-n", fabric, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", fabric, "link", "set", "br0", "up")
    hosts = "127.0.0.1 localhost\n" + "".join(f"{c.address(i)} node{i}\n" for i in range(c.nodes))
    for i in range(c.nodes):
        _add_node(c, i, hosts)
    return c


def _add_node(c: Cluster, i: int, hosts: str) -> None:
    ns, fabric, port = c.ns(i), c.fabric(), f"p{i}"
    c.record(f"netns:{ns}")
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "-n", fabric, "link", "set", port, "master", "br0")
    sh("ip", "-n", fabric, "link", "set", port, "up")
    sh("ip", "-n", ns, "addr", "add", f"{c.address(i)}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    if c.rate:
        shape(ns, "eth0", c.rate)
        shape(fabric, port, c.rate)
    if c.delay_ms:
        _add_delay(c, ns)
    etc = Path("/etc/netns") / ns
    c.record(f"dir:{etc}")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(hosts)
    (etc / "hostname").write_text(f"node{i}\n")


DELAY_SOURCE = Path(__file__).resolve().parents[2] / "hpc" / "cluster" / "delay_queue.c"


def delay_program() -> Path:
    """The NFQUEUE delay program, compiled once per source version into the user's cache."""
    source = DELAY_SOURCE.read_bytes()
    exe = Path.home() / ".cache" / "grappa" / f"delay_queue-{hashlib.sha256(source).hexdigest()[:12]}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(exe.name + f".{os.getpid()}")
    r = subprocess.run(["cc", "-O2", "-o", str(tmp), str(DELAY_SOURCE), "-lnetfilter_queue"],
                       capture_output=True, text=True)
    if r.returncode or shutil.which("iptables-legacy") is None:
        raise InputError("--delay-ms", "added delay needs an NFQUEUE program (this kernel has no netem), and "
                         f"it cannot be built or hooked here: {r.stderr.strip()[-200:] or 'no iptables-legacy'}",
                         "install the Debian packages iptables and libnetfilter-queue-dev (hpc/setup_env.sh "
                         "does), or use a rate-only link")
    tmp.replace(exe)
    return exe


def _add_delay(c: Cluster, ns: str) -> None:
    """Hold node ``ns``'s incoming packets for the delay: the program first, then the hook."""
    path = STATE_DIR / f"{ns}-delay.log"
    c.record(f"file:{path}")
    log = open(path, "w")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, str(delay_program()), "0", str(c.delay_ms * 1000)],
                            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    c.record(f"pid:{proc.pid}")
    ready = proc.stdout.readline().strip()
    log.close()
    if ready != "ready":
        raise RuntimeError(f"the delay program did not start in {ns}: see {log.name}")
    sh("ip", "netns", "exec", ns, "iptables-legacy", "-A", "INPUT", "-i", "eth0", "-j", "NFQUEUE",
       "--queue-num", "0", "--queue-bypass")


def down(c: Cluster) -> list[str]:
    """Remove everything ``c`` made (newest first); returns what could not be removed."""
    left = []
    for what in reversed(c.made):
        kind, _, name = what.partition(":")
        if kind == "netns":  # deleting a namespace deletes its veth ends, the peers and the bridge with it
            r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if r.returncode and Path("/run/netns", name).exists():
                left.append(what)
        elif kind == "pid":  # a delay program this cluster started (by its PID, never by name)
            try:
                os.kill(int(name), signal.SIGTERM)
                os.waitpid(int(name), 0)
            except ChildProcessError:
                _wait_gone(int(name))
            except ProcessLookupError:
                pass
        elif kind == "file":
            Path(name).unlink(missing_ok=True)
        elif kind == "dir":
            shutil.rmtree(name, ignore_errors=True)
            if Path(name).exists():
                left.append(what)
    if not left:
        c.state_path().unlink(missing_ok=True)
    return left


def _wait_gone(pid: int, seconds: float = 5.0) -> None:
    """Wait for a process another ``up`` started to exit (it cannot be reaped from here)."""
    for _ in range(int(seconds / 0.05)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def in_node(c: Cluster, i: int, cmd: list[str]) -> list[str]:
    """``cmd`` run in node ``i``'s namespace under its own hostname (MPI and gloo name hosts by it)."""
    return ["ip", "netns", "exec", c.ns(i), "unshare", "--uts", "sh", "-c", f'hostname node{i}; exec "$@"',
            "sh", *cmd]


def mpi_env(c: Cluster) -> dict:
    """This process's environment for a command in a node (``mpirun`` in node
    0): daemons started in the other nodes' namespaces (hpc/cluster/netns_rsh.sh)
    and TCP on the test subnet."""
    agent = Path(__file__).resolve().parents[2] / "hpc" / "cluster" / "netns_rsh.sh"
    return {**os.environ, "GRAPPA_CLUSTER": c.name, "GRAPPA_CLUSTER_HOSTS": ",".join(c.hosts()),
            "OMPI_MCA_plm_rsh_agent": str(agent), "OMPI_MCA_plm_rsh_no_tree_spawn": "1",
            "OMPI_MCA_btl_tcp_if_include": f"{SUBNET}.0/24", "OMPI_MCA_oob_tcp_if_include": f"{SUBNET}.0/24",
            "GLOO_SOCKET_IFNAME": "eth0", "HOROVOD_GLOO_IFACE": "eth0",
            "GRAPPA_NODE_CORES": str(max(1, (os.cpu_count() or 1) // c.nodes)),  # the nodes share the cores
            # The nodes share this machine's cores: a rank busy-polling TCP holds the core another
            # node's rank needs (Horovod's Cora halo epoch: 336 ms polling, 88 ms yielding).
            "OMPI_MCA_mpi_yield_when_idle": os.environ.get("OMPI_MCA_mpi_yield_when_idle", "1")}


def serve_probe(port: int) -> None:
    """One probe's server: echo one-byte pings, then drain a bulk transfer."""
    with socket.create_server(("0.0.0.0", port)) as srv:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while conn.recv(1) == b"p":
                conn.sendall(b"p")
            while conn.recv(1 << 20):  # the bulk phase, until the client closes
                pass


def probe(host: str, port: int, megabytes: int = 32, pings: int = 200) -> dict:
    """Round trip of a one-byte message (median) and bulk TCP throughput to ``host``."""
    for _ in range(100):  # the server is starting in its namespace
        try:
            conn = socket.create_connection((host, port), timeout=10)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise RuntimeError(f"no probe server at {host}:{port}")
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(pings):
            if sum(rtts) > 2.0:  # enough on a slow link (a 40 ms round trip: 50 pings)
                break
            t0 = time.perf_counter()
            conn.sendall(b"p")
            conn.recv(1)
            rtts.append(time.perf_counter() - t0)
        conn.sendall(b"b")
        block, n = bytes(1 << 20), megabytes
        t0 = time.perf_counter()
        for _ in range(n):
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the server closes once it has read everything
        dt = time.perf_counter() - t0
    rtts.sort()
    return {"rtt_us": 1e6 * rtts[len(rtts) // 2], "gbit_s": n * (1 << 20) * 8 / dt / 1e9}


def measure_link(c: Cluster, src: int = 0, dst: int = 1, port: int = 5201) -> dict:
    """What the link from node ``src`` to node ``dst`` really gives (a socket test in the namespaces)."""
    server = subprocess.Popen(in_node(c, dst, [sys.executable, "-m", "grappa.emulated_cluster", "_serve", str(port)]),
                              env=_py_env())
    try:
        r = subprocess.run(in_node(c, src, [sys.executable, "-m", "grappa.emulated_cluster", "_probe",
                                            c.address(dst), str(port)]), capture_output=True, text=True,
                           env=_py_env(), timeout=120)
        if r.returncode:
            raise RuntimeError(f"link probe failed: {r.stderr.strip()[-500:]}")
        return json.loads(r.stdout)
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()  # the server this call started, by its PID
            server.wait()


def _py_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_hostfile(c: Cluster, path: Path, slots: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{h} slots={slots}\n" for h in c.hosts()))
    tmp.replace(path)


def cluster_from_args(a) -> Cluster:
    rate, delay = (a.rate, a.delay_ms) if a.profile is None else (PROFILES[a.profile] or (None, 0.0))
    if a.profile == "shm":
        raise InputError("--profile", "shm is one machine's shared memory: no cluster to make",
                         "run mpirun directly, or choose 10gbit, 1gbit, 100mbit")
    if delay < 0:
        raise InputError("--delay-ms", f"{delay:g} ms", "give a delay of 0 or more milliseconds")
    if delay:
        delay_program()  # refuses here, before anything is made, where delay cannot be added
    return Cluster(a.name, a.nodes, rate, delay)


def _up_and_report(c: Cluster, a) -> None:
    up(c)
    try:
        link = measure_link(c)
    except BaseException:
        down(c)
        raise
    if a.hostfile:
        write_hostfile(c, Path(a.hostfile), a.slots)
    print(f"cluster {c.name}: {c.nodes} nodes {', '.join(c.hosts())}, link {c.rate or 'unshaped'}"
          + (f" + {c.delay_ms:g} ms" if c.delay_ms else "") + f": measured "
          f"{link['gbit_s']:.2f} Gbit/s, round trip {link['rtt_us']:.0f} us"
          + (f"; hostfile {a.hostfile}" if a.hostfile else ""), flush=True)


def exec_in_cluster(c: Cluster, a) -> int:
    """Up, ``a.cmd`` in node 0 with the MPI settings, down: also on an interrupt."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        _up_and_report(c, a)
        return subprocess.run(in_node(c, 0, a.cmd), env=mpi_env(c)).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        left = down(c)
        signal.signal(signal.SIGTERM, old)
        if left:
            print(f"warning: could not remove {left}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grappa.emulated_cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="{up,exec,run,down}")
    for name in ("up", "exec"):
        s = sub.add_parser(name, help="make a cluster" + (", run a command in node 0, remove it" if name == "exec"
                                                          else " and leave it up"))
        s.add_argument("--name", default=f"gc{os.getpid()}" if name == "exec" else "grappa",
                       help="namespace prefix (default: grappa; exec: unique)")
        s.add_argument("--nodes", type=int, default=2, help="2 to 8 (default 2)")
        s.add_argument("--profile", choices=sorted(PROFILES),
                       help="a named link: 10gbit, 1gbit, 100mbit, wan (100mbit + 20 ms each way)")
        s.add_argument("--rate", default="1gbit", help="link rate as tc reads it, without --profile (default 1gbit)")
        s.add_argument("--delay-ms", type=float, default=0.0,
                       help="added one-way delay into each node, by an NFQUEUE program (default 0)")
        s.add_argument("--hostfile", help="write an OpenMPI hostfile (node addresses) here")
        s.add_argument("--slots", type=int, default=1, help="ranks per node in the hostfile (default 1)")
        if name == "exec":
            s.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND to run in node 0")
    s = sub.add_parser("down", help="remove a cluster and everything it made")
    s.add_argument("--name", default="grappa")
    s = sub.add_parser("run", help="run a command in one node of a cluster that is up")
    s.add_argument("--name", default="grappa")
    s.add_argument("--node", type=int, default=0)
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND")
    for hidden in ("_serve", "_probe"):
        s = sub.add_parser(hidden)
        s.add_argument("args", nargs="*")
    return p


@reports_input_errors
def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    if a.action == "_serve":
        return serve_probe(int(a.args[0]))
    if a.action == "_probe":
        return print(json.dumps(probe(a.args[0], int(a.args[1]))))
    if a.action in ("run", "exec"):
        a.cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        if not a.cmd:
            raise InputError("COMMAND", "nothing to run", "give it after --")
    if a.action == "up":
        _up_and_report(cluster_from_args(a), a)
    elif a.action == "exec":
        sys.exit(exec_in_cluster(cluster_from_args(a), a))
    elif a.action == "down":
        left = down(Cluster.load(a.name))
        if left:
            sys.exit(f"error: could not remove {left}")
    else:
        c = Cluster.load(a.name)
        sys.exit(subprocess.run(in_node(c, a.node, a.cmd), env=mpi_env(c)).returncode)


if __name__ == "__main__":
    main()
