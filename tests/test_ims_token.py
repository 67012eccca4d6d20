"""The IMS token is shared by every worker process and asked for once
(Adobe throttles integrations that mint too many tokens)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from pimsync.adobe import ims
from pimsync.models import AccessToken
from pimsync.outbound.tokens import SharedToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_process_waits_for_the_refresh_another_process_claimed(world):
    """Another process holds the refresh claim and stores its token a moment later: this one
    waits for it instead of asking IMS itself (no stampede when many workers start at once)."""
    AccessToken.objects.create(
        name="ims",
        encrypted=b"",
        expires_at=timezone.now() - timedelta(seconds=1),
        refreshing_until=timezone.now() + timedelta(seconds=30),
    )

    def the_other_process_finishes():
        time.sleep(0.3)
        AccessToken.objects.filter(name="ims").update(
            encrypted=ims._fernet().encrypt(b"token-from-the-other-process"),
            expires_at=timezone.now() + timedelta(hours=24),
            refreshing_until=None,
        )
        connection.close()

    other = threading.Thread(target=the_other_process_finishes)
    other.start()
    token = ims.get_token()
    other.join()
    assert token == "token-from-the-other-process"
    assert world.ims.issued == []


def test_a_processs_threads_asking_at_once_read_the_stored_token_once(world, monkeypatch):
    """A worker's threads start together with nothing in memory: the first reads the shared row,
    the others, waiting meanwhile, take what it read."""
    stored = ims.get_token()
    ims.forget()  # this process's copy gone; the row stays
    reads = []
    read_row = SharedToken._stored

    def counted(self):
        reads.append(threading.get_ident())
        time.sleep(0.05)  # the other threads are at the lock by now
        return read_row(self)

    monkeypatch.setattr(SharedToken, "_stored", counted)

    def thread_asks(_) -> str:
        try:
            return ims.get_token()
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(thread_asks, range(6))) == [stored] * 6
    assert len(reads) == 1
    assert len(world.ims.issued) == 1


def test_an_expiring_token_is_renewed_before_it_expires(world):
    first = ims.get_token()
    AccessToken.objects.filter(name="ims").update(expires_at=timezone.now() + timedelta(minutes=4))
    ims.forget()
    assert ims.get_token() != first  # within EXPIRY_MARGIN of expiry: renewed
    assert len(world.ims.issued) == 2


def test_an_ims_answer_nested_too_deeply_is_a_clear_error_not_a_crash(world):
    from pimsync.outbound import http

    deep = "[" * 100_000 + "]" * 100_000
    world.ims.server.clear()  # the token endpoint answers with the hostile body
    world.ims.server.expect_request("/ims/token/v3", method="POST").respond_with_data(
        deep, content_type="application/json"
    )
    ims.forget()
    with pytest.raises(http.HttpError, match="IMS answered with JSON nested too deeply to read"):
        ims.get_token()
