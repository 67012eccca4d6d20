"""The doctor's lines and report, and what every check shares (`pimsync.doctor`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from django.utils import timezone

from pimsync.adobe import aem
from pimsync.models import Asset, DoctorRun
from pimsync.outbound import http

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


@dataclass
class Line:
    """One check's result."""

    status: str
    system: str
    asked: str
    answered: str
    todo: str = ""

    def text(self) -> str:
        todo = f" → to do: {self.todo}" if self.todo else ""
        return f"{self.status:<4}  {self.system}: asked {self.asked} → {self.answered}{todo}"


@dataclass
class Report:
    """Every line of one run."""

    lines: list[Line] = field(default_factory=list)
    started_at: object = field(default_factory=timezone.now)

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)

    @property
    def failed(self) -> bool:
        return self.count(FAIL) > 0

    def as_json(self) -> str:
        return json.dumps(
            {
                "ok": self.count(OK),
                "failed": self.count(FAIL),
                "skipped": self.count(SKIP),
                "checks": [asdict(line) for line in self.lines],
            },
            indent=2,
        )

    def store(self) -> DoctorRun:
        """Keep this run for the overview."""
        return DoctorRun.objects.create(
            started_at=self.started_at,
            finished_at=timezone.now(),
            ok=self.count(OK),
            failed=self.count(FAIL),
            skipped=self.count(SKIP),
            lines=[asdict(line) for line in self.lines],
        )


@dataclass
class Options:
    """What the command line asked for: the asset, the product key, the write test."""

    asset_id: str = ""
    product_key: str = ""
    write_test: bool = False


@dataclass
class Context:
    """What one run has learnt so far, for the checks after: the token, the asset, its metadata."""

    options: Options
    report: Report
    ims_token: str = ""  # "" when IMS gave none: the checks that need one are skipped
    asset: Asset | None = None
    asset_id: str = ""
    metadata: aem.Metadata | None = None

    def add(self, status: str, system: str, asked: str, answered: str, todo: str = "") -> None:
        self.report.lines.append(Line(status, system, asked, answered[:1000], todo))


def failure(exc: Exception) -> str:
    """What went wrong, in words fit for a line (HttpError messages carry no credentials)."""
    return exc.message if isinstance(exc, http.HttpError) else str(exc)
