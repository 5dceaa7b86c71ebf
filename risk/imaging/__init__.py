"""Imaging: vendor DICOM SR (TID 1500) nodule findings, the imaging-feature cache, longitudinal tracking.

Modules: ``sr`` (parse a TID 1500 Measurement Report into NoduleObservations, tolerant of vendor quirks),
``geometry`` (SCOORD image coordinates → patient coordinates, key slices), ``cache`` (parsed SRs in the store,
keyed by SOP Instance UID), ``tracking`` (link observations across studies, status, growth), ``pipeline``
(``load_imaging``: the one call the snapshot assembly makes). The PACS itself is reached through
``risk.sources.dicomweb.DicomSource``.
"""
