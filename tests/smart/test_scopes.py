"""SMART scopes: v2 syntax, v1 accepted with v2 meaning, query-restricted scopes, launch scopes."""

from __future__ import annotations

import pytest

from risk.smart.scopes import Interaction, ScopeContext, ScopeSet, ehr_scopes, parse_scope, standalone_scopes


@pytest.mark.parametrize(("scope", "perms", "v1"), [
    ("patient/Observation.rs", "rs", False),
    ("patient/Observation.read", "rs", True),
    ("patient/Observation.write", "cud", True),
    ("patient/Observation.*", "cruds", True),
    ("user/RiskAssessment.cruds", "cruds", False),
    ("patient/RiskAssessment.c", "c", False),
    ("system/*.rs", "rs", False),
])
def test_v1_and_v2_permissions(scope: str, perms: str, v1: bool) -> None:
    s = parse_scope(scope)
    assert s is not None
    assert s.permissions == frozenset(Interaction(c) for c in perms)
    assert s.v1 is v1


@pytest.mark.parametrize("scope", ["patient/Observation.dus", "patient/Observation.rr", "patient/Observation.",
                                   "patient/observation.rs", "launch", "openid", "bogus/Observation.rs"])
def test_out_of_order_or_malformed_is_not_a_resource_scope(scope: str) -> None:
    assert parse_scope(scope) is None


def test_scope_set_permits_by_resource_and_context() -> None:
    s = ScopeSet.parse("launch openid fhirUser patient/*.read patient/RiskAssessment.c offline_access")
    assert s.can_read("Observation") and s.can_read("ImagingStudy")
    assert s.can_create("RiskAssessment")
    assert not s.can_create("ServiceRequest")
    assert s.has("launch") and s.has("offline_access") and s.has("fhirUser")
    assert s.uses_v1
    assert not s.permits("Observation", Interaction.READ, contexts=(ScopeContext.SYSTEM,))


def test_wildcard_write_v1_and_v2() -> None:
    assert ScopeSet.parse("user/*.write").can_create("RiskAssessment")
    assert ScopeSet.parse("patient/*.cruds").can_create("ServiceRequest")
    assert not ScopeSet.parse("patient/*.rs").can_create("RiskAssessment")


def test_query_restricted_scope_reads_but_never_writes() -> None:
    s = ScopeSet.parse("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|"
                       "laboratory patient/RiskAssessment.c?code=x")
    assert s.can_read("Observation")
    assert not s.can_create("RiskAssessment")


def test_invalid_resource_scopes_are_reported_not_granted() -> None:
    s = ScopeSet.parse("patient/Observation.dus launch")
    assert s.invalid == ("patient/Observation.dus",)
    assert not s.can_read("Observation")


def test_empty_grant_permits_nothing() -> None:
    s = ScopeSet.parse(None)
    assert not s.can_read("Patient") and not s.resource


def test_standalone_and_ehr_scope_strings() -> None:
    base = "launch openid fhirUser patient/Patient.rs"
    assert standalone_scopes(base).split() == ["launch/patient", "openid", "fhirUser", "patient/Patient.rs"]
    assert "launch" in ehr_scopes("openid patient/Patient.rs").split()
    assert ehr_scopes(base) == base
