"""Child processes of the benchmark and the drills (gunicorn, qcluster) and what they use: ports,
process trees, resident memory, the benchmark's database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


class Processes:
    """Child processes in their own groups, stopped together."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(
        self, args: list[str], env: dict, log: Path | None = None, cpu_group: CpuGroup | None = None
    ) -> subprocess.Popen:
        """Start `args` in a new process group, in `cpu_group` if given; its output goes to `log`
        (appended) or nowhere."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        if cpu_group:
            args = cpu_group.command(args)
        child = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        if log:
            out.close()
        self.children.append(child)
        return child

    def stop(self, child: subprocess.Popen | None = None) -> None:
        """Stop `child` (default: every child), SIGTERM first, SIGKILL after 10 s."""
        for process in [child] if child else list(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            if process in self.children:
                self.children.remove(process)


class NoCpuGroup(RuntimeError):
    """The machine has no CPU cgroup controller, or this user may not make a group."""


class CpuGroup:
    """A CPU cgroup with a weight, as systemd's `CPUWeight=` and compose's `cpu_shares` make one
    for each service: what the deployment gives the web and the worker, copied for a benchmark.

    Each child of `Processes` starts a session of its own, and with the kernel's autogroups
    (sched(7)) `nice` orders threads only inside one session; only a weight between groups
    gives one process priority over another here, as it does between systemd units."""

    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, name: str, weight: int) -> None:
        """`weight` as systemd's CPUWeight= (1–10,000, 100 by default)."""
        self.weight = weight
        controllers = self.V2 / "cgroup.controllers"  # cgroup v2: "cpuset cpu io memory …"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            self.path, file, value = self.V2 / name, "cpu.weight", weight
        elif (self.V1 / "cpu.shares").exists():  # cgroup v1: systemd maps CPUWeight=100 to 1024 shares
            self.path, file, value = self.V1 / name, "cpu.shares", weight * 1024 // 100
        else:
            raise NoCpuGroup("no CPU cgroup controller under /sys/fs/cgroup")
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / file).write_text(str(value))
        except OSError as error:
            raise NoCpuGroup(f"cannot make the CPU cgroup {self.path} (run as root): {error}") from error

    def command(self, args: list[str]) -> list[str]:
        """`args`, run from inside the group: the shell moves itself in, then execs, so every
        process the command forks later is in the group from its start."""
        return ["sh", "-c", f'echo $$ > {self.path / "cgroup.procs"} && exec "$@"', "sh", *args]

    def remove(self) -> None:
        """Remove the group once its processes have ended."""
        try:
            self.path.rmdir()
        except OSError:
            pass  # a process still in it: the kernel keeps the group until the next run reuses it


def gunicorn(port: int, workers: int, threads: int) -> list[str]:
    """The command line of pimsync's web server, gthread workers, on `port`."""
    return [
        *(sys.executable, "-m", "gunicorn", "pimsync.wsgi", "--bind", f"127.0.0.1:{port}"),
        *("--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread"),
    ]


def ensure_database(url: str) -> None:
    """Create the database `url` names if it does not exist yet."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int) -> None:
    """Wait up to 30 s until something accepts connections on `port`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process `pid` from /proc, in kB (VmRSS now, VmHWM its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    """The direct children of `pid`."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def descendants_of(pid: int) -> list[int]:
    """Every process below `pid`."""
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found
