//! `cxr-triage bench`: the command line of [`BenchOptions`].

use clap::Args;
use std::path::PathBuf;

use cxr_campaign::bench::BenchOptions;
use cxr_model::{ConvSearch, ProviderChoice};
use cxr_pipeline::jpeg2000::Jpeg2000Choice;

/// Options of `cxr-triage bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models directory.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// The model to time (its `model.id`; default: the first in the directory).
    #[arg(long)]
    pub model: Option<String>,
    /// Batch sizes for inference alone.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch: Vec<usize>,
    /// Concurrent workers for the whole pipeline.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// The DICOM films to time (top level of this folder; e.g. made by
    /// `cxr-synth --size 2048x2048 --bits 12`).
    #[arg(long)]
    pub images: PathBuf,
    /// Pipeline images per concurrency level.
    #[arg(long, default_value_t = 128)]
    pub requests: usize,
    /// Execution provider.
    #[arg(long, default_value = "auto")]
    pub provider: ProviderChoice,
    /// Largest batch the engine forms in the pipeline runs.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// ONNX Runtime intra-op threads (0: its default, all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Use the model's fp16 variant (`model.fp16_file`) on CUDA/TensorRT.
    #[arg(long)]
    pub fp16: bool,
    /// On CUDA/TensorRT, pass inputs through pinned buffers with an I/O
    /// binding; inference alone is then timed both ways side by side.
    #[arg(long)]
    pub io_binding: bool,
    /// cuDNN convolution algorithm search on CUDA.
    #[arg(long, default_value = "heuristic")]
    pub conv_search: ConvSearch,
    /// JPEG 2000 decoder: auto (the GPU when nvImageCodec and a device
    /// are there), cpu, or gpu (fail without one). With the GPU, JPEG 2000
    /// films are decoded both ways and compared.
    #[arg(long, default_value = "auto")]
    pub jpeg2000: Jpeg2000Choice,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchArgs {
    /// The library's options.
    pub fn options(self) -> BenchOptions {
        BenchOptions {
            models: self.models,
            model: self.model,
            batch: self.batch,
            concurrency: self.concurrency,
            images: self.images,
            requests: self.requests,
            provider: self.provider,
            max_batch: self.max_batch,
            threads: self.threads,
            fp16: self.fp16,
            io_binding: self.io_binding,
            conv_search: self.conv_search,
            jpeg2000: self.jpeg2000,
            json: self.json,
        }
    }
}
