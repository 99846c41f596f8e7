//! DICOM ingest (being written).
