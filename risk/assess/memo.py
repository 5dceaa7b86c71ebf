"""Cheap memoisation keys for the assessment's pure functions.

Frozen domain objects hash by value, recursively, in Python: hashing a patient's nodule tracks costs more than
some of the work it would save. Tracks served from the imaging cache are the *same objects* on every call, so
:class:`Ref` remembers the hash of an object by identity (the object is kept alive with its hash, so its id cannot
be reused) and compares by identity before value.
"""

from __future__ import annotations

from typing import Any

_MAX_REMEMBERED = 20_000
_hashes: dict[int, tuple[Any, int]] = {}


def _hash_of(obj: Any) -> int:
    entry = _hashes.get(id(obj))
    if entry is not None and entry[0] is obj:
        return entry[1]
    value = hash(obj)
    if len(_hashes) >= _MAX_REMEMBERED:
        _hashes.clear()
    _hashes[id(obj)] = (obj, value)
    return value


class Ref:
    """A memo-key part for a hashable object: identity-cached hash, identity-then-value equality."""

    __slots__ = ("hash", "obj")

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.hash = _hash_of(obj)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and (self.obj is other.obj or self.obj == other.obj)
