"""`make bench`: start everything on loopback, run each scenario, print one line per figure with
its target and the ratio to it. Needs PostgreSQL (DATABASE_URL, default a database
`pimsync_bench` on 127.0.0.1) and, for scale-out, Redis on 127.0.0.1:6379.

    python -m bench [scenario ...] [--events N] [--latency S] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time

from bench.report import heading, write_markdown
from bench.stack import Stack

SCENARIOS = (
    "ingest",
    "batch",
    "e2e",
    "dashboard",
    "scaleout",
    "memory",
    "purge",
    "resync",
    "fairness",
    "assets",
    "throttle",
    "cpu",
    "akeneo-webhook",
    "production",
    "access-log",
    "outbound-call",
)


def arguments() -> argparse.Namespace:
    """The command line: which scenarios, and their sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--dashboard-rows", type=int, default=1_000_000)
    parser.add_argument("--purge-rows", type=int, default=1_000_000)
    parser.add_argument("--resync-assets", type=int, default=2_000, help="assets of the re-sync pace runs")
    parser.add_argument("--resync-rate", type=float, default=20, help="PIMSYNC_RESYNC_RATE the pace must keep")
    parser.add_argument("--resync-max-rate", type=float, default=1_000, help="a rate above what workers do")
    parser.add_argument("--fairness-assets", type=int, default=10_000)
    parser.add_argument("--fairness-rate", type=float, default=200, help="PIMSYNC_RESYNC_RATE during fairness")
    parser.add_argument("--live-events", type=int, default=300, help="live uploads during the fairness re-sync")
    parser.add_argument("--live-rate", type=float, default=5, help="live uploads per second")
    parser.add_argument("--asset-rows", type=int, default=1_000_000, help="assets behind the Assets list")
    parser.add_argument("--throttle-calls", type=int, default=2_000, help="GETs each way for the pause check")
    parser.add_argument("--akeneo-batches", type=int, default=300, help="legacy requests of 10 in the Akeneo burst")
    parser.add_argument("--production-events", type=int, default=3_000, help="deliveries of the production shape")
    parser.add_argument("--write", help="also write the results as markdown to this file")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return args


def scenario_functions() -> dict:
    """Each scenario's function; importable only once `Stack()` has set up Django."""
    # The scenario modules import pimsync's models at their top, so they are imported after
    # bench.stack.django_ready() (Django set up with the DATABASE_URL chosen at run time).
    from bench import access_log, akeneo, cpu, dataset, e2e, ingest, outbound_call, production, purge, resync  # noqa: PLC0415

    return {
        "ingest": ingest.ingest,
        "batch": ingest.batch,
        "e2e": e2e.e2e,
        "dashboard": dataset.dashboard,
        "scaleout": e2e.scaleout,
        "memory": ingest.memory,
        "purge": purge.purge,
        "resync": resync.resync_pace,
        "fairness": resync.fairness,
        "assets": resync.assets_list,
        "throttle": resync.throttle_cost,
        "cpu": cpu.cpu,
        "akeneo-webhook": akeneo.akeneo_webhook,
        "production": production.production,
        "access-log": access_log.access_log,
        "outbound-call": outbound_call.outbound_call,
    }


def main() -> None:
    """Run the chosen scenarios (default: all) against one stack, then stop it."""
    args = arguments()
    stack = Stack(args)
    started = time.time()
    try:
        functions = scenario_functions()
        for name in args.scenarios or SCENARIOS:
            heading(name)
            functions[name](stack)
    finally:
        stack.close()
    if args.write:
        write_markdown(args.write, stack.db_url, time.time() - started)


if __name__ == "__main__":
    main()
