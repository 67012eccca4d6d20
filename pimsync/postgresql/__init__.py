"""pimsync's PostgreSQL database backend (ENGINE "pimsync.postgresql"): Django's own, with the two
connection habits pimsync's hot paths need (see base.py)."""
