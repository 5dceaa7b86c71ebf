"""Dashboard figures: follow-up adherence (on time / late / lost), screening uptake, trends and their SVG."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from risk.population.dashboard import adherence, line_chart_svg, trend_charts, trends, uptake
from risk.store.db import Database
from risk.store.population import PopulationPatient, PopulationRun, WorklistItem

TODAY = date(2026, 6, 30)


def _item(n: int, kind: str, due: date, completed: date | None, closed: str | None = None) -> WorklistItem:
    now = datetime.now(UTC)
    return WorklistItem(item_key=f"k{n}", patient_id=f"p{n}", site="site-a", kind=kind, text="t", due_date=due,
                        overdue_after=due + timedelta(days=91), window_start=due - timedelta(days=30),
                        completed_date=completed, loop_state="completed" if completed else "recommended",
                        loop_rank=3 if completed else 0, active=True, closed_reason=closed, first_run="r",
                        last_run="r", created_at=now, updated_at=now)


def test_adherence_and_uptake(sqlite_db: Database) -> None:
    d = TODAY - timedelta(days=300)
    with sqlite_db.session() as s:
        s.add_all([
            _item(1, "annual_screen", d, d + timedelta(days=10)),  # on time
            _item(2, "nodule_follow_up", d, d + timedelta(days=120)),  # late (after due + 91)
            _item(3, "annual_screen", d, None),  # 209 days after overdue: lost (> 180)
            _item(4, "annual_screen", TODAY - timedelta(days=60), None),  # overdue, not yet lost: open
            _item(5, "annual_screen", d, None, closed="superseded"),  # superseded: not counted
            _item(6, "high_risk_no_plan", d, None),  # not a follow-up kind
            _item(7, "annual_screen", TODAY + timedelta(days=10), None),  # not due yet: not counted
        ])
        for i, (eligible, last) in enumerate([(True, TODAY - timedelta(days=100)), (True, TODAY - timedelta(days=600)),
                                              (True, None), (False, TODAY), (None, None)]):
            s.add(PopulationPatient(patient_id=f"q{i}", run_id="r", site="site-a", eligible_any=eligible,
                                    last_chest_ct=last))
    with sqlite_db.session() as s:
        assert adherence(s, ["site-a"], today=TODAY, lost_after_days=180) == {"on_time": 1, "late": 1, "lost": 1,
                                                                              "open": 1}
        assert adherence(s, ["site-b"], today=TODAY, lost_after_days=180) == {"on_time": 0, "late": 0, "lost": 0,
                                                                              "open": 0}
        assert uptake(s, ["site-a"], today=TODAY) == {"eligible": 3, "ever_screened": 2, "up_to_date": 1}


def test_trends_sum_the_viewers_sites(sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        for i, (a, b) in enumerate([(3, 10), (5, 20)]):
            s.add(PopulationRun(id=f"run{i}", started_at=datetime(2026, 6, 1 + i, tzinfo=UTC), as_of=TODAY,
                                status="complete", engine="polars", source="x", triggered_by="t",
                                counts={"sites": {"site-a": {"queues": {"annual_due": a}},
                                                  "site-b": {"queues": {"annual_due": b}}}}))
        s.add(PopulationRun(id="failed", started_at=datetime(2026, 6, 5, tzinfo=UTC), as_of=TODAY, status="failed",
                            engine="polars", source="x", triggered_by="t", counts=None))
    with sqlite_db.session() as s:
        points = trends(s, ["site-a"])
        both = trends(s, ["site-a", "site-b"])
    assert [p.figures["queues"]["annual_due"] for p in points] == [3, 5]
    assert [p.figures["queues"]["annual_due"] for p in both] == [13, 25]
    charts = trend_charts(points)
    assert set(charts) == {"queues", "adherence", "uptake"}
    assert "<polyline" in charts["queues"] and "Annual screen due or overdue (latest 5)" in charts["queues"]


def test_svg_escapes_and_handles_no_runs() -> None:
    svg = line_chart_svg(["2026-06-30"], {"<b>": [1.0]}, title="a & b", chart_id="c")
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    assert "a &amp; b" in svg
    assert "No runs yet" in line_chart_svg([], {}, title="t", chart_id="e")
