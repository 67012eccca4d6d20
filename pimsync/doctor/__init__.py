"""`manage.py doctor`: prove every connection of the configured deployment, changing nothing a user
can see. One line per check: OK, FAIL or SKIP, what was asked, what answered, and what to do.

What is checked, in order: IMS (a token asked for now, and whether its scopes allow the journal),
the I/O Events key server, the journal (one read that moves no cursor), AEM (an asset's metadata
with its ETag; with `write_test`, one property's current value written back once per PATCH path
style), the backfill endpoints (the asset's folder and path looked up), the PIM (its token, a
product, the attribute list, the write-back attribute) and the webhook secrets that are set.

Every message is built from settings names, hosts without credentials and the peers' own error
bodies; no secret is ever in a line, so a run can be stored (`DoctorRun`) and shown on the overview.

`report` holds the lines and the report, `adobe` and `pim` the checks.
"""

from __future__ import annotations

from collections.abc import Callable

from pimsync.doctor.adobe import (
    check_aem,
    check_backfill,
    check_ims,
    check_journal,
    check_key_server,
    check_write_test,
)
from pimsync.doctor.pim import check_pim, check_secrets
from pimsync.doctor.report import FAIL, OK, SKIP, Context, Line, Options, Report

__all__ = ["FAIL", "OK", "SKIP", "Line", "Options", "Report", "run"]

CHECKS = (
    check_ims,
    check_key_server,
    check_journal,
    check_aem,
    check_write_test,
    check_backfill,
    check_pim,
    check_secrets,
)


def run(options: Options, progress: Callable[[Line], None] | None = None) -> Report:
    """Every check, in order; `progress` sees each line as it is made."""
    report = Report()
    context = Context(options, report)
    for check in CHECKS:
        before = len(report.lines)
        try:
            check(context)
        except Exception as exc:  # a check that breaks is one failed line, never a crash
            context.add(FAIL, check.__name__.removeprefix("check_"), "the check", f"broke: {type(exc).__name__}")
        if progress:
            for line in report.lines[before:]:
                progress(line)
    return report
