from risk import codes
from risk.domain.clinical import ConditionKind
from risk.features import rules
from risk.features.rules import OBSERVATION_RULES, Role, ValueKind


def test_every_rule_code_is_a_verified_constant() -> None:
    constants = {(c.system, c.code) for _name, c in codes.all_codes()}
    for rule in OBSERVATION_RULES:
        assert (rule.code.system, rule.code.code) in constants
        assert rule.code.verified
        if rule.code.system == codes.LOINC:
            assert codes.loinc_check_digit_ok(rule.code.code), rule.code
        if rule.code.system == codes.SNOMED:
            assert codes.snomed_check_digit_ok(rule.code.code), rule.code


def test_one_rule_per_coding_and_units_for_quantities() -> None:
    keys = [(r.code.system, r.code.code) for r in OBSERVATION_RULES]
    assert len(keys) == len(set(keys))
    for rule in OBSERVATION_RULES:
        assert (rule.units is not None) == (rule.kind is ValueKind.QUANTITY)
        if rule.units is not None:
            assert rule.units.low < rule.units.high


def test_unit_tables() -> None:
    assert rules.UNITS_HEMOGLOBIN.factor("g/dL") == 1.0 and rules.UNITS_HEMOGLOBIN.factor("g/L") == 0.1
    assert rules.UNITS_HEMOGLOBIN.factor(None) is None
    assert rules.UNITS_PACK_YEARS.factor(None) == 1.0
    packs = rules.UNITS_PACKS_PER_DAY
    assert packs.canonical == codes.UNIT_PER_DAY and packs.factor(None) == 20.0 and packs.factor("/d") == 20.0
    assert rules.UNITS_WEIGHT.factor("[lb_av]") == 0.45359237 and rules.UNITS_HEIGHT.factor("[in_i]") == 2.54


def test_lab_panel_has_ten_tests() -> None:
    assert len(rules.LAB_ROLES) == 10 and set(rules.LAB_CODE_BY_ROLE) == set(rules.LAB_ROLES)
    assert rules.LAB_CODE_BY_ROLE[Role.FEV1_FVC] == codes.FEV1_FVC


def test_condition_tables() -> None:
    assert rules.condition_kind(codes.SNOMED, codes.COPD.code) is ConditionKind.COPD
    assert rules.condition_kind(codes.ICD10CM, "C34.1") is ConditionKind.LUNG_CANCER
    assert rules.condition_kind(codes.ICD10CM, "C00.0") is ConditionKind.PERSONAL_HISTORY_OF_CANCER
    assert rules.condition_kind(codes.ICD10CM, "C96.9") is ConditionKind.PERSONAL_HISTORY_OF_CANCER
    assert rules.condition_kind(codes.ICD10CM, "Z85.1") is ConditionKind.LUNG_CANCER
    assert rules.condition_kind("http://example.org", "C34.1") is None
    assert rules.condition_kind(codes.SNOMED, None) is None
    assert rules.is_lung_cancer_coding(codes.SNOMED, codes.PRIMARY_LUNG_CANCER.code)


def test_smoking_answers_cover_the_us_core_value_set() -> None:
    answered = {c for (_s, c) in rules.SMOKING_STATUS_ANSWERS}
    expected = {c.code for c in (*codes.CURRENT_SMOKER_ANSWERS, *codes.FORMER_SMOKER_ANSWERS,
                                 *codes.NEVER_SMOKER_ANSWERS, *codes.UNKNOWN_SMOKER_ANSWERS)}
    assert answered == expected and len(answered) == 8
