"""`manage.py serve`: the web server and a worker in one foreground command (what `make run` runs).

Ctrl-C (or SIGTERM) stops both; when one of them dies the other is stopped too, so a half-running
pimsync never looks healthy.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server (gunicorn) and a django-q2 worker together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("PIMSYNC_BIND", "127.0.0.1:8000"))
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, bind, web_workers, **options):
        # Each child leads a process group of its own: django-q2's cluster runs its sentinel and
        # workers as further processes, and stopping the group is the only way to reach them all.
        children = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, start_new_session=True)
            for name, cmd in _commands(bind, web_workers).items()
        }
        self.stdout.write(
            f"pimsync is running at http://{bind}/ (web pid {children['web'].pid}, "
            f"worker pid {children['worker'].pid}); Ctrl-C stops both."
        )
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children.values()):
                time.sleep(0.2)
        finally:
            _stop_all(children)
        dead = [name for name, child in children.items() if child.returncode not in (0, -signal.SIGTERM, None)]
        if dead and not stopping:
            self.stderr.write(f"stopped because the {' and '.join(dead)} process exited")
            sys.exit(1)


def _commands(bind: str, web_workers: int) -> dict[str, list[str]]:
    """The command lines of the web server and the worker."""
    python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
    web = [python, "-m", "gunicorn", "pimsync.wsgi", "--bind", bind, "--workers", str(web_workers)]
    web += ["--threads", "4", "--access-logfile", "-", "--graceful-timeout", "5"]
    return {"web": web, "worker": [python, manage, "qcluster"]}


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every child's process group; kill what has not stopped within 15 seconds in all,
    and any process of a group that outlived its leader (a worker must not run on, orphaned)."""
    for child in children.values():
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:  # the whole group has already ended
        pass
