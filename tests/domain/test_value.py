"""risk.domain._value.value_type: frozen, slotted dataclasses whose generated __init__ stores through the slots."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from datetime import date

import pytest

import risk.domain as domain
from risk.domain import SourceKind, SourceRef
from risk.domain._value import value_type


@value_type
class Sample:
    name: str
    count: int = 2
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError('Argument "count" must be >= 0.')


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:  # what value_type must behave like
    name: str
    count: int = 2
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = dataclasses.field(default=None, kw_only=True)


def _parameters(cls: type) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default if p.default is not dataclasses.MISSING else None)
            for p in inspect.signature(cls.__init__).parameters.values()]


def test_the_generated_init_takes_what_dataclasses_would() -> None:
    ours, theirs = _parameters(Sample), _parameters(Reference)
    assert [(n, k) for n, k, _ in ours] == [(n, k) for n, k, _ in theirs]
    assert Sample("a") == Sample("a", 2, [], note=None) and Sample("a").tags == []
    assert Sample("a").tags is not Sample("a").tags  # a fresh default per instance
    assert Sample(name="b", count=3, tags=["x"], note="n") == Sample("b", 3, ["x"], note="n")
    with pytest.raises(TypeError):
        Sample("a", 1, [], "positional note")  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match='"count"'):
        Sample("a", -1)  # __post_init__ still validates


def test_instances_stay_frozen_hashable_and_picklable() -> None:
    s = Sample("a", 1, note="n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.count = 5  # type: ignore[misc]
    assert not hasattr(s, "__dict__")
    ref = SourceRef(SourceKind.FHIR, "Observation/1", date(2024, 1, 2))
    assert hash(ref) == hash(SourceRef(SourceKind.FHIR, "Observation/1", date(2024, 1, 2)))
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert dataclasses.replace(ref, reference="Observation/2").reference == "Observation/2"
    with pytest.raises(ValueError, match='"reference"'):
        dataclasses.replace(ref, reference=" ")


def test_unsupported_fields_are_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="InitVar"):
        @value_type
        class WithInitVar:
            x: dataclasses.InitVar[int]

    with pytest.raises(TypeError, match="init=False"):
        @value_type
        class WithoutInit:
            x: int = dataclasses.field(default=0, init=False)


def test_every_domain_value_type_uses_it() -> None:
    """The domain's dataclasses are all value types (frozen, slotted, with the generated __init__)."""
    classes = {c for m in (domain.clinical, domain.imaging, domain.patient, domain.provenance, domain.smoking,
                           domain.snapshot, domain.assessment)
               for c in vars(m).values() if dataclasses.is_dataclass(c) and isinstance(c, type)
               and c.__module__ == m.__name__}
    assert len(classes) >= 20
    for cls in classes:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen and "__slots__" in vars(cls), cls
        assert "_set_" in " ".join(cls.__init__.__code__.co_names), cls
