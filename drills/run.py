"""One failure drill, in a process of its own (Django is set up for that drill's private database):

    python -m drills.run NAME [--events N]

It starts a private PostgreSQL, the loopback stand-ins for IMS, the key server, AEM and the PIM
(standins/peers.py), gunicorn for the webhook and a `manage.py qcluster` (drills/harness.py), then
sends a burst of signed events while the drill's fault happens (the module named after the drill),
redelivers what was not acknowledged (as Adobe does), waits for every event to reach a final status
and prints the ledger. Exit status 0 = PASS, 1 = FAIL.
"""

from __future__ import annotations

import argparse
import faulthandler
import shutil
import signal
import sys
import traceback

from drills.aem_429 import aem_429
from drills.gunicorn_kill import gunicorn_kill
from drills.harness import LATENCY, SWEEP_EVERY, Ledger, World, say
from drills.pim_down import pim_down
from drills.poison import poison
from drills.postgres_restart import postgres_restart
from drills.webhook_down import webhook_down

DRILLS = {
    "postgres-restart": (postgres_restart, {}),
    "gunicorn-kill": (gunicorn_kill, {}),
    # A small attempt budget keeps the drill short: each kill costs a task timeout.
    "poison": (poison, {"PIMSYNC_MAX_ATTEMPTS": "4"}),
    "pim-down": (pim_down, {}),
    "aem-429": (aem_429, {}),
    "webhook-down": (webhook_down, {}),
}


def _interrupted(signum, frame):
    """A SIGTERM (the runner's time limit) still tears the private database down."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(DRILLS))
    parser.add_argument("--events", type=int, default=600)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` shows where a stuck drill is
    function, env = DRILLS[args.name]
    say(f"== drill {args.name}: {' '.join(function.__doc__.split())}")
    world = World(args.name)
    ledger = Ledger()
    try:
        world.start(env)
        world.note(
            f"running: private PostgreSQL on :{world.pg.port}, gunicorn 2x4 on :{world.web_port}, "
            f"qcluster {world.env['PIMSYNC_WORKERS']}x{world.env['PIMSYNC_WORKER_THREADS']}, "
            f"sweeper every {SWEEP_EVERY:.0f} s, {LATENCY * 1000:.0f} ms per PIM/AEM call"
        )
        ledger = function(world, args.events)
    except Exception as exc:
        traceback.print_exc()
        ledger.expect(False, f"the drill itself broke: {type(exc).__name__}: {exc}")
    finally:
        world.close()
    for line in ledger.lines():
        say(line)
    if ledger.passed:
        shutil.rmtree(world.workdir, ignore_errors=True)
    else:
        say(f"  logs of gunicorn and qcluster: {world.workdir}")
    say(f"  {args.name}: {'PASS' if ledger.passed else 'FAIL'}")
    return 0 if ledger.passed else 1


if __name__ == "__main__":
    sys.exit(main())
