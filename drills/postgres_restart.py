"""The postgres-restart drill: PostgreSQL stopped under the burst, and restarted under the
dashboard's open connections."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from drills.harness import Ledger, World, balance


def _get_all(world: World, path: str, count: int, cookie: str) -> Counter:
    """GET `path` `count` times from 8 threads, a connection each time (any gunicorn thread answers)."""

    def get(_):
        conn = http.client.HTTPConnection("127.0.0.1", world.web_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            return f"connection error ({type(exc).__name__})"
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(get, range(count)))


def _staff_cookie() -> str:
    """A logged-in superuser's session cookie, made directly in the database."""
    # The user and session models need Django set up (World.start): importable only from here on.
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.create_superuser("drill", "drill@example.com", "drill-password-42")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def postgres_restart(world: World, count: int) -> Ledger:
    """PostgreSQL stopped (-m fast) for 3 s in the middle of the burst, then started again; once
    everything finished, restarted once more under the dashboard's open connections."""
    cookie = _staff_cookie()
    deliveries, assets, _ = world.deliveries(count)

    def restart():
        world.note("PostgreSQL: pg_ctl stop -m fast")
        world.pg.stop("fast")
        time.sleep(3)
        world.pg.start()
        world.note("PostgreSQL: started again")

    fault = world.at(2.0, restart)
    world.burst(deliveries)
    fault.join()
    done = world.wait_final(count, timeout=90)
    ledger = balance(world, deliveries, assets, set())
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    unavailable = answers.get(503, 0)
    ledger.expect(unavailable > 0, f"the webhook answered 503 while PostgreSQL was down ({unavailable})")
    ledger.expect(not answers.get(500), f"never a 500 ({answers.get(500, 0)})")
    ledger.expect(done, "everything finished afterwards")
    # Every gunicorn thread now holds a connection to the database; a restart breaks them all.
    pages = ("/admin/", "/admin/pimsync/event/", "/healthz")
    before = Counter()
    for path in pages:
        before.update(_get_all(world, path, 16, cookie))
    ledger.row("GETs of those pages before it", ", ".join(f"{k}: {v}" for k, v in sorted(before.items(), key=str)))
    world.pg.stop("fast")
    world.pg.start()
    world.note("PostgreSQL: restarted again (pg_ctl stop -m fast; start), nothing else running")
    for path in pages:
        statuses = _get_all(world, path, 16, cookie)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))
        ledger.row(f"GET {path} x16 after the second restart", summary)
        ledger.expect(set(statuses) == {200}, f"{path} answers 200 on connections opened before the restart")
    return ledger
