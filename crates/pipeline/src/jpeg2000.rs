//! Which decoder reads JPEG 2000 / HTJ2K films: OpenJPEG on the CPU, or
//! NVIDIA nvImageCodec (nvJPEG2000) on the GPU, loaded at run time like
//! ONNX Runtime and installed into ingest ([`cxr_ingest::accel`]) once per
//! process. Most PACS archives store chest films as JPEG 2000, and on a GPU
//! server decoding them on the CPU is what limits the pipeline.
//!
//! Films decoded on the GPU are batched: one thread owns the decoder, takes
//! the first queued film and every other film already waiting (up to
//! `max_batch`), and decodes them in one call; no film waits for a batch to
//! fill. A film the GPU cannot decode is decoded on the CPU
//! ([`cxr_ingest::Decoder::Fallback`]); which decoder read each film is in
//! its result's timings.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use cxr_ingest::accel::{install_jpeg2000_decoder, CodestreamDecoder, DecodedCodestream};
use cxr_nvimgcodec::{Kind, NvImageCodec};

/// Which JPEG 2000 decoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jpeg2000Choice {
    /// The GPU when nvImageCodec and a CUDA device are there, else the CPU.
    #[default]
    Auto,
    /// OpenJPEG on the CPU only.
    Cpu,
    /// The GPU; start-up fails when it cannot be had.
    Gpu,
}

impl FromStr for Jpeg2000Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Jpeg2000Choice::Auto),
            "cpu" => Ok(Jpeg2000Choice::Cpu),
            "gpu" => Ok(Jpeg2000Choice::Gpu),
            other => Err(format!("`{other}`: expected auto, cpu or gpu")),
        }
    }
}

/// Whether JPEG 2000 / HTJ2K films are decoded at a reduced resolution
/// level when the models need far fewer pixels (`[decode]
/// jpeg2000_reduce`). This changes pixels: the README gives the measured
/// effect on scores and heatmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jpeg2000Reduce {
    /// Always full resolution.
    #[default]
    Off,
    /// The lowest level whose shorter side keeps at least twice the largest
    /// model input side (so the area resampler still averages at least
    /// 2 × 2 pixels per input pixel).
    Auto,
}

impl Jpeg2000Reduce {
    /// The smallest decoded side for models whose largest input side is
    /// `max_input_side` ([`cxr_ingest::IngestLimits::jpeg2000_reduce_to`]).
    pub fn reduce_to(self, max_input_side: u32) -> Option<u32> {
        match self {
            Jpeg2000Reduce::Off => None,
            Jpeg2000Reduce::Auto if max_input_side > 0 => Some(2 * max_input_side),
            Jpeg2000Reduce::Auto => None,
        }
    }
}

impl FromStr for Jpeg2000Reduce {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Jpeg2000Reduce::Off),
            "auto" => Ok(Jpeg2000Reduce::Auto),
            other => Err(format!("`{other}`: expected auto or off")),
        }
    }
}

/// `[decode]`: how compressed films are decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// JPEG 2000 / HTJ2K decoder.
    pub jpeg2000: Jpeg2000Choice,
    /// `libnvimgcodec.so.0` to load (default: env `CXR_NVIMGCODEC`, then
    /// the NVIDIA wheels beside ONNX Runtime or in `.venv`, then the
    /// system's loader path).
    pub library: Option<PathBuf>,
    /// Most films decoded on the GPU in one call.
    pub max_batch: usize,
    /// JPEG 2000 at a reduced resolution level on the CPU (`auto`), or
    /// always in full (`off`, the default).
    pub jpeg2000_reduce: Jpeg2000Reduce,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            jpeg2000: Jpeg2000Choice::Auto,
            library: None,
            max_batch: 16,
            jpeg2000_reduce: Jpeg2000Reduce::Off,
        }
    }
}

/// What [`install`] chose, for the start-up log and reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecoderChoice {
    /// The decoder in use, e.g. `nvimgcodec 0.9.0 (GPU)` or `openjpeg (CPU)`.
    pub name: String,
    /// Whether JPEG 2000 goes to the GPU.
    pub accelerated: bool,
    /// Why the GPU is not used, when it was not refused by configuration.
    pub reason: Option<String>,
}

/// Errors of [`install`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeSetupError {
    /// `jpeg2000 = "gpu"` and the GPU decoder could not be started.
    #[error("JPEG 2000 on the GPU was asked for and cannot start: {0}")]
    GpuUnavailable(String),
}

/// Name of the CPU decoder in reports.
pub const CPU_DECODER: &str = "openjpeg (CPU)";

/// Chooses and installs the JPEG 2000 decoder for this process.
pub fn install(config: &DecodeConfig) -> Result<DecoderChoice, DecodeSetupError> {
    if config.jpeg2000 == Jpeg2000Choice::Cpu {
        install_jpeg2000_decoder(None);
        return Ok(DecoderChoice {
            name: CPU_DECODER.into(),
            accelerated: false,
            reason: None,
        });
    }
    let search = cxr_model::site_packages_candidates();
    match NvImageCodec::load(config.library.as_deref(), &search, Kind::Gpu) {
        Ok(codec) => {
            let queued = QueuedDecoder::start(codec, config.max_batch.max(1));
            let name = queued.name.clone();
            install_jpeg2000_decoder(Some(Arc::new(queued)));
            tracing::info!(decoder = %name, "JPEG 2000 decoded on the GPU");
            Ok(DecoderChoice {
                name,
                accelerated: true,
                reason: None,
            })
        }
        Err(e) if config.jpeg2000 == Jpeg2000Choice::Gpu => {
            Err(DecodeSetupError::GpuUnavailable(e.to_string()))
        }
        Err(e) => {
            install_jpeg2000_decoder(None);
            tracing::info!(reason = %e, "JPEG 2000 decoded on the CPU (OpenJPEG)");
            Ok(DecoderChoice {
                name: CPU_DECODER.into(),
                accelerated: false,
                reason: Some(e.to_string()),
            })
        }
    }
}

/// One film waiting for the GPU.
struct Job {
    codestream: Vec<u8>,
    max_pixels: u64,
    reply: mpsc::SyncSender<Result<DecodedCodestream, String>>,
}

/// The GPU decoder behind a queue: callers on any thread, one decoding
/// thread that batches what is waiting.
pub struct QueuedDecoder {
    name: String,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl QueuedDecoder {
    /// Starts the decoding thread for `codec`.
    pub fn start(codec: NvImageCodec, max_batch: usize) -> Self {
        let name = format!("nvimgcodec {} (GPU)", codec.version());
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("jpeg2000-gpu".into())
            .spawn(move || decode_loop(&codec, &rx, max_batch));
        if let Err(e) = spawned {
            // Without the thread every job's reply channel closes: each film
            // then falls back to the CPU with that cause.
            tracing::error!(error = %e, "cannot start the GPU decoding thread");
        }
        QueuedDecoder {
            name,
            jobs: Mutex::new(tx),
        }
    }
}

fn decode_loop(codec: &NvImageCodec, rx: &mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let max_pixels = jobs.iter().map(|j| j.max_pixels).max().unwrap_or(0);
        let streams: Vec<&[u8]> = jobs.iter().map(|j| j.codestream.as_slice()).collect();
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec.decode_batch(&streams, max_pixels)
        }));
        metrics::histogram!("cxr_gpu_decode_batch_size").record(jobs.len() as f64);
        match results {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(
                        result
                            .map(|d| DecodedCodestream {
                                width: d.width,
                                height: d.height,
                                samples: d.samples,
                            })
                            .map_err(|e| e.to_string()),
                    );
                }
            }
            Err(_) => {
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err("the GPU decoder panicked on this batch".into()));
                }
            }
        }
    }
}

impl CodestreamDecoder for QueuedDecoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn decode(&self, codestream: &[u8], max_pixels: u64) -> Result<DecodedCodestream, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            codestream: codestream.to_vec(),
            max_pixels,
            reply,
        };
        self.jobs
            .lock()
            .map_err(|_| "the GPU decoding queue is poisoned".to_string())?
            .send(job)
            .map_err(|_| "the GPU decoding thread has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the GPU decoding thread has stopped".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_default_to_auto() {
        assert_eq!("gpu".parse::<Jpeg2000Choice>(), Ok(Jpeg2000Choice::Gpu));
        assert_eq!("cpu".parse::<Jpeg2000Choice>(), Ok(Jpeg2000Choice::Cpu));
        assert!("cuda".parse::<Jpeg2000Choice>().is_err());
        assert_eq!(DecodeConfig::default().jpeg2000, Jpeg2000Choice::Auto);
    }

    #[test]
    fn missing_library_falls_back_to_the_cpu_or_fails_when_the_gpu_is_required() {
        let missing = PathBuf::from("/nonexistent/libnvimgcodec.so.0");
        let auto = DecodeConfig {
            library: Some(missing.clone()),
            ..DecodeConfig::default()
        };
        let choice = install(&auto).expect("auto never fails");
        assert!(!choice.accelerated);
        assert_eq!(choice.name, CPU_DECODER);
        let reason = choice.reason.expect("a reason");
        assert!(reason.contains("nonexistent"), "{reason}");
        let gpu = DecodeConfig {
            jpeg2000: Jpeg2000Choice::Gpu,
            library: Some(missing),
            ..DecodeConfig::default()
        };
        assert!(matches!(
            install(&gpu),
            Err(DecodeSetupError::GpuUnavailable(_))
        ));
        assert!(cxr_ingest::accel::jpeg2000_decoder().is_none());
    }
}
