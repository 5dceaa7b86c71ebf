"""Standard outputs built from an Assessment: FHIR resources (RiskAssessment, ServiceRequest) and DICOM objects."""
