"""When a learned model must not give a number, and why.

A prediction is withheld ("cannot score: reason") when

* a feature the schema marks ``required`` is missing (e.g. age, nodule diameter, smoking status);
* a numeric feature lies outside the range seen in training (the model would extrapolate), beyond a small
  tolerance of ``RANGE_TOLERANCE`` × the training span;
* a categorical feature has a level never seen in training.

Missing *optional* inputs (labs, imaging) are not a reason: both models handle missing values natively.
The reasons are plain sentences; the first applicable one is returned, required inputs first.
"""

from __future__ import annotations

from fusion_models.schema import FeatureKind, FeatureRow, FeatureSchema, TrainingRanges

RANGE_TOLERANCE = 0.02


def abstain_reason(schema: FeatureSchema, ranges: TrainingRanges, row: FeatureRow) -> str | None:
    missing = [s.name for s in schema.features if s.required and schema.check_value(s.name, row.get(s.name)) is None]
    if missing:
        return f"required input missing: {', '.join(missing)}"
    for spec in schema.features:
        value = schema.check_value(spec.name, row.get(spec.name))
        if value is None:
            continue
        seen = ranges.ranges.get(spec.name)
        if seen is None:
            continue
        if spec.kind is FeatureKind.CATEGORICAL:
            if seen.levels and value not in seen.levels:
                return (f"{spec.name} = {value!r} was not seen in training "
                        f"(seen: {', '.join(seen.levels)})")
            continue
        if seen.low is None or seen.high is None:
            continue
        v = float(value)
        slack = RANGE_TOLERANCE * (seen.high - seen.low)
        if v < seen.low - slack or v > seen.high + slack:
            unit = "" if spec.unit == "1" else f" {spec.unit}"
            return (f"{spec.name} = {v:g}{unit} is outside the training range "
                    f"{seen.low:g}-{seen.high:g}{unit}")
    return None
