"""DICOM side of the cohort loader without a PACS: header reading and batching. STOW-RS itself runs against the
stack's Orthanc in tests/loading/test_load.py and tests/deploy/test_stack.py."""

from __future__ import annotations

from pathlib import Path

from risk.loading.dicom_load import DicomFile, DicomLoader, read_headers
from risk.loading.report import FileFailure
from risk.sources.dicomweb import DicomwebSource
from tests.support.dicom_factory import make_ct_series, write


def test_headers_are_read_and_bad_files_reported(tmp_path: Path) -> None:
    ct = make_ct_series(n_slices=3, size=8)
    paths = write(tmp_path, ct)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    failures: list[FileFailure] = []
    files = read_headers([*paths, junk], failures)
    assert [f.sop_instance_uid for f in files] == [str(d.SOPInstanceUID) for d in ct]
    assert {f.series_instance_uid for f in files} == {str(ct[0].SeriesInstanceUID)}
    assert [f.path for f in failures] == [str(junk)]


def test_batches_respect_count_and_bytes() -> None:
    def f(i: int, size: int) -> DicomFile:
        return DicomFile(Path(f"{i}.dcm"), "1.2", "1.3", f"1.4.{i}", size)

    loader = DicomLoader(lambda: DicomwebSource("http://127.0.0.1:9/dicom-web"), batch_instances=3,
                         batch_bytes=1000)
    batches = loader._batches([f(i, 100) for i in range(7)])
    assert [len(b) for b in batches] == [3, 3, 1]
    batches = loader._batches([f(0, 600), f(1, 600), f(2, 100), f(3, 2000)])
    assert [[x.path.name for x in b] for b in batches] == [["0.dcm"], ["1.dcm", "2.dcm"], ["3.dcm"]]
