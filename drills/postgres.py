"""A throw-away PostgreSQL cluster for one drill: initdb and pg_ctl on a free port in a temporary
folder, so that stopping and restarting it harms nobody else's database.

PostgreSQL refuses to run as root; as root, every server command runs as the `postgres` user
(`runuser`), and the folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.processes import free_port


def server_binaries() -> Path:
    """The newest installed server's bin folder (Debian keeps them under /usr/lib/postgresql)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        on_path = shutil.which("initdb")
        if on_path:
            return Path(on_path).parent
        raise SystemExit(
            "the drills run a private PostgreSQL and need its server programs (initdb, pg_ctl): "
            "apt-get install postgresql"
        )
    return Path(found[-1]).parent


class PrivatePostgres:
    """initdb + pg_ctl in a temporary folder on a free loopback port; `destroy()` removes it all."""

    DATABASE = "pimsync_drill"

    def __init__(self) -> None:
        self.bin = server_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="pimsync-drill-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise SystemExit("running as root: the drills need a `postgres` user to run PostgreSQL as") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.DATABASE}"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {(result.stderr or result.stdout)[-1500:]}")

    def start(self) -> PrivatePostgres:
        """Create the cluster (first time) and start it; wait until it accepts connections."""
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                # A drill's data is thrown away; fsync only adds disk waits on a shared machine.
                "-c fsync=off",
                "-c shared_buffers=32MB",
                "-c max_connections=150",
            ]
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options)
        return self

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m mode`: fast disconnects every client and shuts down cleanly."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.DATABASE}"')

    def destroy(self) -> None:
        """Stop the server (immediately: its data is discarded) and delete the folder."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
