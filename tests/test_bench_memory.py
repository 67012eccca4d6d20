"""The benchmark's worker-memory figure: growth after a process is warm, not its start."""

from __future__ import annotations

import pytest

from bench import e2e

MB = 1024


def figure(capsys, samples) -> float:
    e2e.report_memory_drift(1000, samples, threads=16)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("memory."))
    return float(line.split()[1])


def run(worker_b, *, steps: int = 80) -> list:
    """Samples of two workers: A enriching from the start at a steady 70 MB, B as `worker_b(step)`."""
    return [(step * 1000 // steps, {1: (70 * MB, 18), 2: worker_b(step)}) for step in range(steps)]


def test_a_worker_that_starts_enriching_after_the_tenth_is_measured_from_its_warm_pool(capsys):
    # B idles at 54 MB with one thread until step 30, then builds its pool and stays at 71 MB.
    samples = run(lambda step: (54 * MB, 1) if step < 30 else (71 * MB, 18))
    assert figure(capsys, samples) == pytest.approx(0.0)


def test_a_worker_growing_after_its_pool_is_warm_is_a_drift(capsys):
    # B starts late too, warm at step 50 (71 MB), then keeps growing to 98 MB by step 79.
    samples = run(lambda step: (54 * MB, 1) if step < 30 else ((71 + max(0, step - 52)) * MB, 18))
    assert figure(capsys, samples) == pytest.approx((98 - 71) / 71 * 100, rel=0.01)


def test_a_worker_warm_at_the_tenth_is_measured_from_the_tenth(capsys):
    samples = run(lambda step: ((60 + step // 8) * MB, 18))
    assert figure(capsys, samples) == pytest.approx((69 - 61) / 61 * 100, rel=0.01)
