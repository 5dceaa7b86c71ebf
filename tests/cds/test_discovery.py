"""Discovery (CDS Hooks 2.0 §Discovery): always at {baseUrl}/cds-services, one id for three hooks, 2.0-valid
prefetch templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from risk.cds.discovery import CDS_PREFETCH_TEMPLATES, HOOKS, SERVICE_ID, template_problems
from tests.support.cds_client import CdsClient


def test_discovery_lists_one_id_for_three_hooks(cds: CdsClient, schema: Callable[[str, Any], None]) -> None:
    response = cds.discovery()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    schema("discovery", body)
    assert sorted(s["hook"] for s in body["services"]) == sorted(HOOKS)
    assert {s["id"] for s in body["services"]} == {SERVICE_ID}
    for service in body["services"]:
        assert service["title"] and service["description"]
        assert service["prefetch"] == dict(CDS_PREFETCH_TEMPLATES)


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("key", sorted(CDS_PREFETCH_TEMPLATES))
def test_published_templates_are_in_the_2_0_query_subset(hook: str, key: str) -> None:
    assert template_problems(CDS_PREFETCH_TEMPLATES[key], hook) == []


@pytest.mark.parametrize(("template", "problem"), [
    ("ImagingStudy?patient={{context.patientId}}&_include=ImagingStudy:endpoint", "_include"),
    ("Observation?patient={{context.draftOrders}}", "not a first-level prefetch-token context field"),
    ("Observation?patient={{context.patientId.reference}}", "not a first-level"),
    ("Observation?patient={{Patient.id}}", "neither context"),
    ("Observation?patient={{context.patientId}}&date=ne2020-01-01", "eq|lt|gt|ge|le"),
    ("Observation?patient={{context.patientId}}&code:text=smoking", "only use the :in modifier"),
    ("Observation?patient={{context.patientId}}&_has:Condition:subject:code=x", "_has"),
    ("Patient/{{context.patientId}}?_elements=id", "no parameters"),
])
def test_template_checker_rejects_what_2_0_forbids(template: str, problem: str) -> None:
    problems = template_problems(template, "patient-view")
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("template", [
    "Patient/{{context.patientId}}",
    "Observation?patient={{context.patientId}}&code=http://loinc.org|72166-2&_sort=-date&_count=1",
    "Observation?patient={{context.patientId}}&date=ge2024-01-01",
    "Condition?patient={{context.patientId}}&code:in=http://example.org/ValueSet/copd",
    "Practitioner/{{userPractitionerId}}",
    "Encounter/{{context.encounterId}}",
])
def test_template_checker_accepts_valid_templates(template: str) -> None:
    assert template_problems(template, "patient-view") == []
