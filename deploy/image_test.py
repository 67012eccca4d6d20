"""`make image-test`: build the image, start compose.yaml's stack, send it signed events, check them.

1. Builds the image (`Dockerfile`) on BASE_IMAGE. Without a container registry (this project's
   machines and CI), the base is `pimsync-base:bookworm`, made here once with
   `debootstrap --variant=minbase bookworm` and `docker import`; PostgreSQL and Redis are then
   stand-ins built from it with Debian's packages (deploy/image-test/). With a registry, set
   PIMSYNC_BASE_IMAGE=python:3.11-slim PIMSYNC_POSTGRES_IMAGE=postgres:16-bookworm
   PIMSYNC_REDIS_IMAGE=redis:7-bookworm to use the official images instead.
2. Starts compose.yaml (db, redis, migrate once, web, worker) under a project name of its own,
   with a throw-away env file: sandbox mode, so the web container serves the AEM and IMS
   stand-ins and `simulate_upload` signs events with the sandbox key, exactly as Adobe does.
3. Delivers signed events to the webhook while restarting the worker container, then waits until
   every event reached a final status: each known product's asset enriched in the sandbox AEM,
   each unknown one failed for that reason, none lost or doubled.
4. Stops the stack and removes its containers, network and volume (also when a step failed).

Traffic stays on this machine: the published web port on 127.0.0.1 and the network compose
creates. Every wait is bounded; the whole run stops after DEADLINE_SECONDS.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEADLINE_SECONDS = 20 * 60
STARTED = time.monotonic()
BOOTSTRAP_BASE = "pimsync-base:bookworm"
PROJECT = f"pimsync-imagetest-{os.getpid()}"
# (count, *simulate_upload options): single deliveries, then batches with the worker restarted
# while it works through them, then more single ones for the restarted worker.
# The middle batch is large enough that the worker, at its sandbox speed, still has a backlog
# seconds after the first tenth of it is done (each report through `docker compose exec` takes seconds).
BATCHES = ((40, "--seed", "1"), (1500, "--seed", "2", "--batch"), (20, "--seed", "3"))
RESTART_AFTER = 2

# What the web container prints about the events: statuses, reasons of failures, and how many
# sandbox assets hold the values the demo mapping writes.
# The counts per status come from one query, so they are one snapshot and add up to "events"
# (separate COUNTs each see a different moment while the worker runs).
REPORT = """
import json
from django.db.models import Count
from pimsync.models import Event, SandboxAsset
events = Event.objects.filter(type="aem.assets.asset.processing_completed")
by_status = dict(events.order_by().values_list("status").annotate(n=Count("id")))
print(json.dumps({
    "events": sum(by_status.values()),
    "distinct_assets": events.values("asset_id").distinct().count(),
    "by_status": by_status,
    "failed_reasons": sorted(set(events.filter(status="failed").values_list("reason", flat=True)))[:5],
    "enriched_assets": sum(1 for m in SandboxAsset.objects.values_list("metadata", flat=True) if m.get("wknd-skuid")),
    "sandbox_assets": SandboxAsset.objects.count(),
}))
"""


def log(message: str) -> None:
    print(f"[image-test {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def remaining() -> float:
    left = DEADLINE_SECONDS - (time.monotonic() - STARTED)
    if left <= 0:
        raise SystemExit(f"image-test: gave up after {DEADLINE_SECONDS} s")
    return left


def run(*cmd: str, check: bool = True, capture: bool = False, timeout: float | None = None, **kwargs):
    """Run a command within the deadline; its output goes to ours unless captured."""
    result = subprocess.run(
        cmd,
        check=False,
        text=True,
        capture_output=capture,
        timeout=min(timeout or remaining(), remaining()),
        **kwargs,
    )
    if check and result.returncode != 0:
        detail = (result.stdout or "") + (result.stderr or "") if capture else ""
        raise SystemExit(f"image-test: `{' '.join(cmd)}` exited {result.returncode}\n{detail}")
    return result


def compose_command() -> list[str]:
    """`docker compose` (the plugin) where it exists, else the standalone `docker-compose`."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SystemExit("image-test: neither `docker compose` nor `docker-compose` is installed")


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def bootstrap_base() -> None:
    """pimsync-base:bookworm: Debian bookworm's minimal root file system, from Debian's registry."""
    if image_exists(BOOTSTRAP_BASE):
        return
    if not shutil.which("debootstrap"):
        raise SystemExit("image-test: debootstrap is missing (apt-get install debootstrap)")
    log(f"making {BOOTSTRAP_BASE} with debootstrap (once per machine)")
    with tempfile.TemporaryDirectory(prefix="pimsync-rootfs-", dir="/var/tmp") as rootfs:
        run("debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian", capture=True)
        # What a container never needs: downloaded packages, package lists, documentation.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            for child in Path(rootfs, junk).glob("*"):
                if child.is_dir() and child.name != "partial":
                    shutil.rmtree(child)
                elif child.is_file():
                    child.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run("docker", "import", "-", BOOTSTRAP_BASE, stdin=tar.stdout, capture=True)
        tar.wait()


def build_images(env: dict[str, str]) -> dict[str, float]:
    """Build pimsync's image (and the database stand-ins when needed); seconds each build took."""
    timings = {}
    base = env["PIMSYNC_BASE_IMAGE"]
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca_bundle.exists():
        # This machine's trust store, for a network whose proxy intercepts TLS (deploy/ca/).
        shutil.copyfile(ca_bundle, ROOT / "deploy" / "ca" / "build-host.crt")
    started = time.monotonic()
    log(f"building {env['PIMSYNC_IMAGE']} on {base}")
    run("docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", env["PIMSYNC_IMAGE"], str(ROOT))
    timings["pimsync"] = time.monotonic() - started
    for service, dockerfile in (("POSTGRES", "postgres.Dockerfile"), ("REDIS", "redis.Dockerfile")):
        if f"PIMSYNC_{service}_IMAGE" in os.environ:
            continue
        tag = f"pimsync-test-{service.lower()}"
        started = time.monotonic()
        log(f"building the {service.lower()} stand-in {tag}")
        run("docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-f", str(HERE / "image-test" / dockerfile),
            "-t", tag, str(HERE / "image-test"), capture=True)  # fmt: skip
        timings[tag] = time.monotonic() - started
        env[f"PIMSYNC_{service}_IMAGE"] = tag
    return timings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_for(what: str, ready, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"image-test: {what} did not happen within {seconds:.0f} s")
        remaining()
        time.sleep(1)


class Stack:
    """compose.yaml under this run's project name and environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.compose = [*compose_command(), "-p", PROJECT, "-f", str(ROOT / "compose.yaml")]

    def __call__(self, *args: str, **kwargs):
        return run(*self.compose, *args, env=self.env, cwd=ROOT, **kwargs)

    def manage(self, *args: str, capture: bool = True) -> str:
        return self("exec", "-T", "web", "python", "manage.py", *args, capture=capture).stdout or ""

    def report(self) -> dict:
        return json.loads(self.manage("shell", "-c", REPORT).strip().splitlines()[-1])

    def wait_for_report(self, what: str, ready, seconds: float) -> dict:
        """The first report for which ready(report) holds."""
        seen: dict = {}

        def check() -> bool:
            seen.clear()
            seen.update(self.report())
            return ready(seen)

        wait_for(what, check, seconds)
        return seen

    def health(self, service: str) -> str:
        container = self("ps", "-q", service, capture=True).stdout.strip()
        if not container:
            return "absent"
        inspected = run("docker", "inspect", "--format", "{{.State.Health.Status}}", container, capture=True)
        return inspected.stdout.strip()


def main() -> int:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("image-test: Docker's engine does not answer (`docker info`); start dockerd first")
    base = os.environ.get("PIMSYNC_BASE_IMAGE", BOOTSTRAP_BASE)
    if base == BOOTSTRAP_BASE:
        bootstrap_base()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pimsync-imagetest-"))
    env_file = workdir / "stack.env"
    # The stack's settings, as an operator's .env would hold them; sandbox mode stands in for Adobe.
    env_file.write_text(
        "\n".join(
            [
                "DEBUG=0",
                f"SECRET_KEY={secrets.token_urlsafe(40)}",
                "ALLOWED_HOSTS=web,localhost,127.0.0.1",
                "PIMSYNC_SANDBOX=1",
                "PIMSYNC_PUBLIC_URL=http://web:8000",
                "SESSION_COOKIE_SECURE=0",
                "CSRF_COOKIE_SECURE=0",
                # One worker process with two threads: the batches build a backlog, so the restart
                # lands while events wait and others are being enriched.
                "PIMSYNC_WORKERS=1",
                "PIMSYNC_WORKER_THREADS=2",
                # A worker stopped mid-task leaves its events to the sweeper after this long.
                "PIMSYNC_TASK_TIMEOUT_SECONDS=30",
            ]
        )
        + "\n"
    )
    env = {
        **os.environ,
        "PIMSYNC_IMAGE": "pimsync:image-test",
        "PIMSYNC_BASE_IMAGE": base,
        "PIMSYNC_ENV_FILE": str(env_file),
        "PIMSYNC_PORT": f"127.0.0.1:{port}",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
    }
    timings = build_images(env)
    size = run("docker", "image", "inspect", "--format", "{{.Size}}", env["PIMSYNC_IMAGE"], capture=True).stdout
    log(f"image {env['PIMSYNC_IMAGE']}: {int(size) / 1e6:.0f} MB, built in {timings['pimsync']:.0f} s")

    stack = Stack(env)
    stack("config", "-q")  # the file is valid for this compose
    started = time.monotonic()
    try:
        log(f"starting the stack {PROJECT} (web on 127.0.0.1:{port})")
        stack("up", "-d", "--no-build")
        base_url = f"http://127.0.0.1:{port}"
        wait_for("/healthz/ready answering 200", lambda: http_status(base_url + "/healthz/ready") == 200, 180)
        wait_for("the web container's HEALTHCHECK passing", lambda: stack.health("web") == "healthy", 120)
        wait_for("a worker heartbeat (/healthz 200)", lambda: http_status(base_url + "/healthz") == 200, 180)
        log(f"stack up in {time.monotonic() - started:.0f} s; seeding the demo mapping")
        stack.manage("seed")

        sent = 0
        for number, (count, *options) in enumerate(BATCHES, 1):
            log(f"delivering {count} signed events{' in batches' if '--batch' in options else ''}")
            command = [*stack.compose, "exec", "-T", "web", "python", "manage.py", "simulate_upload"]
            delivery = subprocess.Popen(
                [*command, "--count", str(count), *options], env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            if number == RESTART_AFTER:
                # While the events arrive and are enriched: five seconds for qcluster to stop, then
                # SIGKILL, so whatever it was enriching is left in `processing` for the sweeper to hand
                # out again after the task timeout, and the deliveries meanwhile wait for the new one.
                # The decision is taken on the same report that showed a tenth enriched.
                at = stack.wait_for_report("a tenth of them enriched", lambda r: finished(r) >= sent + count // 10, 120)  # noqa: B023
                if at["events"] - finished(at) == 0:
                    raise SystemExit(f"image-test: the worker caught up before the restart ({at}); nothing to test")
                log(f"restarting the worker mid-run, at {at['by_status']}")
                stack("restart", "-t", "5", "worker")
            out, _ = delivery.communicate(timeout=remaining())
            if delivery.returncode != 0 or f"{count} event(s) accepted" not in out:
                raise SystemExit(f"image-test: the webhook did not accept every event:\n{out}")
            sent += count

        def settled() -> bool:
            report = stack.report()
            return report["events"] == sent and finished(report) == sent

        wait_for(f"all {sent} events reaching a final status", settled, 300)
        report = stack.report()
        log(f"events: {report}")
        check(report, sent)
        if http_status(base_url + "/healthz") != 200:
            raise SystemExit("image-test: /healthz is not 200 after the run")
        log(f"passed: {sent} events sent, every one stored and finished; the worker restart lost none")
        print(
            f"image-test: image {int(size) / 1e6:.0f} MB; builds "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
            + f"; whole run {time.monotonic() - STARTED:.0f} s"
        )
        return 0
    except BaseException:
        stack("logs", "--no-color", "--tail", "60", check=False, timeout=60)
        raise
    finally:
        log("stopping the stack")
        stack("down", "-v", "--remove-orphans", "-t", "10", check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


def finished(report: dict) -> int:
    """How many of the reported events reached a final status."""
    return sum(report["by_status"].get(status, 0) for status in ("succeeded", "unchanged", "failed", "ignored"))


def check(report: dict, sent: int) -> None:
    """Every event stored once and finished; known products enriched, unknown ones failed for that."""
    problems = []
    if report["events"] != sent or report["distinct_assets"] != sent:
        problems.append(f"{sent} events sent, {report['events']} stored for {report['distinct_assets']} assets")
    succeeded = report["by_status"].get("succeeded", 0) + report["by_status"].get("unchanged", 0)
    failed = report["by_status"].get("failed", 0)
    if succeeded + failed != sent or succeeded == 0:
        problems.append(f"statuses {report['by_status']}")
    if any("is not in the PIM" not in reason for reason in report["failed_reasons"]):
        problems.append(f"unexpected failures: {report['failed_reasons']}")
    if report["enriched_assets"] < succeeded:
        problems.append(f"{succeeded} events succeeded but only {report['enriched_assets']} assets hold PIM values")
    if problems:
        raise SystemExit("image-test: " + "; ".join(problems))


if __name__ == "__main__":
    sys.exit(main())
