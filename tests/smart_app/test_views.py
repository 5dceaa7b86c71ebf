"""View models and inline SVG charts: the pages show what the assessment says, formatted, nothing recomputed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from smart_app import views
from smart_app.charts import Bar, Point, contribution_bars_svg, time_series_svg
from tests.smart_app.builders import TRACKING_UID, make_assessment, make_snapshot

SVG = "{http://www.w3.org/2000/svg}"


def test_format_pct() -> None:
    assert views.format_pct(0.0412) == "4.1%"
    assert views.format_pct(0.00412) == "0.41%"
    assert views.format_pct(0.5) == "50.0%"


def test_overview_picks_plco_and_fusion_and_keeps_raw_values() -> None:
    snap = make_snapshot()
    ov = views.overview_view(snap, make_assessment(snap))
    assert ov.plcom2012 is not None and ov.plcom2012.probability == 0.0412
    assert ov.fusion is not None and ov.fusion.interval == (0.051, 0.14) and ov.fusion.model_version == "1.3.0"
    assert ov.fusion.interval_text == "5.1% – 14.0%"
    assert ov.patient_category is not None and ov.patient_category.category == "4B"
    assert [e.verdict for e in ov.eligibility] == ["Eligible", "Eligible", "Cannot tell"]
    stale = [f for f in ov.freshness if f.stale]
    assert [f.what for f in stale] == ["smoking history"]
    assert not ov.any_outage


def test_timeline_puts_the_card_nodule_first_with_growth_and_key_image() -> None:
    snap = make_snapshot()
    a = make_assessment(snap)
    plain = views.timeline_view(snap, a)
    assert [t.track_id for t in plain] == ["N1", "N2"] and not plain[0].selected
    tracks = views.timeline_view(snap, a, TRACKING_UID)
    n1 = tracks[0]
    assert n1.selected and n1.has_key_image and n1.key_image_date == date(2026, 5, 18)
    assert n1.growth is not None and n1.vdt_days == snap.nodule_tracks[0].growth.vdt_days  # type: ignore[union-attr]
    assert n1.growth_label is not None and "NELSON" in n1.growth_label
    assert n1.category is not None and n1.category.category == "4B"
    assert not tracks[1].has_key_image and tracks[1].growth is None


def test_explanation_lists_drivers_missing_data_and_sources() -> None:
    snap = make_snapshot()
    ex = views.explanation_view(snap, make_assessment(snap))
    fusion = next(c for c in ex.contributions if c.model == "fusion")
    assert fusion.rows[0][0] == "nodule growth"  # largest effect first
    assert any("education" in m.lower() for m in ex.missing)
    assert any("body-mass index" in m.lower() for m in ex.missing)
    assert any("N2: measured volume" in m for m in ex.missing)
    viewable = [s for s in ex.sources if s.viewable]
    assert [s.reference for s in viewable] == ["Patient/lc-0042", "Observation/smk-1", "ImagingStudy/ct-2"]
    assert [s.number for s in ex.sources] == [1, 2, 3, 4]


def test_time_series_svg_is_well_formed_and_accessible() -> None:
    pts = [Point(date(2025, 5, 20), 7.0, "7.0 mm"), Point(date(2026, 5, 18), 9.1, "9.1 mm")]
    root = ET.fromstring(str(time_series_svg(pts, title="Nodule <N1>", unit="mm", chart_id="c1")))
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Nodule <N1>"  # type: ignore[union-attr]
    assert "2025-05-20: 7.0 mm" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
    assert len(root.findall(f"{SVG}circle")) == 2 and root.find(f"{SVG}path") is not None
    assert "style=" not in str(time_series_svg(pts, title="t", unit="mm", chart_id="c"))  # CSP: no inline styles


def test_empty_and_single_point_charts() -> None:
    assert "No measurements" in str(time_series_svg([], title="t", unit="mm", chart_id="e"))
    one = ET.fromstring(str(time_series_svg([Point(date(2026, 1, 1), 4.0, "4 mm")], title="t", unit="mm",
                                            chart_id="o")))
    assert len(one.findall(f"{SVG}circle")) == 1 and one.find(f"{SVG}path") is None


def test_contribution_bars_direction() -> None:
    root = ET.fromstring(str(contribution_bars_svg([Bar("growth", 0.9), Bar("bmi", -0.2)], title="t",
                                                   chart_id="b")))
    rects = root.findall(f"{SVG}rect")
    assert [r.get("class") for r in rects] == ["bar-up", "bar-down"]
