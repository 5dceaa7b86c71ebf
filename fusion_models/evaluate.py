"""Evaluation: discrimination, calibration, clinical utility and subgroups, as numbers, markdown and PNG plots.

* **AUC** (Mann-Whitney, ties counted ½) with a percentile bootstrap 95% CI (``n_boot`` resamples of rows); the
  difference of two models' AUCs uses a *paired* bootstrap (same resamples for both).
* **Brier score** (mean squared error of the probability).
* **Calibration intercept and slope** (Cox 1958; Van Calster et al., J Clin Epidemiol 2016): the slope is ``b``
  in ``logit P(y) = a + b·logit(p)``; the intercept is ``a`` with ``b`` fixed at 1 (calibration-in-the-large).
  Ideal: intercept 0, slope 1. Plus a reliability diagram (deciles of predicted risk vs observed rate, with
  Wilson intervals).
* **Decision-curve net benefit** (Vickers & Elkin, Med Decis Making 2006): ``NB(t) = TP/n − FP/n · t/(1−t)`` at
  the task's clinical thresholds, against treat-all and treat-none. Patient task: the PLCOm2012 screening
  thresholds 1.51% (Tammemägi, PLOS Med 2014), 1.70% (ILST) and 2.0%. Nodule task: 5% and 10% (BTS 2015
  nodule guideline: < 10% Brock → CT surveillance, ≥ 10% → PET-CT), 30% and 70% (BTS: > 70% Herder → excision
  may be offered).
* **Subgroups**: n, events, AUC (when ≥ ``MIN_SUBGROUP_EVENTS`` events and non-events), Brier, mean predicted
  and observed rate, per level of each subgroup column present (sex, race/ethnicity, age band, smoking status,
  scanner vendor, reconstruction kernel, site).

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from fusion_models.calibration import fit_logistic, logit, wilson_interval

FloatArray = npt.NDArray[np.float64]

PATIENT_THRESHOLDS = (0.0151, 0.017, 0.02)
NODULE_THRESHOLDS = (0.05, 0.10, 0.30, 0.70)
SUBGROUP_COLUMNS = ("sex", "race_ethnicity", "age_band", "smoking_status", "scanner_vendor", "scanner_kernel",
                    "site")
MIN_SUBGROUP_EVENTS = 5
AGE_BANDS = ((0, 50, "<50"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 80, "70-79"), (80, 200, "80+"))


def auc(y: FloatArray, p: FloatArray) -> float:
    """Area under the ROC curve (probability a random case outranks a random control; ties ½)."""
    y = np.asarray(y, dtype=np.float64)
    n1 = float(y.sum())
    n0 = float(y.size - n1)
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = _rankdata(np.asarray(p, dtype=np.float64))
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _rankdata(a: FloatArray) -> FloatArray:
    """Average ranks (1-based; ties share their mean rank), vectorised."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    return np.asarray((start + (counts + 1) / 2.0)[inverse], dtype=np.float64)


def _auc_many(y: FloatArray, scores: FloatArray, samples: npt.NDArray[np.int64]) -> FloatArray:
    """AUC of each score column (n, k) on each bootstrap sample (B, n): returns (B, k)."""
    out = np.empty((samples.shape[0], scores.shape[1]))
    for b, idx in enumerate(samples):
        yb = y[idx]
        for k in range(scores.shape[1]):
            out[b, k] = auc(yb, scores[idx, k])
    return out


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.low:.3f}-{self.high:.3f})"


def bootstrap_aucs(y: FloatArray, scores: Mapping[str, FloatArray], *, n_boot: int = 500, seed: int = 0
                   ) -> tuple[dict[str, Interval], npt.NDArray[np.float64], list[str]]:
    """Each model's AUC with a 95% percentile bootstrap CI, and the (B, k) bootstrap matrix for paired diffs."""
    names = list(scores)
    matrix = np.column_stack([np.asarray(scores[n], dtype=np.float64) for n in names])
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, y.size, size=(n_boot, y.size))
    boot = _auc_many(y, matrix, samples)
    out: dict[str, Interval] = {}
    for k, name in enumerate(names):
        col = boot[:, k]
        col = col[np.isfinite(col)]
        out[name] = Interval(auc(y, matrix[:, k]), float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5)))
    return out, boot, names


def paired_difference(y: FloatArray, boot: FloatArray, names: list[str], a: str, b: str,
                      scores: Mapping[str, FloatArray]) -> Interval:
    """AUC(a) − AUC(b) with the paired bootstrap 95% CI."""
    d = boot[:, names.index(a)] - boot[:, names.index(b)]
    d = d[np.isfinite(d)]
    return Interval(auc(y, scores[a]) - auc(y, scores[b]), float(np.percentile(d, 2.5)),
                    float(np.percentile(d, 97.5)))


def brier(y: FloatArray, p: FloatArray) -> float:
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2))


@dataclass(frozen=True, slots=True)
class CalibrationFit:
    intercept: float
    slope: float
    observed_rate: float
    mean_predicted: float

    def to_json(self) -> dict[str, float]:
        return {"intercept": self.intercept, "slope": self.slope, "observed_rate": self.observed_rate,
                "mean_predicted": self.mean_predicted}


def calibration(y: FloatArray, p: FloatArray) -> CalibrationFit:
    lp = logit(p)
    (_, slope), _ = fit_logistic(lp, y)
    (intercept,), _ = fit_logistic(lp, y, offset=lp, slope=False)
    return CalibrationFit(float(intercept), float(slope), float(np.mean(y)), float(np.mean(p)))


def reliability_bins(y: FloatArray, p: FloatArray, n_bins: int = 10) -> list[dict[str, float]]:
    """Deciles of predicted risk: mean predicted, observed rate and its Wilson 95% interval."""
    order = np.argsort(p, kind="mergesort")
    bins = np.array_split(order, n_bins)
    out: list[dict[str, float]] = []
    for idx in bins:
        if idx.size == 0:
            continue
        events = float(y[idx].sum())
        lo, hi = wilson_interval(events, int(idx.size))
        out.append({"n": float(idx.size), "mean_predicted": float(p[idx].mean()), "observed": events / idx.size,
                    "observed_low": lo, "observed_high": hi})
    return out


def net_benefit(y: FloatArray, p: FloatArray, threshold: float) -> float:
    n = y.size
    treat = p >= threshold
    tp = float(np.sum(treat & (y == 1)))
    fp = float(np.sum(treat & (y == 0)))
    return tp / n - fp / n * threshold / (1 - threshold)


def decision_curve(y: FloatArray, scores: Mapping[str, FloatArray], thresholds: Sequence[float]
                   ) -> list[dict[str, float]]:
    prevalence = float(np.mean(y))
    rows: list[dict[str, float]] = []
    for t in thresholds:
        row = {"threshold": t, "treat_all": prevalence - (1 - prevalence) * t / (1 - t), "treat_none": 0.0}
        for name, p in scores.items():
            row[name] = net_benefit(y, p, t)
        rows.append(row)
    return rows


def age_band_expr(age_column: str = "age_years") -> pl.Expr:
    expr = pl.lit(None, dtype=pl.String)
    for lo, hi, label in reversed(AGE_BANDS):
        expr = pl.when((pl.col(age_column) >= lo) & (pl.col(age_column) < hi)).then(pl.lit(label)).otherwise(expr)
    return expr.alias("age_band")


def subgroup_table(frame: pl.DataFrame, y: FloatArray, p: FloatArray,
                   columns: Sequence[str] = SUBGROUP_COLUMNS) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for column in columns:
        if column not in frame.columns:
            continue
        values = frame.get_column(column).cast(pl.String).fill_null("(missing)").to_numpy()
        for level in sorted(set(values.tolist())):
            mask = values == level
            yy, pp = y[mask], p[mask]
            events = int(yy.sum())
            enough = events >= MIN_SUBGROUP_EVENTS and (yy.size - events) >= MIN_SUBGROUP_EVENTS
            rows.append({"subgroup": column, "level": level, "n": int(mask.sum()), "events": events,
                         "auc": auc(yy, pp) if enough else None, "brier": brier(yy, pp),
                         "mean_predicted": float(pp.mean()), "observed": float(yy.mean())})
    return rows


@dataclass
class ModelScores:
    """One model's test-split probabilities, restricted to the rows where it gives one (mask)."""

    name: str
    probability: FloatArray
    mask: npt.NDArray[np.bool_] | None = None
    description: str = ""


@dataclass
class EvaluationReport:
    task: str
    n: int
    events: int
    aucs: dict[str, Interval] = field(default_factory=dict)
    brier: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, CalibrationFit] = field(default_factory=dict)
    reliability: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    decision: list[dict[str, float]] = field(default_factory=list)
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "n": self.n, "events": self.events,
                "auc": {k: v.to_json() for k, v in self.aucs.items()}, "brier": self.brier,
                "calibration": {k: v.to_json() for k, v in self.calibration.items()},
                "reliability": self.reliability, "decision_curve": self.decision, "subgroups": self.subgroups,
                "comparisons": self.comparisons, "notes": self.notes, "plots": self.plots}


def evaluate(task: str, y: FloatArray, primary: str, models: Sequence[ModelScores], *, frame: pl.DataFrame,
             thresholds: Sequence[float], baselines: Sequence[str] = (), n_boot: int = 500, seed: int = 0
             ) -> EvaluationReport:
    """Evaluate ``models`` on one split. ``primary`` is the shipped model; ``baselines`` are the names it is
    compared against (each on the rows where both give a probability: PLCOm2012 does not score never-smokers).
    """
    y = np.asarray(y, dtype=np.float64)
    report = EvaluationReport(task=task, n=int(y.size), events=int(y.sum()))
    full = {m.name: m.probability for m in models if m.mask is None}
    aucs, boot, names = bootstrap_aucs(y, full, n_boot=n_boot, seed=seed)
    report.aucs.update(aucs)
    for m in models:
        mask = np.ones(y.size, dtype=bool) if m.mask is None else m.mask
        yy, pp = y[mask], m.probability[mask]
        if m.mask is not None:
            sub, _, _ = bootstrap_aucs(yy, {m.name: pp}, n_boot=n_boot, seed=seed)
            report.aucs[m.name] = sub[m.name]
            report.notes.append(f"{m.name}: scored on {int(mask.sum())} of {y.size} rows ({m.description})")
        report.brier[m.name] = brier(yy, pp)
        report.calibration[m.name] = calibration(yy, pp)
        report.reliability[m.name] = reliability_bins(yy, pp)
    report.decision = decision_curve(y, full, thresholds)
    primary_p = next(m.probability for m in models if m.name == primary)
    report.subgroups = subgroup_table(frame, y, primary_p)
    by_name = {m.name: m for m in models}
    for base in baselines:
        m = by_name[base]
        if m.mask is None:
            diff = paired_difference(y, boot, names, primary, base, full)
            rows = y.size
        else:
            yy = y[m.mask]
            pair = {primary: primary_p[m.mask], base: m.probability[m.mask]}
            _, b2, n2 = bootstrap_aucs(yy, pair, n_boot=n_boot, seed=seed)
            diff = paired_difference(yy, b2, n2, primary, base, pair)
            rows = int(m.mask.sum())
        report.comparisons.append({"baseline": base, "rows": rows, "auc_difference": diff.to_json(),
                                   "beats_baseline": diff.low > 0})
    return report


def best_baseline(report: EvaluationReport) -> dict[str, Any] | None:
    """The comparison against the baseline with the highest AUC (on its own rows)."""
    if not report.comparisons:
        return None
    return max(report.comparisons, key=lambda c: report.aucs[c["baseline"]].estimate)


# --- plots and markdown ------------------------------------------------------------------------------------------
def plot_reliability(report: EvaluationReport, path: Path, names: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=90)
    top = 0.0
    for name in names:
        bins = report.reliability[name]
        xs = [b["mean_predicted"] for b in bins]
        ys = [b["observed"] for b in bins]
        err = [[max(0.0, b["observed"] - b["observed_low"]) for b in bins],
               [max(0.0, b["observed_high"] - b["observed"]) for b in bins]]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, lw=1, capsize=2, label=name)
        top = max(top, max(xs), max(ys))
    top = min(1.0, top * 1.1 + 1e-3)
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted risk (decile mean)")
    ax.set_ylabel("observed rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_decision_curve(y: FloatArray, scores: Mapping[str, FloatArray], path: Path, t_max: float,
                        title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.linspace(t_max / 100, t_max, 60)
    curve = decision_curve(y, scores, ts.tolist())
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=90)
    for name in scores:
        ax.plot(ts, [r[name] for r in curve], lw=1.2, label=name)
    ax.plot(ts, [r["treat_all"] for r in curve], ls=":", c="k", lw=0.8, label="treat all")
    ax.axhline(0, c="grey", lw=0.8)
    prevalence = float(np.mean(y))
    ax.set_ylim(-0.1 * prevalence, prevalence * 1.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def markdown(report: EvaluationReport, title: str, descriptions: Mapping[str, str]) -> str:
    lines = [f"## {title}", "", f"Held-out rows: {report.n}, events: {report.events} "
             f"({report.events / max(report.n, 1):.2%}).", ""]
    lines += ["| model | AUC (95% CI) | Brier | cal. intercept | cal. slope | what it is |",
              "|---|---|---|---|---|---|"]
    for name, a in report.aucs.items():
        c = report.calibration[name]
        lines.append(f"| {name} | {a} | {_fmt(report.brier[name], 4)} | {_fmt(c.intercept)} | {_fmt(c.slope)} | "
                     f"{descriptions.get(name, '')} |")
    lines.append("")
    for note in report.notes:
        lines.append(f"- {note}")
    if report.comparisons:
        lines += ["", "AUC difference, shipped model minus baseline (paired bootstrap 95% CI, same rows):", "",
                  "| baseline | rows | AUC difference | beats baseline |", "|---|---|---|---|"]
        for comp in report.comparisons:
            d = comp["auc_difference"]
            lines.append(f"| {comp['baseline']} | {comp['rows']} | {d['estimate']:+.3f} ({d['low']:+.3f} to "
                         f"{d['high']:+.3f}) | {'yes' if comp['beats_baseline'] else 'no'} |")
    if report.decision:
        names = [k for k in report.decision[0] if k not in ("threshold",)]
        lines += ["", "Decision-curve net benefit (per row: patient or nodule) at clinical thresholds:", "",
                  "| threshold | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in report.decision:
            lines.append(f"| {r['threshold']:.2%} | " + " | ".join(f"{r[n]:.4f}" for n in names) + " |")
    if report.subgroups:
        lines += ["", "Subgroups (shipped model):", "",
                  "| subgroup | level | n | events | AUC | Brier | mean predicted | observed |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in report.subgroups:
            lines.append(f"| {s['subgroup']} | {s['level']} | {s['n']} | {s['events']} | {_fmt(s['auc'])} | "
                         f"{_fmt(s['brier'], 4)} | {_fmt(s['mean_predicted'], 4)} | {_fmt(s['observed'], 4)} |")
    for plot in report.plots:
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"
