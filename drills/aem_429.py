"""The aem-429 drill: AEM answering 429 with Retry-After to every call for a while."""

from __future__ import annotations

from drills.harness import Ledger, World, balance, faulted


def aem_429(world: World, count: int) -> Ledger:
    """AEM answers every call 429 with Retry-After: 2 for 15 s, then normally."""
    deliveries, assets, _ = world.deliveries(count)
    limited = {"on": True}

    def fault(kind: str, key: str):
        if kind.startswith("aem") and limited["on"]:
            return 429, {"Retry-After": "2"}
        return None

    world.state.fault = fault
    world.note("AEM: answering 429 with Retry-After: 2 to every call")

    def back():
        limited["on"] = False
        world.note("AEM: back to normal")

    fault_end = world.at(15, back)
    world.burst(deliveries)
    fault_end.join()
    done = world.wait_final(count, timeout=100)
    ledger = balance(world, deliveries, assets, set())
    from pimsync.models import Attempt  # needs Django set up (World.start)

    # Retry-After honoured: after an attempt that met a 429, the next one starts 2 s later or more.
    early, gaps = 0, 0
    previous = {}
    for attempt in Attempt.objects.order_by("event_id", "number").values(
        "event_id", "started_at", "duration_ms", "aem_status"
    ):
        before = previous.get(attempt["event_id"])
        if before and before["aem_status"] == 429:
            gaps += 1
            ended = before["started_at"].timestamp() + before["duration_ms"] / 1000
            if attempt["started_at"].timestamp() - ended < 1.9:
                early += 1
        previous[attempt["event_id"]] = attempt
    ledger.row("retries after a 429 / started before Retry-After", f"{gaps} / {early}")
    ledger.expect(faulted(world, "aem") > 0, f"the workers met the 429s ({faulted(world, 'aem')} AEM calls)")
    ledger.expect(gaps > 0 and early == 0, "every retry after a 429 waited for Retry-After")
    ledger.expect(done, "every event ended after AEM stopped limiting")
    return ledger
