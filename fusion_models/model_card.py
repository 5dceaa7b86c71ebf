"""The model card written into every artifact (Mitchell et al., "Model Cards for Model Reporting", 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fusion_models.artifacts import ArtifactManifest

if TYPE_CHECKING:
    from fusion_models.training import TaskResult


def model_card(manifest: ArtifactManifest, results: Sequence[TaskResult], data_notes: Sequence[str]) -> str:
    synthetic = manifest.trained_on_synthetic_data
    lines = [
        f"# Model card: lung-cancer fusion models, version {manifest.version}",
        "",
        f"**{manifest.notice}**" if synthetic else "**Trained on site data: validate locally before use.**",
        "",
        f"Created {manifest.created}. {manifest.description}",
        "",
        "## Intended use",
        "",
        "Decision *support* for lung-cancer screening programmes: a learned estimate shown next to the published "
        "models (PLCOm2012 for screening eligibility, Brock for nodules, Lung-RADS for management), never instead "
        "of them. Users: clinicians and screening coordinators. Out of scope: diagnosis, patients outside the "
        "training ranges (the model abstains and says why), paediatric patients, non-CT imaging.",
        "",
        "These artifacts were trained on the project's synthetic cohort (`risk synth`): they demonstrate the "
        "pipeline and must not be used for clinical decisions. A site retrains (`risk train`) or recalibrates "
        "(`risk recalibrate`) on its own labelled data with the same code." if synthetic else
        "Trained on the data described below; validate on local data before clinical use.",
        "",
        "## Models",
        "",
        "- **XGBoost** on all features, native missing values (no imputation).",
        "- **Late-fusion network** (PyTorch): a tabular (EHR) branch and an imaging branch with missingness masks; "
        "the imaging branch is switched off for patients without CT, so they are still scored.",
        "- The final score per task is a log-odds blend of the two with the weight selected on the validation split "
        "only, then calibrated (Platt or isotonic, stored as JSON) on the validation split.",
        "- Explanations: exact TreeSHAP for XGBoost, feature occlusion for the network, blended with the same weight, "
        "on the log-odds scale before calibration, worded as clinical factors.",
        "- Probability intervals reflect calibration-sample uncertainty only, not model uncertainty.",
        "- Abstention: a required input missing, a value outside the training range, or an unseen category.",
        "",
        "## Data",
        "",
    ]
    lines += [f"- {n}" for n in data_notes] or ["- (no data notes given)"]
    lines += ["", "## Performance on the held-out test split", ""]
    for r in results:
        rep = r.report
        fusion = rep.aucs["fusion"]
        cal = rep.calibration["fusion"]
        m = r.manifest
        lines += [f"### Task `{r.task.value}`: {m.outcome}"
                  + (f" within {m.horizon_years:g} years" if m.horizon_years else ""), "",
                  f"- Test rows {rep.n}, events {rep.events}; train {m.split_sizes['train']}, validation "
                  f"{m.split_sizes['validation']}.",
                  f"- AUC {fusion}; Brier {rep.brier['fusion']:.4f}; calibration intercept {cal.intercept:.3f}, "
                  f"slope {cal.slope:.3f}.",
                  f"- Blend: XGBoost weight {m.blend['xgb_weight']:g}; calibrator `{m.calibrator_id}`.",
                  f"- Feature schema `{m.schema_name}` ({m.schema_hash[:16]}…); training data "
                  f"{m.training_data_digest[:23]}…"]
        for c in rep.comparisons:
            d = c["auc_difference"]
            lines.append(f"- vs {c['baseline']} (AUC {rep.aucs[c['baseline']]}): difference {d['estimate']:+.3f} "
                         f"({d['low']:+.3f} to {d['high']:+.3f}) on {c['rows']} rows; "
                         + ("better" if c["beats_baseline"] else "not shown to be better"))
        lines += ["", f"Full report: `{r.task.value}/report.md`.", ""]
    lines += [
        "## Limitations",
        "",
        "- Synthetic training data: the associations are those the generator was built with (PLCOm2012 risk plus "
        "an imaging signal following Brock-like effects); real-world performance is unknown." if synthetic else
        "- Performance outside the training population is unknown.",
        "- Subgroup results with few events are noisy; see the subgroup tables in each report.",
        "- Calibration drifts across sites (scanner mix, prevalence): recalibrate on local outcomes before use.",
        "",
    ]
    return "\n".join(lines)
