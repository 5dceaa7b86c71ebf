from datetime import date

from risk.domain.provenance import NoteCode
from risk.domain.snapshot import PatientSnapshot
from risk.extract.snapshot import snapshot_from_resources
from tests.extract.builders import PID, endpoint, imaging_study, patient

AS_OF = date(2025, 1, 1)


def snap(*resources: dict) -> PatientSnapshot:
    return snapshot_from_resources([patient(), *resources], patient_id=PID, as_of=AS_OF)


def test_uid_modality_date_and_referenced_endpoint() -> None:
    s = snap(imaging_study("1.2.840.1", started="2024-03-01T08:10:00Z"), endpoint())
    (study,) = s.imaging_studies
    assert (study.study_instance_uid, study.modality, study.started) == ("1.2.840.1", "CT", date(2024, 3, 1))
    assert study.dicomweb_endpoint == "http://pacs.example.org/dicom-web"
    assert s.last_ct_date == date(2024, 3, 1)


def test_contained_endpoint_and_study_level_modality_and_accession() -> None:
    study = imaging_study("1.2.3", endpoint="#ep", contained=[endpoint("ep", "https://pacs/wado")],
                          modality="MR", identifier=[
                              {"system": "urn:dicom:uid", "value": "1.2.3"},
                              {"type": {"coding": [{"code": "ACSN"}]}, "value": "A-77"}])
    study["modality"] = [{"code": "CT"}]
    (ref,) = snap(study).imaging_studies
    assert (ref.study_instance_uid, ref.modality, ref.dicomweb_endpoint, ref.accession_number) == (
        "1.2.3", "CT", "https://pacs/wado", "A-77")


def test_wado_rs_endpoint_preferred() -> None:
    study = imaging_study(endpoint=None)
    study["endpoint"] = [{"reference": "Endpoint/qido"}, {"reference": "Endpoint/wado"}]
    s = snap(study, endpoint("qido", "http://qido", "dicom-qido-rs"), endpoint("wado", "http://wado"))
    assert s.imaging_studies[0].dicomweb_endpoint == "http://wado"


def test_unresolved_endpoint_and_missing_uid_are_noted() -> None:
    s = snap(imaging_study("1.2.3", endpoint="Endpoint/elsewhere"), imaging_study(None))
    assert [st.study_instance_uid for st in s.imaging_studies] == ["1.2.3"]
    assert s.imaging_studies[0].dicomweb_endpoint is None
    assert sorted(n.code for n in s.notes) == [NoteCode.MISSING_VALUE, NoteCode.MISSING_VALUE]


def test_status_future_and_duplicates() -> None:
    s = snap(imaging_study("1", status="entered-in-error"), imaging_study("2", status="cancelled"),
             imaging_study("3", started="2025-02-01"), imaging_study("4", modality="MR"),
             imaging_study("4"), imaging_study("5", started=None), endpoint())
    assert [(st.study_instance_uid, st.modality) for st in s.imaging_studies] == [("5", "CT"), ("4", "MR")]
    assert s.last_ct_date is None
    assert sorted(n.code for n in s.notes) == [NoteCode.DUPLICATE, NoteCode.ENTERED_IN_ERROR]
