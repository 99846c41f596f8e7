//! # cxr-findings: the triage room
//!
//! A model's raw outputs become findings — calibrated scores,
//! positives at the operating points, and heatmaps and regions on the
//! original image's pixels.
//!
//! In: the manifest's `[findings]`, one image's [`Inference`] and the
//! [`Geometry`] of its preprocessing. Out: one [`FindingResult`] per finding.
//! [`priority`] turns findings into an image's and a study's reading
//! priority with reasons.
//!
//! [`Inference`]: cxr_model::Inference
//! [`Geometry`]: cxr_model::preprocess::Geometry

mod findings;
mod heatmap;
pub mod overlay;
pub mod priority;
mod reason;

pub use cxr_model::FindingId;
pub use findings::{assess, finding_result, Analysis, FindingResult, OperatingPointResult};
pub use heatmap::{Heatmap, HeatmapSource, Peak, Region};
pub use priority::{Priority, PriorityPolicy};
pub use reason::NotAnalyzed;
