"""Backfill: register AEM assets pimsync has never seen (uploaded before it was installed, or while
no event reached it) and re-sync them, from a CSV file or by walking a DAM folder.

Two CSV shapes are read, told apart by their header row:
- AEM's metadata export (Assets → Export metadata): the first column is `assetPath`, the absolute
  path of each asset; other columns (`dc:title {{String}}`, …) are ignored except `dc:format`,
  which gives the asset's type
  (https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/assets/manage/metadata-import-export).
- `asset_id,path`: ids (`urn:aaid:aem:<uuid>`) already known, each pair checked in AEM.

An asset id is `urn:aaid:aem:` + the `jcr:uuid` of the asset's node (`aem.asset_id_for_path`), so
every path costs one GET on the author service; they run on a few threads. A pair's id must be the
one AEM gives for its path: the path decides which product's values the asset gets, so an id
written beside another asset's path would have pimsync overwrite (and, with write-back, link from
the product) an asset that is not that product's. A bad row
is reported with its line number and the reason, and skipped; the good ones go on. Registering
never touches an asset pimsync already knows (its state stays what it is); new ones start as
"never synced", and all of them are then re-synced in jobs of at most `resync.MAX_ASSET_IDS`.
Path lookups and folders' assets use AEM's classic endpoints, with AEM_SERVICE_CREDENTIALS when it
is set (`pimsync.adobe.aem`); when AEM refuses the credential the whole backfill stops and says
which credential those endpoints need.
The command (`manage.py backfill`) and the dashboard's upload form both call `run_csv`.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePosixPath

from django.db import connection

from pimsync import mapping, resync
from pimsync.adobe import aem
from pimsync.models import Asset, Job
from pimsync.outbound import http

ASSET_ID = re.compile(r"^urn:aaid:aem:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# AEM is asked this many paths at once: enough to hide the round trips, few enough not to look
# like a flood to the author service.
THREADS = 4
PROGRESS_EVERY = 500
# A lookup AEM answers with 429, a 5xx or not at all is tried this often, waiting at most this long.
LOOKUP_ATTEMPTS = 3
MAX_LOOKUP_WAIT = 30.0
# A folder walk stops here (and says so): a typo like --folder /content/dam must not run for days.
MAX_FOLDERS = 100_000
MAX_ASSETS = 1_000_000
# Why a row was skipped when a time-limited backfill (the upload form's) had no time left for it.
NOT_LOOKED_UP = "not looked up in AEM before this backfill's time ran out: run this row again"
GAVE_UP = "not tried again: this backfill's time ran out"

Progress = Callable[[str], None]


class BackfillError(ValueError):
    """The whole input cannot be used (not a CSV of a known shape, no such folder); nothing was changed."""


@dataclass
class Row:
    line: int  # the line in the file where the row starts; 0 for an asset found by a folder walk
    path: str
    asset_id: str = ""
    mime_type: str = ""


@dataclass
class Problem:
    line: int
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path[:200] or '(no path)'}: {self.reason}"


@dataclass
class Report:
    """What a backfill read, registered and started (or, with dry_run, would have)."""

    source: str
    dry_run: bool = False
    rows: int = 0
    good: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    new: int = 0
    known: int = 0
    jobs: list[Job] = field(default_factory=list)
    out_of_time: int = 0  # rows skipped because the backfill's time ran out

    def summary(self) -> str:
        verb = "would register" if self.dry_run else "registered"
        text = (
            f"{self.rows} row(s) read from {self.source}: {len(self.good)} asset(s) found, "
            f"{len(self.problems)} skipped. {verb.capitalize()} {self.new} new asset(s); {self.known} already known."
        )
        if self.jobs:
            text += f" Re-sync job(s): {', '.join(str(job.pk) for job in self.jobs)}."
        if self.out_of_time:
            text += f" {self.out_of_time} row(s) were not looked up in time: run them again."
        return text


# --- reading -------------------------------------------------------------------------------------


def read_csv(text: str) -> tuple[list[Row], list[Problem], int]:
    """The rows of either CSV shape with their line numbers, the rows refused, and the row count."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BackfillError("the file is empty") from None
    except csv.Error as exc:
        raise BackfillError(f"line 1 is not CSV: {exc}") from None
    names = [name.strip() for name in header]
    if names[:1] == ["assetPath"]:
        mime = next((i for i, name in enumerate(names) if name.split(" {{")[0].strip() == "dc:format"), None)
        parse = _export_row(mime)
    elif names[:2] == ["asset_id", "path"]:
        parse = _id_row
    else:
        raise BackfillError(
            "the first row must be AEM's metadata export header (its first column is assetPath) or asset_id,path"
        )
    rows, problems, count, seen = [], [], 0, {}
    for line, record in _records(reader, problems):
        count += 1
        row = parse(line, record)
        problem = _problem(row, seen) if isinstance(row, Row) else row
        if problem:
            problems.append(problem)
        else:
            rows.append(row)
    return rows, problems, count


def _records(reader, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the line it starts on; an unreadable one becomes a problem."""
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(Problem(line, "", f"unreadable CSV: {exc}"))
            continue
        if any(cell.strip() for cell in record):
            yield line, record


def _export_row(mime_column: int | None) -> Callable[[int, list[str]], Row]:
    def parse(line: int, record: list[str]) -> Row:
        mime = record[mime_column].strip() if mime_column is not None and mime_column < len(record) else ""
        return Row(line, record[0].strip(), mime_type=mime[:255])

    return parse


def _id_row(line: int, record: list[str]) -> Row | Problem:
    if len(record) < 2:
        return Problem(line, "", "expected two columns, asset_id and path")
    asset_id, path = record[0].strip(), record[1].strip()
    if not ASSET_ID.match(asset_id):
        return Problem(line, path, f"{asset_id[:80]!r} is not an AEM asset id (urn:aaid:aem:<uuid>)")
    return Row(line, path, asset_id=asset_id.lower())


def _problem(row: Row, seen: dict[str, int]) -> Problem | None:
    """Why the row cannot be used (bad path, a duplicate of an earlier row), or None."""
    reason = aem.path_problem(row.path)
    if reason:
        return Problem(row.line, row.path, reason)
    for key in filter(None, (row.path, row.asset_id)):
        if key in seen:
            return Problem(row.line, row.path, f"duplicate of line {seen[key]}")
    for key in filter(None, (row.path, row.asset_id)):
        seen[key] = row.line
    return None


def walk(folder: str, progress: Progress | None = None) -> tuple[list[Row], list[Problem]]:
    """Every asset under `folder` and its sub-folders: the sub-folders from the Folders API (the
    OAuth Server-to-Server token), each folder's assets from the classic Assets HTTP API (the
    only documented listing of assets)."""
    problem = aem.path_problem(folder, folder=True)
    if problem:
        raise BackfillError(f"{folder}: {problem}")
    folders, rows, problems, listed = [folder.rstrip("/") or aem.DAM_ROOT], [], [], 0
    while folders and listed < MAX_FOLDERS and len(rows) < MAX_ASSETS:
        current = folders.pop()
        listed += 1
        try:
            children = aem.folder(current).children
            for page in _pages(current):
                rows.extend(Row(0, path) for path in page.assets)
            folders.extend(children)
        except http.HttpError as exc:
            if listed == 1:
                if exc.status == 404:
                    raise BackfillError(f"cannot list {folder}: AEM has no folder there (404)") from None
                raise BackfillError(f"cannot list {folder}: {exc.message}") from None
            problems.append(Problem(0, current, f"cannot list this folder: {exc.message}"))
        if progress and listed % 100 == 0:
            progress(f"  {listed} folder(s) listed, {len(rows)} asset(s) found")
    if folders:
        problems.append(Problem(0, folder, f"stopped after {listed} folders and {len(rows)} assets; walk sub-folders"))
    return rows, problems


def _pages(folder: str) -> Iterator[aem.FolderPage]:
    offset = 0
    while offset < MAX_ASSETS:  # an AEM that always says "more" cannot keep the walk going
        page = aem.list_folder(folder, offset)
        yield page
        if not page.more:
            return
        offset += page.size


# --- resolving and registering -------------------------------------------------------------------


def resolve(
    rows: list[Row], problems: list[Problem], progress: Progress | None = None, deadline: float | None = None
) -> list[Row]:
    """The rows whose asset AEM confirms: every path is looked up in AEM, a few at a time, and
    gives the row its id or, when the row named one, must give that id; a path AEM does not
    answer for, or answers for with another id, becomes a problem. With a `deadline`
    (`time.monotonic()`), no lookup starts or waits to be repeated after it: those rows become
    problems too, and a lookup under way ends within its HTTP timeout. AEM refusing the
    credential ends the whole backfill (the HttpError is raised)."""
    if rows:
        aem.classic_token()  # once, here: the threads then share the process's copy
    found = []
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="pimsync-backfill") as pool:
        for done, (row, reason) in enumerate(pool.map(partial(_lookup, deadline=deadline), rows), 1):
            if isinstance(reason, http.HttpError):
                # AEM refuses the credential: every other path would be refused the same way.
                pool.shutdown(cancel_futures=True)
                raise reason
            if reason:
                problems.append(Problem(row.line, row.path, reason))
            else:
                found.append(row)
            if progress and done % PROGRESS_EVERY == 0:
                progress(f"  {done}/{len(rows)} path(s) looked up in AEM")
    good, first = [], {}
    for row in found:
        if row.asset_id in first:
            problems.append(Problem(row.line, row.path, f"the same asset as {first[row.asset_id]}"))
            continue
        first[row.asset_id] = f"line {row.line}" if row.line else row.path
        good.append(row)
    problems.sort(key=lambda p: (p.line, p.path))
    return good


def _lookup(row: Row, deadline: float | None = None) -> tuple[Row, str | http.HttpError]:
    """Find the row's asset id in AEM, or check the one it names; a retryable failure (429, 5xx,
    a timeout) is tried again a few times, after AEM's Retry-After when it sent one, unless that
    would pass the deadline. A refused credential comes back as the error itself: it ends the
    whole backfill."""
    try:
        for attempt in range(1, LOOKUP_ATTEMPTS + 1):
            if deadline is not None and time.monotonic() >= deadline:
                return row, NOT_LOOKED_UP
            try:
                found = aem.asset_id_for_path(row.path)
            except http.HttpError as exc:
                if exc.status == 404:
                    return row, "AEM has no asset at this path (404)"
                if exc.error_class == "aem_credentials":
                    return row, exc
                if not exc.retryable or attempt == LOOKUP_ATTEMPTS:
                    return row, exc.message
                wait = min(exc.retry_after if exc.retry_after is not None else 2**attempt, MAX_LOOKUP_WAIT)
                if deadline is not None and time.monotonic() + wait >= deadline:
                    return row, f"{exc.message}; {GAVE_UP}"
                time.sleep(wait)
                continue
            if row.asset_id and row.asset_id != found:
                return row, f"AEM's asset at this path is {found}, not {row.asset_id}"
            row.asset_id = found
            return row, ""
        return row, "not looked up"  # unreachable: the loop always returns
    finally:
        # The lookup threads die with the pool: close the connection each one opened (to read AEM's
        # pause) rather than leave it to the database to notice.
        connection.close()


def register(rows: list[Row], why: str, user=None) -> tuple[int, int, list[Job]]:
    """Create the assets pimsync does not know yet (never downgrading a known one) and re-sync
    all of them; return (new, already known, jobs)."""
    ids = [row.asset_id for row in rows]
    known = set()
    for start in range(0, len(ids), 1000):
        known.update(Asset.objects.filter(asset_id__in=ids[start : start + 1000]).values_list("asset_id", flat=True))
    config, _ = mapping.current()
    new = [_asset(row, config) for row in rows if row.asset_id not in known]
    Asset.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    jobs = [
        resync.start(user, {"asset_ids": ids[start : start + resync.MAX_ASSET_IDS]}, why)
        for start in range(0, len(ids), resync.MAX_ASSET_IDS)
    ]
    return len(new), len(known), jobs


def _asset(row: Row, config) -> Asset:
    name = PurePosixPath(row.path).name
    asset = Asset.registered(
        row.asset_id, row.path, name[:255], row.mime_type, known_from="backfill", why="registered by a backfill"
    )
    try:  # known before the first sync, so a PIM change finds it; metadata keys come with the sync
        asset.product_key = mapping.product_key(asset.ref, config)
    except mapping.MappingError:
        pass
    return asset


# --- the whole run -------------------------------------------------------------------------------


def run_csv(
    text: str,
    source: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    max_lookups: int | None = None,
    time_limit: float | None = None,
    user=None,
) -> Report:
    """Read, resolve, register and re-sync the assets of a CSV (see the module docstring); with a
    `time_limit` in seconds, the rows AEM has not answered for by then are skipped (`resolve`)."""
    deadline = time.monotonic() + time_limit if time_limit is not None else None
    rows, problems, count = read_csv(text)
    if max_lookups is not None and len(rows) > max_lookups:
        raise BackfillError(
            f"{len(rows)} paths would have to be looked up in AEM, more than the {max_lookups} done here: "
            "run `python manage.py backfill FILE` on the server instead"
        )
    return _finish(Report(source, dry_run, count), rows, problems, progress, user, deadline)


def run_folder(folder: str, *, dry_run: bool = False, progress: Progress | None = None) -> Report:
    """Walk `folder`, then resolve, register and re-sync every asset found."""
    rows, problems = walk(folder, progress)
    return _finish(Report(folder, dry_run, len(rows)), rows, problems, progress)


def _finish(
    report: Report,
    rows: list[Row],
    problems: list[Problem],
    progress: Progress | None,
    user=None,
    deadline: float | None = None,
) -> Report:
    """Resolve, then register and re-sync (as `user`, who started it) unless it is a dry run."""
    try:
        report.good = resolve(rows, problems, progress, deadline)
    except http.HttpError as exc:  # no token, or AEM refuses it: nothing can be looked up
        raise BackfillError(f"cannot ask AEM: {exc.message}") from None
    report.problems = problems
    report.out_of_time = sum(1 for p in problems if p.reason == NOT_LOOKED_UP or p.reason.endswith(GAVE_UP))
    if report.dry_run:
        ids = [row.asset_id for row in report.good]
        report.known = sum(
            Asset.objects.filter(asset_id__in=ids[i : i + 1000]).count() for i in range(0, len(ids), 1000)
        )
        report.new = len(ids) - report.known
    elif report.good:
        report.new, report.known, report.jobs = register(report.good, f"backfill {report.source}"[:255], user)
    return report
