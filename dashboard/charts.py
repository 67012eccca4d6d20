"""Server-rendered SVG charts: no JavaScript library, nothing loaded from the internet."""

from __future__ import annotations

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 640, 160, 28


def _frame(body: str, title: str, max_label: str) -> SafeString:
    zone = timezone.get_current_timezone_name()
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="2" y="{PAD - 12}" class="label">{escape(max_label)}</text>'
        f'<text x="{WIDTH - 2}" y="{HEIGHT - 8}" class="label zone" text-anchor="end">{escape(zone)}</text>{body}</svg>'
    )


def _x(index: int, count: int) -> float:
    return PAD + (WIDTH - PAD) * (index + 0.5) / count


def _hour(bucket) -> str:
    """The bucket's hour in the dashboard's zone (TIME_ZONE), as every page shows times."""
    return f"{timezone.localtime(bucket.start):%H:%M}"


def _hour_labels(buckets) -> str:
    out = []
    for i, bucket in enumerate(buckets):
        if i % 4 == 0:
            out.append(
                f'<text x="{_x(i, len(buckets)):.1f}" y="{HEIGHT - 8}" class="label" '
                f'text-anchor="middle">{_hour(bucket)}</text>'
            )
    return "".join(out)


def _value(x: float, y: float, text: str, css: str = "") -> str:
    """A value written above its bar or point, readable without hovering."""
    return f'<text x="{x:.1f}" y="{max(y - 3, 9):.1f}" class="value {css}" text-anchor="middle">{escape(text)}</text>'


def throughput(buckets) -> SafeString:
    """Stacked bars per hour: finished fine (green) and failed (red)."""
    top = max([b.done + b.failed for b in buckets] + [1])
    usable, width = HEIGHT - 2 * PAD, (WIDTH - PAD) / len(buckets) * 0.7
    bars = []
    for i, bucket in enumerate(buckets):
        x = _x(i, len(buckets)) - width / 2
        done_h, failed_h = usable * bucket.done / top, usable * bucket.failed / top
        y = HEIGHT - PAD - done_h
        tip = f"{_hour(bucket)}: {bucket.done} done, {bucket.failed} failed"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{done_h:.1f}" class="ok">'
            f"<title>{tip}</title></rect>"
        )
        if failed_h:
            bars.append(
                f'<rect x="{x:.1f}" y="{y - failed_h:.1f}" width="{width:.1f}" height="{failed_h:.1f}" '
                f'class="bad"><title>{tip}</title></rect>'
            )
        if bucket.done + bucket.failed:
            bars.append(_value(x + width / 2, y - failed_h, str(bucket.done + bucket.failed)))
    return _frame("".join(bars) + _hour_labels(buckets), "Events finished per hour", f"{top}/h")


def latency(buckets) -> SafeString:
    """p50 and p95 seconds from receipt to finish, per hour (of Adobe's events: `overview.finished`
    leaves re-syncs out, which wait their turn by design); each hour's p95 is written above it."""
    values = [v for b in buckets for v in (b.p50, b.p95) if v is not None]
    top = max(values + [1.0])
    usable = HEIGHT - 2 * PAD

    def line(attr: str, css: str) -> str:
        points = [
            f"{_x(i, len(buckets)):.1f},{HEIGHT - PAD - usable * getattr(b, attr) / top:.1f}"
            for i, b in enumerate(buckets)
            if getattr(b, attr) is not None
        ]
        dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" class="{css}"/>' for p in points)
        values = ""
        if attr == "p95":
            values = "".join(
                _value(_x(i, len(buckets)), HEIGHT - PAD - usable * b.p95 / top, f"{b.p95:.1f}")
                for i, b in enumerate(buckets)
                if b.p95 is not None
            )
        return f'<polyline points="{" ".join(points)}" class="{css}" fill="none"/>{dots}{values}' if points else ""

    legend = (
        # Top left, beside the scale: the newest hours' values are written at the top right.
        f'<text x="{PAD + 40}" y="{PAD - 12}" class="label p50">— p50</text>'
        f'<text x="{PAD + 90}" y="{PAD - 12}" class="label p95">— p95</text>'
    )
    return _frame(
        line("p50", "p50") + line("p95", "p95") + legend + _hour_labels(buckets),
        "Latency per hour of Adobe's events (seconds from receipt to finish; re-syncs not counted)",
        f"{top:.1f}s",
    )
