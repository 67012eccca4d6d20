"""Plain SQL for the hot paths, where the ORM's compiling costs more than running the statement.

- `insert`: multi-row INSERTs, for the webhook's events and the worker's attempts; `insert_each`
  for the drain's new assets. Django's bulk_create builds and compiles the statement on every
  call (a tenth of a delivery's CPU in py-spy); here the text is made once per model, row count
  and tail, and the caller hands values its fields have already prepared. A list longer than one
  statement may bind is split into as many statements as needed, run in the caller's transaction.
- `instances`: model instances from a statement that returns every column (`UPDATE … RETURNING
  columns(model)`), for the worker's claim and lease. Django's `Model.objects.raw()` matched the
  columns to fields and looked up their converters on every call: three quarters of its cost
  (py-spy); here that is done once per model.
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.fields import AutoFieldMixin
from django.db.models.sql import Query

# The most parameters one statement may bind: PostgreSQL's protocol counts them in 16 bits, and
# Django names a lower limit for SQLite.
MAX_PARAMETERS = 65_535


@functools.cache
def fields(model) -> tuple:
    """The model's columns but an automatic primary key (the database numbers the rows), in order:
    what `insert` writes, and in which order its rows hold their values (models do not change at
    run time)."""
    return tuple(f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin)))


@functools.cache
def column_names(model) -> frozenset[str]:
    """The attnames of `fields(model)`: what a row given to `prepared` may name."""
    return frozenset(f.attname for f in fields(model))


def prepared(model, values: dict, db) -> list:
    """`values` (by attname) as the database takes them, in the order of `fields(model)`; a column
    `values` leaves out takes its field's default. Each value goes through its field, with two
    shortcuts py-spy asked for: a `str` for a text column is its own database value (CharField and
    TextField give it back unchanged; the call was 2% of a delivery's CPU), and a constant default
    is prepared once per database (an event leaves about half its columns to their defaults, and
    preparing them for every row was 12% of the webhook's CPU)."""
    row = []
    for f, plain, default in zip(fields(model), _stored_as_is(model), _defaults(model, db.vendor), strict=True):
        if f.attname in values:
            value = values[f.attname]
            row.append(value if plain and type(value) is str else f.get_db_prep_save(value, db))
        else:
            row.append(f.get_db_prep_save(f.get_default(), db) if default is _EACH_TIME else default)
    return row


# A default computed for each row (a timestamp's `now`) rather than once.
_EACH_TIME = object()


@functools.cache
def _stored_as_is(model) -> tuple[bool, ...]:
    """Per column of `fields(model)`, whether a `str` goes to the database as it is."""
    return tuple(type(f) in (models.CharField, models.TextField) for f in fields(model))


@functools.lru_cache(maxsize=64)
def _defaults(model, vendor: str) -> tuple:
    """Per column of `fields(model)`, its default as the database takes it, or `_EACH_TIME` for a
    callable one."""
    db = connections[DEFAULT_DB_ALIAS]
    return tuple(
        # has_default() first: a field without a default holds the class NOT_PROVIDED, a callable.
        _EACH_TIME if f.has_default() and callable(f.default) else f.get_db_prep_save(f.get_default(), db)
        for f in fields(model)
    )


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


def insert_each(model, rows: list[list], tail: str = "") -> None:
    """`insert` as one single-row statement run for each row (executemany), for rows of many
    columns: psycopg keeps the parsed text of a statement of at most 50 parameters, and sends the
    runs in one pipeline; a multi-row INSERT of 64 assets (1,472 parameters) it parsed again on
    every call (7% of a worker's CPU in py-spy)."""
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.executemany(_sql(model, 1, tail, db.vendor), rows)


@functools.lru_cache(maxsize=128)
def _sql(model, count: int, tail: str, vendor: str) -> str:
    """The INSERT of `count` rows, written once per model, row count, tail and database."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields(model))) + ")"
    columns = ", ".join(quote(f.column) for f in fields(model))
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * count)} {tail}".rstrip()


@functools.cache
def columns(model) -> str:
    """Every column of `model`, quoted, in the order `instances` reads them."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(quote(f.column) for f in model._meta.concrete_fields)


def instances(model, sql: str, params: list) -> list:
    """Run `sql`, which returns `columns(model)` in order; its rows as instances of `model`, as
    the ORM would load them (the database's converters applied, e.g. SQLite's text to datetime)."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return []
    converters = _converters(model, db.vendor)
    names = _loaded_names(model)
    loaded = []
    for row in rows:
        if converters:
            row = list(row)
            for index, (functions, expression) in converters:
                value = row[index]
                for convert in functions:
                    value = convert(value, expression, db)
                row[index] = value
        loaded.append(model.from_db(db.alias, names, row))
    return loaded


@functools.cache
def _loaded_names(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


@functools.lru_cache(maxsize=64)
def _converters(model, vendor: str) -> tuple:
    """(column index, (converter functions, column expression)) of every column that has one, as
    the ORM's compiler finds them; the same for every connection to one kind of database."""
    db = connections[DEFAULT_DB_ALIAS]
    compiler = db.ops.compiler("SQLCompiler")(Query(model), db, DEFAULT_DB_ALIAS)
    expressions = [f.get_col(model._meta.db_table) for f in model._meta.concrete_fields]
    return tuple(compiler.get_converters(expressions).items())
