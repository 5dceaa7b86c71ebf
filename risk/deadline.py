"""A total time budget shared by every call made on behalf of one request (CDS hook, app page, job)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Deadline:
    """``Deadline(2.0)`` expires two seconds after creation (monotonic clock)."""

    budget_s: float
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ValueError(f'Argument "budget_s" must be positive, got {self.budget_s!r}.')

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - (time.monotonic() - self.started))

    @property
    def expired(self) -> bool:
        return self.remaining_s <= 0.0

    def timeout(self, per_call_s: float) -> float:
        """The timeout for the next call: the per-call limit, capped by what is left of the budget."""
        return max(0.001, min(per_call_s, self.remaining_s))

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(float("inf"))
