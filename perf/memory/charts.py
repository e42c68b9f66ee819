"""Memory over time as an SVG drawn on the server: no JavaScript chart library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

MB = 1024 * 1024


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    points: Sequence[tuple[datetime, float]]  # (time, MB)


def _nice_range(low: float, high: float) -> tuple[float, float]:
    if high - low < 1:
        middle = (high + low) / 2
        return max(middle - 1, 0), middle + 1
    pad = (high - low) * 0.08
    return max(low - pad, 0), high + pad


def memory_chart(lines: Sequence[Line], *, width: int = 960, height: int = 200, title: str = "") -> SafeString:
    """A line per series on shared axes; an empty chart says so instead of drawing nothing."""
    left, right, top, bottom = 56, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    drawn = [line for line in lines if len(line.points) >= 1]
    label = escape(title or "memory over time")
    if not drawn:
        return format_html(
            '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%">'
            '<text x="{}" y="{}" class="chart-empty">no snapshots yet</text></svg>',
            label,
            width,
            height,
            width // 2 - 50,
            height // 2,
        )
    times = [t.timestamp() for line in drawn for t, _ in line.points]
    values = [v for line in drawn for _, v in line.points]
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1e-9)
    y0, y1 = _nice_range(min(values), max(values))

    def x(ts: float) -> float:
        return left + (ts - t0) / span * plot_w if t1 > t0 else left + plot_w / 2

    def y(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{label}</title>",
    ]
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        ypos = y(value)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ypos:.1f}" y2="{ypos:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{ypos + 4:.1f}" text-anchor="end">{value:,.1f}</text>'
        )
    parts.append(f'<text class="axis" x="{left}" y="{height - 6}">{escape(_clock(t0))}</text>')
    parts.append(
        f'<text class="axis" x="{width - right}" y="{height - 6}" text-anchor="end">{escape(_clock(t1))}</text>'
    )
    parts.append(f'<text class="axis" x="4" y="{top + 8}">MB</text>')
    for line in drawn:
        coords = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in line.points)
        name = escape(line.name)
        css = escape(line.css)
        if len(line.points) == 1:
            cx, cy = coords.split(",")
            parts.append(f'<circle class="series {css}" data-series="{name}" cx="{cx}" cy="{cy}" r="3"/>')
        else:
            parts.append(f'<polyline class="series {css}" data-series="{name}" fill="none" points="{coords}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped or a number  # nosec B308 B703


def _clock(ts: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%S UTC")


def process_chart(snapshots: Sequence[object], *, title: str) -> SafeString:
    """RSS, USS and the traced heap of one process's snapshots."""
    rss = [(s.taken_at, s.rss / MB) for s in snapshots]  # type: ignore[attr-defined]
    uss = [(s.taken_at, s.uss / MB) for s in snapshots if s.uss is not None]  # type: ignore[attr-defined]
    heap = [(s.taken_at, s.heap_current / MB) for s in snapshots if s.heap_current is not None]  # type: ignore[attr-defined]
    return memory_chart(
        [Line("RSS", "rss", rss), Line("USS", "uss", uss), Line("Python heap (tracemalloc)", "heap", heap)],
        title=title,
    )
