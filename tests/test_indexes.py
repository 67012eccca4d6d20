"""The indexes of pimsync's tables: none that another index already serves, none on the lease
columns (so that taking a lease is a HOT update on PostgreSQL), and the migration that dropped the
redundant ones keeps what it should, both ways."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from pimsync import worker
from pimsync.models import Asset, Event, Status

BEFORE_DIET = [("pimsync", "0023_mapping_versions_on_unmapped")]


def indexes(table: str) -> list[tuple[str, bool, bool, tuple[str, ...]]]:
    """Each index of `table` as the database holds it: (name, unique, partial, key columns with
    their operator class and order, as the database spells them)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                SELECT c.relname, x.indisunique, x.indpred IS NOT NULL, array(
                    SELECT a.attname
                           || CASE WHEN o.opcdefault THEN '' ELSE ' ' || o.opcname END
                           || CASE WHEN x.indoption[k - 1] & 1 = 1 THEN ' DESC' ELSE '' END
                    FROM generate_series(1, x.indnkeyatts) k
                    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[k - 1]
                    JOIN pg_opclass o ON o.oid = x.indclass[k - 1]
                    ORDER BY k
                )
                FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                WHERE x.indrelid = %s::regclass
                """,
                [table],
            )
            return [(name, unique, partial, tuple(keys)) for name, unique, partial, keys in cursor.fetchall()]
        found = []
        for _, name, unique, _, partial in cursor.execute(f"PRAGMA index_list({connection.ops.quote_name(table)})"):
            rows = connection.cursor().execute(f"PRAGMA index_xinfo({connection.ops.quote_name(name)})").fetchall()
            keys = tuple(f"{column}{' DESC' if desc else ''}" for _, _, column, desc, _, key in rows if key)
            found.append((name, bool(unique), bool(partial), keys))
        return found


def tables() -> list[str]:
    return sorted({model._meta.db_table for model in apps.get_app_config("pimsync").get_models()})


@pytest.mark.django_db
def test_no_index_repeats_the_first_columns_of_another():
    """Every index costs an entry on each INSERT and on each UPDATE that is not HOT: one whose key
    columns open another's key (same operator class, same order) serves no lookup that one does
    not, unless it enforces uniqueness or one of the two covers only some rows (a partial index)."""
    # An index declared with an operator class is PostgreSQL's (LIKE 'x%' on a btree); SQLite
    # ignores the class and holds a plain copy.
    for_postgresql = {
        index.name
        for model in apps.get_app_config("pimsync").get_models()
        for index in model._meta.indexes
        if index.opclasses
    }
    repeats = []
    for table in tables():
        found = indexes(table)
        for name, unique, partial, keys in found:
            if unique or partial or (connection.vendor == "sqlite" and name in for_postgresql):
                continue
            for other, _, other_partial, other_keys in found:
                if other != name and not other_partial and other_keys[: len(keys)] == keys:
                    repeats.append(f"{table}.{name} {keys} is served by {other} {other_keys}")
    assert not repeats, repeats
    # The check sees what it should: the event table's search and due-work indexes are there.
    event_indexes = {name: keys for name, _, _, keys in indexes(Event._meta.db_table)}
    assert event_indexes["event_asset_status"] == ("asset_id", "status")


@pytest.mark.django_db
def test_no_index_holds_a_lease_column():
    """Taking or giving back a lease changes only the lease columns: with neither in an index,
    PostgreSQL can make that UPDATE a HOT one (no index entry written)."""
    for model in apps.get_app_config("pimsync").get_models():
        columns = {f.column for f in model._meta.concrete_fields}
        if not {"lease_token", "lease_until"} <= columns:
            continue
        for name, _, _, keys in indexes(model._meta.db_table):
            assert not {key.split()[0].strip('"') for key in keys} & {"lease_token", "lease_until"}, (model, name)


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="HOT updates are PostgreSQL's")
def test_taking_an_assets_lease_writes_no_index_entry():
    Asset.objects.create(asset_id="urn:aaid:aem:hot", path="/content/dam/p/hot.png", name="hot.png")

    def updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated(t), pg_stat_get_xact_tuples_hot_updated(t)"
                " FROM (SELECT %s::regclass AS t) AS asset_table",
                [Asset._meta.db_table],
            )
            return cursor.fetchone()

    before = updates()
    token, row = Asset.acquire_and_read("urn:aaid:aem:hot")
    assert row.lease_token == token
    Asset.release("urn:aaid:aem:hot", token)
    after = updates()
    assert after[0] - before[0] == 2, "the lease is taken and given back with one UPDATE each"
    assert after[1] - before[1] == 2, "both UPDATEs are HOT: no index entry written"


@pytest.mark.django_db
def test_the_drain_skips_assets_whose_lease_runs():
    now = timezone.now()
    for n in range(3):
        asset = f"urn:aaid:aem:{n}"
        Event.objects.create(
            event_id=f"e{n}", type="t", source="s", payload={}, asset_id=asset, status=Status.RECEIVED,
            next_attempt_at=now - timedelta(seconds=1),
        )  # fmt: skip
    Asset.objects.create(asset_id="urn:aaid:aem:0", lease_token="held", lease_until=now + timedelta(minutes=5))
    Asset.objects.create(asset_id="urn:aaid:aem:1", lease_token="dead", lease_until=now - timedelta(minutes=5))
    assert sorted(worker.candidates(10, set())) == ["urn:aaid:aem:1", "urn:aaid:aem:2"]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's EXPLAIN ANALYZE")
def test_the_drain_reads_due_events_in_index_order_not_all_of_them():
    """A re-sync leaves hundreds of thousands of events due; the drain asks for its next few assets
    many times a second, and each time must read a few index entries, not sort every due event."""
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            event_id=f"due-{n}", type="t", source="s", payload={}, asset_id=f"urn:aaid:aem:{n}",
            status=Status.RETRYING if n % 10 == 0 else Status.RECEIVED, priority=n % 2,
            next_attempt_at=now - timedelta(seconds=n),
        )
        for n in range(3000)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Event._meta.db_table}")
    executed = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        chosen = worker.candidates(4, set())
    # The oldest due events of the lower priority: live uploads before a re-sync's.
    assert {int(asset.rsplit(":", 1)[1]) % 2 for asset in chosen} == {0} and len(chosen) == 4

    def rows_read(node: dict) -> int:
        own = (
            node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            if node.get("Relation Name") == "pimsync_event"
            else 0
        )
        return own * node["Actual Loops"] + sum(rows_read(child) for child in node.get("Plans", []))

    read = 0
    with connection.cursor() as cursor:
        for sql, params in executed:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            read += rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    assert 0 < read <= 2 * 4 * 4, f"{read} due events read to choose 4 assets"


@pytest.mark.django_db
def test_the_drain_takes_a_live_retry_before_a_long_re_sync():
    """The two pending statuses are read apart and merged: a retrying live event (priority 0) is
    chosen before any number of due re-sync events (priority 1), however old they are."""
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            event_id=f"resync-{n}", type="t", source="s", payload={}, asset_id=f"urn:aaid:aem:resync-{n}",
            status=Status.RECEIVED, priority=1, next_attempt_at=now - timedelta(hours=1, seconds=n),
        )
        for n in range(40)
    )  # fmt: skip
    Event.objects.create(
        event_id="live", type="t", source="s", payload={}, asset_id="urn:aaid:aem:live", status=Status.RETRYING,
        priority=0, next_attempt_at=now - timedelta(seconds=1),
    )  # fmt: skip
    assert worker.candidates(1, set()) == ["urn:aaid:aem:live"]
    assert "urn:aaid:aem:live" in worker.candidates(3, set())


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_the_diet_drops_only_the_repeated_indexes_and_undoes_cleanly():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()

    def described() -> dict[str, tuple[str, tuple[str, ...]]]:
        return {name: (table, keys) for table in tables() for name, _, _, keys in indexes(table)}

    def asset_table_options() -> list[str]:
        if connection.vendor != "postgresql":
            return []
        with connection.cursor() as cursor:
            cursor.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [Asset._meta.db_table])
            return cursor.fetchone()[0] or []

    now = described()
    assert asset_table_options() == (["fillfactor=80"] if connection.vendor == "postgresql" else [])
    _migrate(BEFORE_DIET)
    try:
        before = described()
        assert asset_table_options() == []
        dropped = {before[name] for name in before.keys() - now.keys()}
        repeated = {
            ("pimsync_event", ("asset_id",)),  # event_asset_status
            ("pimsync_event", ("job_id",)),  # event_job_status
            ("pimsync_attempt", ("event_id",)),  # attempt_event_number
            ("pimsync_asset", ("lease_until",)),  # for HOT leases
        }
        if connection.vendor == "postgresql":  # Django's pattern indexes beside a unique text column
            repeated |= {
                ("pimsync_event", ("event_id varchar_pattern_ops",)),
                ("pimsync_asset", ("asset_id varchar_pattern_ops",)),
            }
        assert dropped == repeated and not now.keys() - before.keys()
    finally:
        _migrate(latest)
    assert described() == now
    assert asset_table_options() == (["fillfactor=80"] if connection.vendor == "postgresql" else [])
