"""The benchmark's output: one line per figure with its target and the ratio to it, notes under
them, and BENCHMARKS.md written from the same lines."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

HOW_TO_READ = """\
Everything runs on the one machine at once: PostgreSQL (synchronous commit on), gunicorn
(gthread, 4 processes x 4 threads), django-q2 workers (2 processes x 16 threads unless a line says
otherwise), the IMS/AEM/PIM stand-ins (50 ms on every call unless a line says otherwise) and the
load generator. Each line: figure, value, target, ratio to the target (>= 1 meets it). Machines of
the same kind have differed by up to twice in pace, and one run differs from the next by 10-20%:
compare two commits by alternating them on one machine, as the sections below do. On two cores
the single-event ingest and the 10,000 assets at 50 ms are bound by the CPU that all these
processes share, so the Little's-law ratio says how much of the latency-bound ceiling such a
machine reaches, not how much concurrency is idle.
"""

lines: list[str] = []


def report(name: str, value: float, target: str, ratio: float | None, unit: str = "") -> None:
    """One figure: its value, target and ratio (≥ 1.0 meets the target)."""
    verdict = "" if ratio is None else ("PASS" if ratio >= 1.0 else "MISS")
    text = f"{name:<44} {value:>12,.2f} {unit:<10} target {target:<14} ratio {ratio if ratio is not None else '-':>5}"
    if ratio is not None:
        text = text.replace(f"ratio {ratio}", f"ratio {ratio:.2f}")
    line = f"{text} {verdict}"
    lines.append(line)
    print(line, flush=True)


def note(text: str) -> None:
    """A line of explanation under the figures."""
    lines.append(f"  {text}")
    print(f"  {text}", flush=True)


def heading(scenario: str) -> None:
    """The line that starts a scenario's figures."""
    lines.append(f"== {scenario}")
    print(f"== {scenario}", flush=True)


def write_markdown(path: str, db_url: str, seconds: float) -> None:
    """BENCHMARKS.md: when and where the run was, how to read it, and every line printed."""
    machine = (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, PostgreSQL at {db_url.rsplit('@', 1)[-1]}"
    )
    Path(path).write_text(
        "# pimsync benchmarks\n\n"
        f"Run with `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s.\n"
        f"Machine: {machine}.\n\n{HOW_TO_READ}\n```\n" + "\n".join(lines) + "\n```\n"
    )
