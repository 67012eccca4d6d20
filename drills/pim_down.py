"""The pim-down drill: the PIM refusing connections, then answering 503, then back."""

from __future__ import annotations

from django.db.models import Max

from drills.harness import Ledger, World, balance, faulted
from standins.peers import StubServer


def pim_down(world: World, count: int) -> Ledger:
    """The PIM refuses connections for 10 s, answers 503 for 10 s more, then comes back."""
    deliveries, assets, _ = world.deliveries(count)
    phase = {"now": "refusing"}

    def fault(kind: str, key: str):
        if kind == "pim" and phase["now"] != "up":
            return 503, {"Connection": "close"}  # kept-alive connections: a 503 and the socket closed
        return None

    world.state.fault = fault
    world.pim.__exit__()  # new connections are refused from now on
    world.note("PIM: stopped listening (connections refused)")

    def answer_503():
        world.pim = StubServer(world.state, world.pim_port).__enter__()
        phase["now"] = "503"
        world.note("PIM: listening again, answering 503 to every lookup")

    def back():
        phase["now"] = "up"
        world.note("PIM: back to normal")

    world.at(10, answer_503)
    fault_end = world.at(20, back)
    world.burst(deliveries)
    fault_end.join()
    done = world.wait_final(count, timeout=100)
    ledger = balance(world, deliveries, assets, set())
    from pimsync.models import Attempt, Event  # needs Django set up (World.start)

    retried = Attempt.objects.filter(outcome="retrying").values("event").distinct().count()
    most = Event.objects.aggregate(m=Max("attempts"))["m"]
    ledger.row("events that were retried / most attempts", f"{retried} / {most}")
    ledger.expect(faulted(world, "pim") > 0, f"the workers met the outage ({faulted(world, 'pim')} PIM calls failed)")
    ledger.expect(retried > 0, "events were retried with backoff")
    ledger.expect(done, "every event ended after the PIM came back")
    return ledger
