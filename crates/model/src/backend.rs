//! The seam between batching and a runtime: a [`Backend`] runs one batch of
//! preprocessed images and says whether it is healthy. The batcher, the
//! occlusion maps and the engine only see this trait, so batching,
//! overload, abandoned callers and shutdown are tested with an in-memory
//! backend in milliseconds, and ONNX Runtime ([`crate::ModelSession`]) is
//! one implementation among possible others.

use crate::preprocess::InputSpec;
use crate::session::ImageOutput;
use crate::EngineError;

/// Something that turns a batch of model inputs into model outputs.
///
/// Implementations are owned by one batching thread (`Send`, not `Sync`)
/// and may keep mutable state (buffers, a runtime session).
pub trait Backend: Send + 'static {
    /// The model's id, for logs and metrics.
    fn model_id(&self) -> &str;

    /// The input tensor this backend takes (size, layout, channels).
    fn input_spec(&self) -> InputSpec;

    /// The largest batch it accepts, when the graph fixes one.
    fn max_batch(&self) -> Option<usize> {
        None
    }

    /// Runs one batch: each input is [`InputSpec::image_len`] floats; the
    /// answer has one [`ImageOutput`] per input, in order, activations
    /// applied.
    fn predict(&mut self, batch: &[&[f32]]) -> Result<Vec<ImageOutput>, EngineError>;

    /// Whether it can still serve (checked by health probes; a backend that
    /// panicked is marked unhealthy by the batcher whatever this says).
    fn health(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl Backend for crate::ModelSession {
    fn model_id(&self) -> &str {
        &self.manifest.model.id
    }

    fn input_spec(&self) -> InputSpec {
        self.manifest.input_spec()
    }

    fn max_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    fn predict(&mut self, batch: &[&[f32]]) -> Result<Vec<ImageOutput>, EngineError> {
        self.run(batch)
    }
}
