"""Inline SVG charts (no script, no front-end build): values over dates, and signed contribution bars.

The SVG is built as text with every value escaped; styling comes from classes in ``static/app.css`` (CSP
allows no inline style). Each chart has ``role="img"`` with a ``<title>`` and ``<desc>`` and the page shows
the same numbers in a table, so nothing depends on seeing the picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup


@dataclass(frozen=True, slots=True)
class Point:
    when: date
    value: float
    label: str


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.1f}"


def time_series_svg(points: Sequence[Point], *, title: str, unit: str, chart_id: str,
                    width: int = 440, height: int = 200) -> Markup:
    """A line chart of ``points`` (oldest first) with dated x ticks and a labelled y axis."""
    pad_l, pad_r, pad_t, pad_b = 52, 40, 18, 38
    iw, ih = width - pad_l - pad_r, height - pad_t - pad_b
    tid, did = f"{chart_id}-title", f"{chart_id}-desc"
    desc = "; ".join(f"{p.when.isoformat()}: {p.label}" for p in points) or "no measurements"
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-labelledby="{tid} {did}" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>']
    if not points:
        parts.append(f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "No measurements</text></svg>")
        return Markup("".join(parts))
    vals = [p.value for p in points]
    lo, hi = min(0.0, min(vals)), max(vals) * 1.15 if max(vals) > 0 else 1.0
    ticks = _nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    d0, d1 = points[0].when.toordinal(), points[-1].when.toordinal()
    span = max(1, d1 - d0)

    def x(d: date) -> float:
        if d1 == d0:
            return pad_l + iw / 2
        return pad_l + (d.toordinal() - d0) / span * iw

    def y(v: float) -> float:
        return pad_t + ih - (v - lo) / (hi - lo) * ih

    for t in ticks:
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{pad_l + iw}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
        parts.append(f'<text class="tick" x="{pad_l - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    parts.append(f'<line class="axis" x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{pad_t + ih}"/>')
    parts.append(f'<line class="axis" x1="{pad_l}" x2="{pad_l + iw}" y1="{pad_t + ih}" y2="{pad_t + ih}"/>')
    parts.append(f'<text class="unit" x="12" y="{pad_t + ih / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {pad_t + ih / 2:.1f})">{escape(unit)}</text>')
    if len(points) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.when):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
        parts.append(f'<path class="line" d="{path}"/>')
    last_x = -1e9
    for p in points:
        px, py = x(p.when), y(p.value)
        parts.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="4"><title>'
                     f"{escape(p.when.isoformat())}: {escape(p.label)}</title></circle>")
        # keep the value clear of the y axis (first point) and of the right edge (last point)
        anchor = "start" if px - pad_l < 12 else ("end" if pad_l + iw - px < 12 and len(points) > 1 else "middle")
        vx = px + 4 if anchor == "start" else (px - 4 if anchor == "end" else px)
        parts.append(f'<text class="value" x="{vx:.1f}" y="{py - 8:.1f}" text-anchor="{anchor}">'
                     f"{escape(_fmt(p.value))}</text>")
        if px - last_x >= 70:  # keep date labels from overlapping
            parts.append(f'<text class="tick" x="{px:.1f}" y="{pad_t + ih + 16:.1f}" text-anchor="middle">'
                         f"{escape(p.when.isoformat())}</text>")
            last_x = px
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float


def contribution_bars_svg(bars: Sequence[Bar], *, title: str, chart_id: str, width: int = 440) -> Markup:
    """Horizontal bars around zero: right (raises risk) and left (lowers risk)."""
    row_h, label_w, pad = 22, 170, 8
    height = max(1, len(bars)) * row_h + 2 * pad + 14
    tid, did = f"{chart_id}-title", f"{chart_id}-desc"
    desc = "; ".join(f"{b.label}: {b.value:+.2f}" for b in bars) or "no contributions"
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-labelledby="{tid} {did}" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>']
    if not bars:
        parts.append(f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "No contributions reported</text></svg>")
        return Markup("".join(parts))
    span = max(abs(b.value) for b in bars) or 1.0
    value_w = 44  # room for the value text beyond the longest bar, on either side
    plot_w = width - label_w - 2 * pad - 2 * value_w
    zero = label_w + pad + value_w + plot_w / 2
    for i, b in enumerate(bars):
        top = pad + i * row_h
        w = abs(b.value) / span * (plot_w / 2)
        bx = zero if b.value >= 0 else zero - w
        cls = "bar-up" if b.value >= 0 else "bar-down"
        label = b.label if len(b.label) <= 26 else b.label[:25] + "…"
        parts.append(f'<text class="tick" x="{label_w}" y="{top + 15}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect class="{cls}" x="{bx:.1f}" y="{top + 4}" width="{max(w, 1):.1f}" height="{row_h - 8}">'
                     f"<title>{escape(b.label)}: {b.value:+.3f}</title></rect>")
        tx = zero + w + 4 if b.value >= 0 else zero - w - 4
        anchor = "start" if b.value >= 0 else "end"
        parts.append(f'<text class="value" x="{tx:.1f}" y="{top + 15}" text-anchor="{anchor}">{b.value:+.2f}</text>')
    parts.append(f'<line class="axis" x1="{zero:.1f}" x2="{zero:.1f}" y1="{pad}" y2="{height - pad - 14}"/>')
    parts.append(f'<text class="tick" x="{zero:.1f}" y="{height - 4}" text-anchor="middle">'
                 "← lowers risk · raises risk →</text>")
    parts.append("</svg>")
    return Markup("".join(parts))
