//! A decoder that takes JPEG 2000 / HTJ2K codestreams before OpenJPEG: a GPU
//! decoder (nvImageCodec with nvJPEG2000) installed at start-up by whoever
//! found one. This crate only knows the seam: a [`CodestreamDecoder`] to
//! install, and which decoder each frame came from ([`Decoder`]).
//!
//! OpenJPEG stays the fallback: when the installed decoder fails on a
//! stream (unsupported feature, device error, a size that disagrees with the
//! header), the frame is decoded on the CPU and [`Decoder::Fallback`] says so.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Samples of one decoded codestream, exactly as coded (no scaling).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedCodestream {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// One component's samples, row by row; two's complement bit patterns
    /// when the codestream is signed.
    pub samples: Vec<u16>,
}

/// A decoder of JPEG 2000 / HTJ2K codestreams that is tried before OpenJPEG.
pub trait CodestreamDecoder: Send + Sync {
    /// Its name in reports, e.g. `nvimgcodec 0.9.0 (GPU)`.
    fn name(&self) -> &str;
    /// Decodes one greyscale codestream of at most `max_pixels` pixels.
    /// Errors are words for a log; the caller falls back to the CPU.
    fn decode(&self, codestream: &[u8], max_pixels: u64) -> Result<DecodedCodestream, String>;
}

/// Which decoder produced a frame's stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// Native (uncompressed or deflated) pixel data: no decoder.
    Native,
    /// This crate's RLE decoder.
    Rle,
    /// This crate's 12-bit DCT JPEG decoder.
    Jpeg12,
    /// The CPU codec libraries (OpenJPEG, CharLS, jpeg-decoder).
    Cpu,
    /// OpenJPEG at a reduced JPEG 2000 resolution level
    /// ([`crate::IngestLimits::jpeg2000_reduce_to`]): the image is smaller
    /// than the film.
    CpuReduced,
    /// The installed [`CodestreamDecoder`] (e.g. the GPU).
    Accelerated,
    /// The installed decoder failed on this stream; the CPU decoded it.
    Fallback,
}

impl Decoder {
    /// Its name in results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decoder::Native => "native",
            Decoder::Rle => "rle",
            Decoder::Jpeg12 => "jpeg12",
            Decoder::Cpu => "cpu",
            Decoder::CpuReduced => "cpu_reduced",
            Decoder::Accelerated => "accelerated",
            Decoder::Fallback => "fallback",
        }
    }
}

impl std::fmt::Display for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

static INSTALLED: RwLock<Option<Arc<dyn CodestreamDecoder>>> = RwLock::new(None);

/// Installs `decoder` for JPEG 2000 / HTJ2K frames in this process
/// (`None`: OpenJPEG only). Returns the one it replaces.
pub fn install_jpeg2000_decoder(
    decoder: Option<Arc<dyn CodestreamDecoder>>,
) -> Option<Arc<dyn CodestreamDecoder>> {
    match INSTALLED.write() {
        Ok(mut slot) => std::mem::replace(&mut *slot, decoder),
        Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), decoder),
    }
}

/// The installed JPEG 2000 decoder, if any.
pub fn jpeg2000_decoder() -> Option<Arc<dyn CodestreamDecoder>> {
    match INSTALLED.read() {
        Ok(slot) => slot.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}
