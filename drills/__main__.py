"""`make drill`: run the failure drills one after another, each in a fresh process with its own
private PostgreSQL, and print one block per drill ending in its ledger and PASS or FAIL. Exits
non-zero when any drill fails.

    python -m drills [name ...] [--events N] [--write DRILLS.md]

Each drill holds /tmp/pimsync-heavy.lock (flock) while it runs, so it never shares the machine's
cores with a benchmark or another drill; PIMSYNC_HEAVY_LOCK= (empty) runs without it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("postgres-restart", "gunicorn-kill", "poison", "pim-down", "aem-429", "webhook-down")
TIME_LIMIT = 240  # seconds per drill, setup and teardown included
HOW_TO_READ = """\
Each drill runs on the one machine: a private PostgreSQL cluster (initdb in a temporary folder, a
free port, thrown away afterwards), gunicorn (gthread, 2 processes x 4 threads) for the webhook, one
`manage.py qcluster` (2 processes x 8 threads), the IMS/AEM/PIM/key-server stand-ins of `standins/`
(20 ms on every PIM and AEM call) and a sender that posts 600 signed events (single deliveries and
batches of 5; every tenth event is a second event for an earlier asset) at 60 deliveries/s. Time is
compressed: backoff base 1 s, task timeout 8 s, the sweeper every second (deployed: every minute).
The sender redelivers, like Adobe, every delivery answered 5xx or 429 or cut off, unchanged, 1 s,
2 s, 4 s ... later. Lines starting `t=` are what happened, in seconds from the drill's start. The
LEDGER block is the verdict: acknowledged (the events of deliveries answered 200: `accepted` there,
or `duplicates` when an earlier attempt had stored them but its answer was lost) = stored = in a
final status = sent; the assets the AEM stand-in saw PATCHed = the assets that needed one, each
once; no event stored twice; then the drill's own expectations. `[XX]` marks a check that failed.
"""


@contextmanager
def heavy_lock():
    """One heavy run at a time on this machine (the benchmarks take the same lock)."""
    path = os.environ.get("PIMSYNC_HEAVY_LOCK", "/tmp/pimsync-heavy.lock")
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_one(name: str, events: int, lines: list[str]) -> tuple[bool, float]:
    """Run one drill in a child process, echoing and keeping its output; (passed, seconds)."""
    with heavy_lock():
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "drills.run", name, "--events", str(events)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + TIME_LIMIT
        timer = _Timer(child, deadline)
        for line in child.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        child.wait()
        timer.cancel()
        seconds = time.monotonic() - started
    if timer.fired:
        message = f"  {name}: FAIL (stopped after the {TIME_LIMIT} s limit)"
        print(message, flush=True)
        lines.append(message)
    return child.returncode == 0 and not timer.fired, seconds


class _Timer:
    """SIGTERM a drill that overruns its limit (it still tears its database down), then SIGKILL."""

    def __init__(self, child: subprocess.Popen, deadline: float) -> None:
        self.fired = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, args=(child, deadline), daemon=True)
        self.thread.start()

    def _watch(self, child, deadline) -> None:
        if self.done.wait(max(0, deadline - time.monotonic())):
            return
        self.fired = True
        os.killpg(child.pid, signal.SIGTERM)
        if not self.done.wait(30):
            os.killpg(child.pid, signal.SIGKILL)

    def cancel(self) -> None:
        self.done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drills", nargs="*", metavar="name", help=f"any of {', '.join(NAMES)} (default: all)")
    parser.add_argument("--events", type=int, default=600, help="events per drill (default 600)")
    parser.add_argument("--write", help="also write the run as markdown to this file")
    args = parser.parse_args()
    unknown = set(args.drills) - set(NAMES)
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    started = time.time()
    lines: list[str] = []
    results = {}
    for name in args.drills or NAMES:
        results[name] = run_one(name, args.events, lines)
        lines.append("")
    summary = "drills: " + ", ".join(
        f"{name} {'PASS' if ok else 'FAIL'} ({seconds:.0f} s)" for name, (ok, seconds) in results.items()
    )
    print(summary, flush=True)
    lines.append(summary)
    drilling = sum(seconds for _, seconds in results.values())
    if args.write:
        machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}"
        machine += f", Python {platform.python_version()}"
        Path(args.write).write_text(
            "# pimsync failure drills\n\n"
            f"Run with `make drill` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: the drills took {drilling:.0f} s "
            f"({time.time() - started:.0f} s in all, waiting for the machine-wide lock included).\n"
            f"Machine: {machine}.\n\n{HOW_TO_READ}\n```\n" + "\n".join(lines) + "\n```\n"
        )
    sys.exit(0 if all(ok for ok, _ in results.values()) else 1)


if __name__ == "__main__":
    main()
