//! Triage: a model's raw outputs become findings — calibrated scores,
//! positives at the operating points, and heatmaps and regions on the
//! original image's pixels.
//!
//! In: the manifest's `[findings]`, one image's [`Inference`] and the
//! [`Geometry`] of its preprocessing. Out: one [`FindingResult`] per finding.
//! [`priority`] turns findings into an image's and a study's reading
//! priority with reasons.
//!
//! [`Inference`]: crate::engine::Inference
//! [`Geometry`]: crate::preprocess::Geometry

mod findings;
mod heatmap;
pub mod overlay;
pub mod priority;

pub use findings::{finding_result, FindingResult, OperatingPointResult};
pub use heatmap::{Heatmap, HeatmapSource, Peak, Region};
