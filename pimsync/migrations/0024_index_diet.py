"""Fewer indexes to keep up on every event, attempt and asset written; asset leases as HOT updates.

Every INSERT adds an entry to each index of its table, and every UPDATE that is not a HOT update
does too: on PostgreSQL each index dropped here is work saved on every delivery and enrichment.
- `event_asset_id` and the foreign-key indexes of `Event.job` and `Attempt.event` repeat the first
  column of `event_asset_status`, `event_job_status` and `attempt_event_number`, which serve the
  same lookups.
- The `…_like` indexes Django adds on PostgreSQL for a unique or primary-key text column serve
  LIKE 'x%' lookups; event ids and asset ids are only ever looked up whole.
- `Asset.lease_until` loses its index, so that taking a lease (an UPDATE of the two lease columns
  only) can be a HOT update, and the asset table leaves a fifth of each page free for the new row
  versions those updates put on the same page. The setting applies to pages written from now on:
  a large existing table gets the room as its rows are updated, or at once by a rewrite
  (`VACUUM FULL`, which locks the table, or pg_repack).

The indexes are dropped by name, found in the database's catalogue: Django's AlterField would drop
and re-create each foreign key (validating it against every row, with the tables locked) on
PostgreSQL, and copy the whole table on SQLite. On PostgreSQL each is dropped CONCURRENTLY,
outside a transaction: the webhook keeps storing events while the migration waits for the
queries running on those tables (a plain DROP INDEX would queue every INSERT behind them).
"""

import django.db.models.deletion
from django.db import migrations, models

# (model, column): the single-column indexes to drop; those Django made of its own accord are
# found by their column, `event_asset_id` by its name.
SINGLE_COLUMN_INDEXES = [
    ("event", "asset_id"),
    ("event", "job_id"),
    ("event", "event_id"),
    ("attempt", "event_id"),
    ("asset", "asset_id"),
    ("asset", "lease_until"),
]
NAMED = {"event_asset_id"}
ASSET_FILLFACTOR = 80


def _indexes_to_drop(schema_editor, model, column: str) -> list[str]:
    """Indexes on `column` alone that are neither unique nor a Meta index the model keeps."""
    kept = {index.name for index in model._meta.indexes} - NAMED
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)
    return sorted(
        name
        for name, c in constraints.items()
        if c["index"] and not c["unique"] and not c["primary_key"] and c["columns"] == [column] and name not in kept
    )


def drop(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for model_name, column in SINGLE_COLUMN_INDEXES:
        model = apps.get_model("pimsync", model_name)
        for name in _indexes_to_drop(schema_editor, model, column):
            concurrently = "CONCURRENTLY " if postgresql else ""
            schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")
    if postgresql:
        table = schema_editor.quote_name(apps.get_model("pimsync", "asset")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {ASSET_FILLFACTOR})")


def recreate(apps, schema_editor):
    for model_name, column in SINGLE_COLUMN_INDEXES:
        model = apps.get_model("pimsync", model_name)
        field = next(f for f in model._meta.concrete_fields if f.column == column)
        named = [index for index in model._meta.indexes if index.name in NAMED and index.fields == [field.name]]
        if named:
            schema_editor.add_index(model, named[0])
        elif field.unique or field.primary_key:  # the pattern index, PostgreSQL only
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(schema_editor._create_like_index_sql(model, field))
        else:
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("pimsync", "asset")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    # DROP INDEX CONCURRENTLY cannot run inside a transaction. Each step can be run again: a
    # failed upgrade, run once more, drops what is left.
    atomic = False

    dependencies = [
        ('pimsync', '0023_mapping_versions_on_unmapped'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name='event',
                    name='event_asset_id',
                ),
                migrations.AlterField(
                    model_name='asset',
                    name='lease_until',
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AlterField(
                    model_name='attempt',
                    name='event',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempt_set', to='pimsync.event'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='job',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='events', to='pimsync.job'),
                ),
            ],
            database_operations=[migrations.RunPython(drop, recreate)],
        ),
    ]
