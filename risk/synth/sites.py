"""Site profiles: what differs between the two synthetic hospitals (population mix, prevalence, scanners, AI).

``site-a`` is the reference site: its cancer risk follows PLCOm2012 exactly. ``site-b`` has a different
population mix, a higher underlying risk (odds × 1.4 on top of PLCOm2012), other scanners and kernels, another
vendor-AI product and messier records. Issue 6 (transport of the learned models to a second site) needs both.
"""

from __future__ import annotations

from dataclasses import dataclass

from risk.domain.patient import RaceEthnicity
from risk.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Kernel:
    """A reconstruction kernel and the image noise (HU standard deviation in lung) it gives on LDCT."""

    name: str
    noise_sd_hu: float


@dataclass(frozen=True, slots=True)
class Scanner:
    manufacturer: str
    model: str
    kernels: tuple[Kernel, ...]
    weight: float
    """Share of the site's studies done on this scanner (weights are normalised per site)."""


@dataclass(frozen=True, slots=True)
class AiProduct:
    """The "vendor AI" that writes the TID 1500 SR, and the SR shapes it uses."""

    name: str
    version: str
    manufacturer: str
    planar_3d_point_rate: float
    """Share of SRs whose groups are TID 1410 with a SCOORD3D POINT at the centre."""
    volumetric_rate: float
    """Share of SRs whose groups are TID 1411 with a volume surface POINT at the centre."""
    # The rest use TID 1410 with a 2-D SCOORD CIRCLE on the CT slice through the centre.
    missing_tracking_uid_rate: float
    """Share of SRs with every Tracking Unique Identifier (DCM 112040) stripped (highdicom issue #213)."""
    legacy_srt_rate: float
    """Share of SRs with SNOMED-RT (SRT) instead of SCT codes where an SRT code exists (CP-1850)."""


@dataclass(frozen=True, slots=True)
class SiteProfile:
    name: str
    number: int
    """Stable number mixed into the random seed, so two sites with one seed are independent."""
    id_prefix: str
    """FHIR id prefix: ``Patient/<id_prefix>-0000001``."""
    mrn_system: str
    mrn_prefix: str
    accession_prefix: str
    institution: str
    endpoint_id: str
    female_rate: float
    race_mix: tuple[tuple[RaceEthnicity, float], ...]
    smoking_mix: tuple[float, float, float]
    """(current, former, never) at the baseline screen."""
    age_mean: float
    age_sd: float
    risk_odds_multiplier: float
    """Cancer odds relative to PLCOm2012 (1.0 = the published model exactly)."""
    scanners: tuple[Scanner, ...]
    ai: AiProduct
    icd_condition_rate: float
    """Share of Conditions coded in ICD-10-CM instead of SNOMED CT."""

    def __post_init__(self) -> None:
        if abs(sum(p for _, p in self.race_mix) - 1.0) > 1e-9:
            raise ValueError(f'Argument "race_mix" of site {self.name} must sum to 1.')
        if abs(sum(self.smoking_mix) - 1.0) > 1e-9:
            raise ValueError(f'Argument "smoking_mix" of site {self.name} must sum to 1.')
        if not 0 < self.ai.planar_3d_point_rate + self.ai.volumetric_rate <= 1:
            raise ValueError(f'Argument "ai" of site {self.name}: SR shape rates must sum to at most 1.')


SITE_A = SiteProfile(
    name="site-a",
    number=1,
    id_prefix="lca",
    mrn_system="https://site-a.lungrisk.example.org/fhir/sid/mrn",
    mrn_prefix="A",
    accession_prefix="SA",
    institution="Synthetic Site A Hospital",
    endpoint_id="lca-dicomweb",
    female_rate=0.45,
    race_mix=(
        (RaceEthnicity.WHITE, 0.76),
        (RaceEthnicity.BLACK, 0.10),
        (RaceEthnicity.HISPANIC, 0.07),
        (RaceEthnicity.ASIAN, 0.05),
        (RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE, 0.015),
        (RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER, 0.005),
    ),
    smoking_mix=(0.45, 0.45, 0.10),
    age_mean=63.0,
    age_sd=6.5,
    risk_odds_multiplier=1.0,
    scanners=(
        Scanner("SIEMENS", "SOMATOM Definition AS+", (Kernel("B50f", 30.0), Kernel("I30f", 15.0)), 0.6),
        Scanner("GE MEDICAL SYSTEMS", "LightSpeed VCT", (Kernel("LUNG", 35.0), Kernel("STANDARD", 15.0)), 0.4),
    ),
    ai=AiProduct(name="SynthNodule AI", version="2.3.1", manufacturer="Synthetic AI Vendor A",
                 planar_3d_point_rate=0.65, volumetric_rate=0.25, missing_tracking_uid_rate=0.10,
                 legacy_srt_rate=0.05),
    icd_condition_rate=0.15,
)

SITE_B = SiteProfile(
    name="site-b",
    number=2,
    id_prefix="lcb",
    mrn_system="https://site-b.lungrisk.example.org/fhir/sid/mrn",
    mrn_prefix="B",
    accession_prefix="SB",
    institution="Synthetic Site B Medical Center",
    endpoint_id="lcb-dicomweb",
    female_rate=0.50,
    race_mix=(
        (RaceEthnicity.WHITE, 0.55),
        (RaceEthnicity.BLACK, 0.22),
        (RaceEthnicity.HISPANIC, 0.14),
        (RaceEthnicity.ASIAN, 0.06),
        (RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE, 0.02),
        (RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER, 0.01),
    ),
    smoking_mix=(0.50, 0.42, 0.08),
    age_mean=62.0,
    age_sd=6.8,
    risk_odds_multiplier=1.4,
    scanners=(
        Scanner("Philips", "Brilliance 64", (Kernel("YC", 32.0), Kernel("B", 15.0)), 0.4),
        Scanner("CANON_MEC", "Aquilion ONE", (Kernel("FC52", 35.0), Kernel("FC07", 15.0)), 0.4),
        Scanner("GE MEDICAL SYSTEMS", "Revolution CT", (Kernel("LUNG", 35.0),), 0.2),
    ),
    ai=AiProduct(name="PulmoSynth CAD", version="1.4.0", manufacturer="Synthetic AI Vendor B",
                 planar_3d_point_rate=0.30, volumetric_rate=0.55, missing_tracking_uid_rate=0.20,
                 legacy_srt_rate=0.10),
    icd_condition_rate=0.30,
)

SITES: dict[str, SiteProfile] = {SITE_A.name: SITE_A, SITE_B.name: SITE_B}


def site_profile(name: str) -> SiteProfile:
    """The profile called ``name``; :class:`InvalidInput` naming ``--site`` otherwise."""
    try:
        return SITES[name]
    except KeyError:
        raise InvalidInput("--site", f"unknown site {name!r}; choose one of {', '.join(SITES)}") from None
