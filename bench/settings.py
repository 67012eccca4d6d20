"""pimsync's production settings plus one trivial view: the stack's own ceiling for ratios."""

from pimsync.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
