"""The program dashboard: counts per queue, follow-up adherence, screening uptake, and their trends over runs.

Definitions (all restricted to the viewer's sites):

* **Follow-up adherence** over annual-screen and nodule follow-up items whose due date has passed (items the run
  superseded, e.g. an annual screen replaced by a nodule plan, are left out): *on time* = completed (a CT seen)
  on or before its overdue date; *late* = completed after it; *lost* = not completed more than
  ``population.lost_after_days`` (180) days after its overdue date; *open* = the rest (overdue, not yet lost, or
  still inside the window).
* **Screening uptake** among patients eligible under any program: *ever screened* = a chest CT on record;
  *up to date* = a chest CT within the policy's stale-CT limit (15 months).

Each complete run stores these figures (site by site) in its record; the trend charts read them back. Charts are
inline SVG built as text (no script); the page also shows the numbers in tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Any, Final

from sqlalchemy import Connection, and_, case, func, or_, select
from sqlalchemy.orm import Session

from risk.assess.policy import DEFAULT_POLICY
from risk.population.worklist import Queue, queue_counts
from risk.store.population import PopulationPatient, PopulationRun, WorklistItem

FOLLOW_UP_KINDS: Final = ("annual_screen", "nodule_follow_up")


def adherence(session: Session, sites: Sequence[str], *, today: date, lost_after_days: int) -> dict[str, int]:
    due = and_(WorklistItem.site.in_(sites), WorklistItem.kind.in_(FOLLOW_UP_KINDS),
               WorklistItem.due_date.is_not(None), WorklistItem.due_date <= today,
               or_(WorklistItem.closed_reason.is_(None), WorklistItem.closed_reason != "superseded"))
    completed, overdue_after = WorklistItem.completed_date, WorklistItem.overdue_after
    status = case(
        (and_(completed.is_not(None), or_(overdue_after.is_(None), completed <= overdue_after)), "on_time"),
        (completed.is_not(None), "late"),
        (overdue_after < today - timedelta(days=lost_after_days), "lost"),
        else_="open")
    out = {"on_time": 0, "late": 0, "lost": 0, "open": 0}
    for name, n in session.execute(select(status, func.count()).where(due).group_by(status)):
        out[name] = int(n)
    return out


def uptake_by_site(session: Session | Connection, *, today: date, sites: Sequence[str] | None = None,
                   stale_ct_days: int = DEFAULT_POLICY.stale_ct_days) -> dict[str, dict[str, int]]:
    """Screening uptake per site (every site with patients, or only ``sites``), in one pass over the patients."""
    eligible = PopulationPatient.eligible_any.is_(True)
    stmt = select(
        PopulationPatient.site, func.count().filter(eligible),
        func.count().filter(eligible, PopulationPatient.last_chest_ct.is_not(None)),
        func.count().filter(eligible, PopulationPatient.last_chest_ct >= today - timedelta(days=stale_ct_days)),
    ).group_by(PopulationPatient.site)
    if sites is not None:
        stmt = stmt.where(PopulationPatient.site.in_(sites))
    return {site: {"eligible": int(total or 0), "ever_screened": int(screened or 0), "up_to_date": int(recent or 0)}
            for site, total, screened, recent in session.execute(stmt) if site}


def uptake(session: Session, sites: Sequence[str], *, today: date,
           stale_ct_days: int = DEFAULT_POLICY.stale_ct_days) -> dict[str, int]:
    """Screening uptake over ``sites`` together."""
    out = {"eligible": 0, "ever_screened": 0, "up_to_date": 0}
    for figures in uptake_by_site(session, today=today, sites=sites, stale_ct_days=stale_ct_days).values():
        for k, v in figures.items():
            out[k] += v
    return out


def site_stats(session: Session, sites: Sequence[str], *, today: date, lost_after_days: int,
               uptake_figures: dict[str, int] | None = None) -> dict[str, Any]:
    """The dashboard figures for ``sites`` (stored per site in each run record); ``uptake_figures``: already
    counted (a population run counts them on the connection that writes the patients)."""
    return {"queues": queue_counts(session, sites, today=today),
            "adherence": adherence(session, sites, today=today, lost_after_days=lost_after_days),
            "uptake": uptake_figures if uptake_figures is not None else uptake(session, sites, today=today)}


def all_sites(session: Session) -> list[str]:
    return sorted(s for (s,) in session.execute(select(PopulationPatient.site).distinct()) if s)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    run_id: str
    as_of: date
    figures: dict[str, Any]


def trends(session: Session, sites: Sequence[str], *, limit: int = 30) -> list[TrendPoint]:
    """The stored figures of the last ``limit`` complete runs, summed over ``sites``, oldest first."""
    runs = session.execute(select(PopulationRun.id, PopulationRun.as_of, PopulationRun.counts)
                           .where(PopulationRun.status == "complete")
                           .order_by(PopulationRun.started_at.desc()).limit(limit)).all()
    out = []
    for run_id, as_of, counts in reversed(runs):
        per_site: Mapping[str, Any] = (counts or {}).get("sites") or {}
        summed: dict[str, dict[str, int]] = {}
        for site in sites:
            for group, values in (per_site.get(site) or {}).items():
                target = summed.setdefault(group, {})
                for k, v in values.items():
                    target[k] = target.get(k, 0) + int(v)
        out.append(TrendPoint(run_id=run_id, as_of=as_of, figures=summed))
    return out


# --- inline SVG ---------------------------------------------------------------------------------------------------
SERIES_CLASSES: Final = ("s1", "s2", "s3", "s4", "s5")


def line_chart_svg(x_labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, chart_id: str,
                   unit: str = "", width: int = 520, height: int = 200) -> str:
    """A multi-series line chart (one point per run) with its legend below, one entry per line. Values are
    escaped; colours come from CSS classes."""
    legend_rows = len(series)
    pad_l, pad_r, pad_t, pad_b = 48, 16, 16, 30
    total_h = height + 16 * legend_rows
    iw, ih = width - pad_l - pad_r, height - pad_t - pad_b
    tid, did = f"{chart_id}-title", f"{chart_id}-desc"
    desc = "; ".join(f"{name}: " + ", ".join(f"{x} {v:g}{unit}" for x, v in zip(x_labels, values, strict=False))
                     for name, values in series.items())
    parts = [f'<svg class="chart" viewBox="0 0 {width} {total_h}" width="{width}" height="{total_h}" role="img" '
             f'aria-labelledby="{tid} {did}" xmlns="http://www.w3.org/2000/svg" data-testid="{escape(chart_id)}">',
             f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc or "no runs yet")}</desc>']
    values = [v for vs in series.values() for v in vs]
    if not x_labels or not values:
        parts.append(f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "No runs yet</text></svg>")
        return "".join(parts)
    hi = max(values) * 1.1 if max(values) > 0 else 1.0
    n = len(x_labels)

    def x(i: int) -> float:
        return pad_l + (iw * i / (n - 1) if n > 1 else iw / 2)

    def y(v: float) -> float:
        return pad_t + ih - ih * v / hi

    for k in range(5):
        t = hi * k / 4
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{pad_l + iw}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                     f'<text class="tick" x="{pad_l - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    step = max(1, n // 5)
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            parts.append(f'<text class="tick" x="{x(i):.1f}" y="{pad_t + ih + 16}" text-anchor="{anchor}">'
                         f'{escape(label)}</text>')
    for j, (name, vs) in enumerate(series.items()):
        cls = SERIES_CLASSES[j % len(SERIES_CLASSES)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs))
        parts.append(f'<polyline class="series {cls}" fill="none" points="{pts}"/>')
        for i, v in enumerate(vs):
            parts.append(f'<circle class="dot {cls}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3">'
                         f'<title>{escape(name)} {escape(x_labels[i])}: {v:g}{escape(unit)}</title></circle>')
        ly = height + 16 * j
        last = vs[-1] if vs else 0.0
        parts.append(f'<rect class="legend {cls}" x="{pad_l}" y="{ly - 9}" width="10" height="10"/>'
                     f'<text class="legend-text" x="{pad_l + 16}" y="{ly}">{escape(name)} '
                     f'(latest {last:g}{escape(unit)})</text>')
    parts.append("</svg>")
    return "".join(parts)


def trend_charts(points: Sequence[TrendPoint]) -> dict[str, str]:
    labels = [p.as_of.isoformat() for p in points]

    def series(group: str, keys: Sequence[tuple[str, str]]) -> dict[str, list[float]]:
        return {label: [float((p.figures.get(group) or {}).get(key, 0)) for p in points] for key, label in keys}

    queues = series("queues", [(q.value, q.label) for q in Queue])
    adh = series("adherence", [("on_time", "On time"), ("late", "Late"), ("lost", "Lost")])
    upt_points = []
    for p in points:
        u = p.figures.get("uptake") or {}
        eligible = u.get("eligible", 0) or 0
        upt_points.append((100.0 * u.get("ever_screened", 0) / eligible if eligible else 0.0,
                           100.0 * u.get("up_to_date", 0) / eligible if eligible else 0.0))
    uptake_series = {"Ever screened": [a for a, _ in upt_points], "Up to date": [b for _, b in upt_points]}
    return {
        "queues": line_chart_svg(labels, queues, title="Items per queue, by run", chart_id="trend-queues"),
        "adherence": line_chart_svg(labels, adh, title="Follow-up adherence, by run", chart_id="trend-adherence"),
        "uptake": line_chart_svg(labels, uptake_series, title="Screening uptake among the eligible (%), by run",
                                 chart_id="trend-uptake", unit="%"),
    }
