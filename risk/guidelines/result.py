"""The result envelope every published model and guideline returns.

One JSON-serialisable shape for the CLI (``risk calc``), the HTTP API (``POST /api/calculators/{MODEL}``)
and the assessment builder: which model, which version, which source, the inputs it used, its outputs, and
why it abstained when it did. A model that abstains gives reasons instead of a number: ``outputs`` is
``None`` exactly when ``abstentions`` is not empty.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

OutputT = TypeVar("OutputT", bound=BaseModel)


class ModelOutputs(BaseModel):
    """Base of every model's typed outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ProbabilityOutputs(ModelOutputs):
    """Outputs of a logistic nodule-malignancy model (Mayo, VA)."""

    probability: float = Field(ge=0, le=1, description="Probability that the nodule is malignant.")
    linear_predictor: float = Field(description="The logit (log-odds) of probability.")
    contributions: dict[str, float] = Field(description="Each term's contribution to the logit.")


class ModelResult(BaseModel, Generic[OutputT]):
    """What a calculator returns: provenance, inputs, outputs or abstention reasons, and warnings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="Registry name of the model, e.g. 'plcom2012'.")
    version: str = Field(description="Version of the model or guideline and of the coefficient source used.")
    citation: str = Field(description="The source the coefficients or rules were taken from.")
    inputs: dict[str, Any] = Field(description="The validated inputs the model used (JSON form).")
    outputs: OutputT | None = Field(description="The model's outputs; null when it abstained.")
    abstentions: tuple[str, ...] = Field(default=(), description="Why the model did not score (empty if it did).")
    warnings: tuple[str, ...] = Field(default=(), description="Caveats that do not stop the model scoring.")

    @model_validator(mode="after")
    def _outputs_xor_abstentions(self) -> ModelResult[OutputT]:
        if (self.outputs is None) == (not self.abstentions):
            raise ValueError('Argument "outputs" must be None exactly when "abstentions" is not empty.')
        return self

    @property
    def abstained(self) -> bool:
        return bool(self.abstentions)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form (enums as values, tuples as lists)."""
        return self.model_dump(mode="json")


def scored(cls: type[ModelResult[OutputT]], *, model: str, version: str, citation: str, inputs: BaseModel,
           outputs: OutputT, warnings: tuple[str, ...] | list[str] = ()) -> ModelResult[OutputT]:
    """A result with outputs."""
    return cls(model=model, version=version, citation=citation, inputs=_inputs_json(inputs), outputs=outputs,
               warnings=tuple(warnings))


def abstained(cls: type[ModelResult[OutputT]], *, model: str, version: str, citation: str, inputs: BaseModel,
              reasons: tuple[str, ...] | list[str], warnings: tuple[str, ...] | list[str] = ()
              ) -> ModelResult[OutputT]:
    """A result that gives reasons instead of outputs."""
    if not reasons:
        raise ValueError('Argument "reasons" must name at least one reason to abstain.')
    return cls(model=model, version=version, citation=citation, inputs=_inputs_json(inputs), outputs=None,
               abstentions=tuple(reasons), warnings=tuple(warnings))


def _inputs_json(inputs: BaseModel) -> dict[str, Any]:
    """The inputs as given: JSON form, absent optional fields left out."""
    return inputs.model_dump(mode="json", exclude_none=True)
