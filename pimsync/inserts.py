"""Multi-row INSERTs in plain SQL, for the two hot paths that write rows by the batch: the
webhook's events and the worker's attempts.

Django's bulk_create builds and compiles the statement on every call (a tenth of a delivery's
CPU in py-spy); here the text is made once per model, row count and tail, and the caller hands
values its fields have already prepared. A list longer than one statement may bind is split into
as many statements as needed, run in the caller's transaction.
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connections

# The most parameters one statement may bind: PostgreSQL's protocol counts them in 16 bits, and
# Django names a lower limit for SQLite.
MAX_PARAMETERS = 65_535


@functools.cache
def fields(model) -> tuple:
    """The model's columns but its primary key, in order: what `insert` writes, and in which order
    its rows hold their values (models do not change at run time)."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def rows_per_statement(model) -> int:
    """How many rows of `model` one INSERT can carry within the database's limit of parameters."""
    return (connections[DEFAULT_DB_ALIAS].features.max_query_params or MAX_PARAMETERS) // len(fields(model))


def insert(model, rows: list[list], tail: str = "") -> list[tuple]:
    """INSERT `rows` of `model` (each the prepared values of `fields(model)`, in order), followed by
    `tail` (ON CONFLICT …, RETURNING …); the rows RETURNING gave, if any."""
    db = connections[DEFAULT_DB_ALIAS]
    per_statement = rows_per_statement(model)
    returned = []
    with db.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(_sql(model, len(chunk), tail, db.vendor), [value for row in chunk for value in row])
            if cursor.description:
                returned += cursor.fetchall()
    return returned


@functools.lru_cache(maxsize=128)
def _sql(model, count: int, tail: str, vendor: str) -> str:
    """The INSERT of `count` rows, written once per model, row count, tail and database."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields(model))) + ")"
    columns = ", ".join(quote(f.column) for f in fields(model))
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * count)} {tail}".rstrip()
