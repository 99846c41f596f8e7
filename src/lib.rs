//! # cxr-triage
//!
//! AI triage of chest radiographs. DICOM comes in (from PACS auto-forwarding,
//! gRPC clients or campaign folders), the pixels are decoded and normalised,
//! ONNX models score tuberculosis and malignant-nodule findings, and a
//! prioritised reading worklist with heatmaps comes out.
//!
//! This crate is the library behind the `cxr-triage` binary. One module per
//! pipeline stage:
//!
//! - [`api`]: the gRPC service (tonic), health, reflection, metrics.
//! - [`cli`]: the `cxr-triage` subcommands.
//! - [`config`]: the service configuration (defaults, TOML file, environment).
//! - [`dicom`]: parse, validate and decode a DICOM object into a
//!   [`dicom::Radiograph`], or say with a typed reason why it cannot be read.
//! - [`engine`]: model manifests, ONNX Runtime sessions (CUDA/TensorRT with
//!   CPU fallback), dynamic batching, warm-up.
//! - [`pacs`]: DICOM networking: the C-ECHO/C-STORE listener with its
//!   durable spool, and AI results (Secondary Capture, SR) sent back to PACS
//!   through a durable outbox.
//! - [`preprocess`]: model-input tensors and the geometry that maps model
//!   coordinates back to image pixels.
//! - [`service`]: the pipeline every way in shares (ingest → engine →
//!   triage → worklist).
//! - [`synth`]: synthetic chest radiographs with known findings, for model
//!   training, tests and load tests. Not clinical data.
//! - [`triage`]: scores → findings (calibration, operating points) and
//!   heatmaps and regions on the original image, priorities, overlays.
//! - [`worklist`]: the persistent, ordered reading worklist (SQLite).
#![warn(missing_docs)]

pub mod api;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod dicom;
pub mod engine;
pub mod pacs;
pub mod preprocess;
pub mod service;
pub mod synth;
pub mod triage;
pub mod worklist;
