//! # cxr-triage
//!
//! AI triage of chest radiographs: DICOM in, a prioritised reading worklist
//! with heatmaps out, so that films suggesting pulmonary tuberculosis or a
//! malignant lung nodule (or any finding a site's models declare) reach a
//! radiologist first.
//!
//! This crate is the `cxr-triage` binary's: the command line, the service
//! configuration (embedded defaults, a TOML file, `CXR_*` variables) and the
//! wiring of `serve`. The work is done by the workspace's crates, whose
//! dependencies point one way (each only on those above it here):
//!
//! | crate | room |
//! | --- | --- |
//! | `cxr-ingest` | DICOM parse, limits, decode (every transfer syntax), LUTs, the chest-film gate |
//! | `cxr-model` | manifests, preprocessing + geometry, the `Backend` trait, batching, occlusion, ONNX Runtime |
//! | `cxr-findings` | scores → findings (ids are data), calibration, operating points, heatmaps, priority |
//! | `cxr-worklist` | the `WorklistStore` trait, SQLite and PostgreSQL, the stored-result schema |
//! | `cxr-pipeline` | the one analysis path every way in shares |
//! | `cxr-pacs` | DICOM listener, spool, STOW-RS, SR/SC results, outbox |
//! | `cxr-api` | the gRPC contract and its handlers |
//! | `cxr-campaign` | `score`, `evaluate`, `report`, `bench` |
//! | `cxr-web` | the web worklist (the radiologists' screen) |
//! | `cxr-synth` | synthetic radiographs and the `cxr-synth` tool (tests, training; not deployed) |
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod serve;
pub mod syslog;

/// Makes every file and folder this process creates readable and writable
/// by its own user only (umask 077): patient data never lands
/// world-readable, whichever part of the service writes it.
pub fn restrict_new_files() {
    // SAFETY: umask only sets the process's file mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}
