"""pimsync's PostgreSQL database backend (ENGINE "pimsync.postgresql"): Django's own, with the
connection habits pimsync's hot paths need (see base.py)."""

from django.db import DEFAULT_DB_ALIAS, connections


def reuse_plans(*, in_transaction: bool = False, using: str = DEFAULT_DB_ALIAS) -> None:
    """Let this thread's connection, or only its current transaction, reuse generic plans
    (`DatabaseWrapper.reuse_plans`); nothing on another database."""
    reuse = getattr(connections[using], "reuse_plans", None)
    if reuse is not None:
        reuse(in_transaction=in_transaction)
