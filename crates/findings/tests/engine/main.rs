//! Integration tests of this crate, in one binary (one link instead of one
//! per file).

mod engine_gpu;
mod engine_reference;
mod engine_spot;

use cxr_findings::{assess, Analysis};
use cxr_ingest::GreyImage;
use cxr_model::{Engine, EngineError};

/// Preprocess, infer and assess one image: the model-and-findings part of
/// the analysis path, on the engine alone.
pub trait AnalyzeExt {
    /// The findings of one image.
    fn analyze_blocking(&self, image: &GreyImage) -> Result<Analysis, EngineError>;
}

impl AnalyzeExt for Engine {
    fn analyze_blocking(&self, image: &GreyImage) -> Result<Analysis, EngineError> {
        Ok(assess(self, &self.infer_blocking(self.prepare(image))?))
    }
}
