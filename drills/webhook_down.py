"""The webhook-down drill: the webhook unreachable (503) for the whole burst and every redelivery;
the I/O Events journal (`standins.journal.ThreadedJournal`) brings every event in."""

from __future__ import annotations

import json
import threading
from collections import Counter

from django.conf import settings
from django.db import connection
from django.db.models import Count

from drills.harness import Ledger, World
from standins.journal import ThreadedJournal
from standins.server import LoopbackServer, QuietHandler


class Down(LoopbackServer):
    """The front door: answers every POST 503 after reading its body, as a broken proxy or deploy
    would. Serves from the start."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.start()


def webhook_down(world: World, count: int) -> Ledger:
    """The webhook answers 503 to the whole burst and every redelivery; the journal recovers every event."""
    from pimsync.adobe import journal  # needs Django set up (World.start)

    deliveries, assets, _ = world.deliveries(count)
    carried = [e for d in deliveries for e in (json.loads(d.body) if d.body.startswith(b"[") else [json.loads(d.body)])]
    registry, down = ThreadedJournal(carried), Down()
    # Only this process pulls (as the schedule would, every second instead of every minute).
    settings.ADOBE_JOURNAL_URL, settings.ADOBE_IMS_ORG_ID = registry.url, "D8111000000000000000000@AdobeOrg"
    web_port, world.web_port = world.web_port, down.port
    world.note("webhook: every POST answered 503 (a broken proxy in front of it)")
    try:
        world.burst(deliveries, redeliver_for=10)
    finally:
        world.web_port = web_port
    stop, pulls = threading.Event(), Counter()

    def pull_loop() -> None:
        while not stop.wait(1.0):
            try:
                pulls[journal.pull().outcome.split(":")[0]] += 1
            except Exception:  # noqa: BLE001 - a drill's background loop must keep going
                pulls["raised"] += 1
                connection.close()

    puller = threading.Thread(target=pull_loop, daemon=True)
    puller.start()
    world.note("journal: pulling every second")
    try:
        done = world.wait_final(count, timeout=150)
    finally:
        stop.set()
        puller.join(timeout=10)
        registry.close()
        down.close()
    return _journal_ledger(world, deliveries, assets, registry, pulls, done)


def _journal_ledger(world, deliveries, assets, registry, pulls, done) -> Ledger:
    from pimsync.models import Arrival, Event, JournalCursor, Status  # needs Django set up (World.start)

    connection.close()
    ledger = Ledger()
    sent = sum(d.events for d in deliveries)
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    stored = Event.objects.count()
    by_journal = Event.objects.filter(arrived_by=Arrival.JOURNAL).count()
    distinct_ids = Event.objects.values("event_id").distinct().count()
    statuses = dict(Event.objects.values_list("status").annotate(n=Count("id")))
    final = sum(statuses.get(s, 0) for s in (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED, Status.IGNORED))
    patched = world.state.patches_per_asset
    twice = {a: n for a, n in patched.items() if n > 1}
    missing, unneeded = assets - set(patched), set(patched) - assets
    cursor = JournalCursor.load()
    ledger.row("events sent (distinct)", sent)
    ledger.row("webhook answers, every pass", ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str)))
    ledger.row("journal pages served 200 / 204", f"{registry.pages['200']} / {registry.pages['204']}")
    ledger.row("journal pulls by outcome", dict(sorted(pulls.items())))
    ledger.row("journal events read (cursor)", cursor.pulled_total)
    ledger.row("events stored / arrived by the journal", f"{stored} / {by_journal}")
    ledger.row("events in a final status", f"{final}  {dict(sorted(statuses.items()))}")
    ledger.row("assets that needed a PATCH / PATCHed", f"{len(assets)} / {len(patched)}")
    ledger.expect(answers and set(answers) == {503}, "the webhook acknowledged nothing (503 every time)")
    ledger.expect(stored == by_journal == final == sent, "stored = arrived by the journal = final = sent")
    ledger.expect(distinct_ids == stored, f"no event stored twice ({stored - distinct_ids} duplicates)")
    ledger.expect(not missing and not unneeded, f"PATCHed = needed ({len(missing)} missing, {len(unneeded)} unneeded)")
    ledger.expect(not twice, f"no asset PATCHed twice ({len(twice)} were)")
    ledger.expect(not statuses.get(Status.FAILED), f"no event failed ({statuses.get(Status.FAILED, 0)} did)")
    ledger.expect(cursor.caught_up_at is not None and not cursor.last_error, "the cursor reached the journal's end")
    ledger.expect(done, "every event ended")
    return ledger
