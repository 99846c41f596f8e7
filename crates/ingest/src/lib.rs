//! # cxr-ingest: the bottom of the pipeline
//!
//! DICOM ingest: bytes of a chest radiograph in, a [`Radiograph`] out. This
//! crate depends on no other of the workspace and knows nothing of models,
//! stores or transports (the fuzz target links it alone).
//!
//! **In:** a DICOM Part 10 object, from a file ([`read_file`]) or memory
//! ([`read_bytes`]), with or without the 128-byte preamble, in any transfer
//! syntax a CR or DX unit sends (native, deflated, RLE, JPEG baseline /
//! extended 12-bit / lossless, JPEG-LS, JPEG 2000, HTJ2K).
//!
//! **Out:** a [`Radiograph`]: frame 1's stored values ([`StoredFrame`]), a
//! presentation-ready grey image ([`GreyImage`], 0 black … 65535 white, VOI
//! and MONOCHROME1 inversion applied), the metadata triage needs
//! ([`RadiographMeta`], [`Patient`]), and the gate's [`Assessment`] of
//! whether it is an analyzable frontal chest film — or an [`IngestError`]
//! saying exactly what is wrong. Bad input never panics, and every buffer is
//! bounded by [`IngestLimits`] before it is allocated.
//!
//! ```no_run
//! use cxr_ingest::{read_file, IngestLimits};
//! let radiograph = read_file("chest.dcm".as_ref(), &IngestLimits::default())?;
//! if !radiograph.assessment.analyzable {
//!     println!("for a human: {}", radiograph.assessment.reason.unwrap());
//! }
//! # Ok::<(), cxr_ingest::IngestError>(())
//! ```

pub mod accel;
mod error;
mod gate;
pub mod jpeg12;
mod meta;
mod parse;
mod pixels;
mod rle;
mod voi;

use std::io::Read;
use std::path::Path;

use dicom_object::InMemDicomObject;

pub use accel::Decoder;
pub use error::{IngestError, IngestErrorKind};
pub use gate::{Assessment, NotAnalyzable};
pub use meta::{Patient, RadiographMeta};
pub use pixels::{PixelModule, StoredFrame};
pub use voi::{GreyImage, ModalityLut, Presentation, VoiSource};

/// Bounds on what ingest accepts, checked before anything is allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestLimits {
    /// Largest input (file or buffer), in bytes.
    pub max_input_bytes: u64,
    /// Largest data set a deflated object may inflate to, in bytes: a
    /// chest film within `max_pixels` at 16 bits, plus its header, fits;
    /// a deflate bomb stops here, having cost at most this much memory.
    pub max_inflated_bytes: u64,
    /// Largest accepted Rows or Columns.
    pub max_side: u32,
    /// Largest accepted Rows × Columns.
    pub max_pixels: u64,
    /// Smallest side of an analyzable chest film (smaller images are accepted
    /// but judged not analyzable).
    pub min_side: u32,
    /// Decode JPEG 2000 / HTJ2K films at their lowest resolution level whose
    /// shorter side still has at least this many pixels (each level halves
    /// both sides; `None`: always full resolution). The image is then
    /// smaller than Rows × Columns; [`StoredFrame::reduction`] says by how
    /// many levels. Set from `[decode] jpeg2000_reduce`.
    pub jpeg2000_reduce_to: Option<u32>,
}

impl Default for IngestLimits {
    /// 512 MiB input; 160 MiB inflated; 12,000 px per side and 64 Mpx (a
    /// 43 × 43 cm detector at 100 µm is 4,300 px); 256 px minimum side for
    /// analysis.
    fn default() -> Self {
        IngestLimits {
            max_input_bytes: 512 << 20,
            max_inflated_bytes: 160 << 20,
            max_side: 12_000,
            max_pixels: 64_000_000,
            min_side: 256,
            jpeg2000_reduce_to: None,
        }
    }
}

/// A decoded radiograph and everything the rest of the pipeline needs from its header.
#[derive(Debug, Clone)]
pub struct Radiograph {
    /// Identity and acquisition metadata.
    pub meta: RadiographMeta,
    /// Patient attributes (redacted in `Debug`; never log them).
    pub patient: Patient,
    /// The Image Pixel module as validated.
    pub pixel_module: PixelModule,
    /// Transfer Syntax UID the object arrived in.
    pub transfer_syntax: String,
    /// Frame 1's stored values, before any LUT.
    pub stored: StoredFrame,
    /// Frame 1 ready to look at (VOI and inversion applied).
    pub image: GreyImage,
    /// What the presentation pipeline did to get `image`.
    pub presentation: Presentation,
    /// Which frame `stored` and `image` are (always 1) and how many there were.
    pub frame: FrameChoice,
    /// Whether the AI may read it, and why not.
    pub assessment: Assessment,
}

/// Which frame of a multi-frame object was decoded.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct FrameChoice {
    /// 1-based number of the decoded frame.
    pub decoded: u32,
    /// Number of Frames in the object.
    pub of: u32,
}

/// Reads and decodes a DICOM file. The file's size is checked against
/// [`IngestLimits::max_input_bytes`] before it is read.
pub fn read_file(path: &Path, limits: &IngestLimits) -> Result<Radiograph, IngestError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limits.max_input_bytes {
        return Err(IngestError::InputTooLarge {
            size,
            max: limits.max_input_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limits.max_input_bytes + 1)
        .read_to_end(&mut bytes)?;
    read_bytes(&bytes, limits)
}

/// Reads only the identity and acquisition metadata of a DICOM object,
/// without decoding pixels: so that an image whose pixels cannot be decoded
/// can still be put on the worklist (for a human) under its own UIDs.
/// `None` when the object cannot be parsed or has no valid SOP Instance
/// UID ([`is_valid_uid`]).
pub fn read_identity(bytes: &[u8], limits: &IngestLimits) -> Option<RadiographMeta> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return None;
    }
    // Read up to the Pixel Data only: the identity of a large object costs
    // kilobytes, not a copy of its pixels.
    let (parsed, has_pixel_data) = parse::parse_identity(bytes, limits.max_inflated_bytes).ok()?;
    let mut meta = RadiographMeta::from_object(&parsed.object);
    meta.has_pixel_data = has_pixel_data;
    is_valid_uid(&meta.sop_instance_uid).then_some(meta)
}

/// The patient attributes of a DICOM object held in memory, read up to its
/// Pixel Data with the same bounds as [`read_identity`]; `None` when the
/// bytes do not parse. For results that go back to the hospital's systems
/// (HL7, FHIR) when the pixels themselves could not be read.
pub fn read_patient(bytes: &[u8], limits: &IngestLimits) -> Option<Patient> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return None;
    }
    let (parsed, _) = parse::parse_identity(bytes, limits.max_inflated_bytes).ok()?;
    Some(Patient::from_object(&parsed.object))
}

/// Whether `uid` is a DICOM UID (PS3.5 §9.1): 1–64 characters, digits in
/// dot-separated components, none empty. Objects are filed by their SOP
/// Instance UID, so one that is not a UID (60 kB, `../`, control
/// characters) is refused rather than stored and handed on.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a DICOM object held in memory up to its Pixel Data (which is
/// left out), with the same bounds as [`read_bytes`]: for callers that need
/// its attributes (e.g. to copy its patient and study modules into a
/// derived object) without a copy of its pixels.
pub fn read_object(bytes: &[u8], limits: &IngestLimits) -> Result<InMemDicomObject, IngestError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(IngestError::InputTooLarge {
            size: bytes.len() as u64,
            max: limits.max_input_bytes,
        });
    }
    Ok(parse::parse_identity(bytes, limits.max_inflated_bytes)?
        .0
        .object
        .into_inner())
}

/// Objects larger than this have their image size checked from a header
/// read before the whole object is parsed (a chest film is 5–30 MB).
const EARLY_SIZE_CHECK_BYTES: u64 = 32 << 20;

/// Reads and decodes a DICOM object held in memory.
pub fn read_bytes(bytes: &[u8], limits: &IngestLimits) -> Result<Radiograph, IngestError> {
    read_bytes_identified(bytes, limits).map_err(|(e, _)| e)
}

/// [`read_bytes`], and when it fails after the header parsed, the
/// object's identity beside the error: parsed (and, for a deflated object,
/// inflated) once, so that an undecodable image can still be filed for a
/// human without paying for a second parse.
#[allow(clippy::result_large_err)]
pub fn read_bytes_identified(
    bytes: &[u8],
    limits: &IngestLimits,
) -> Result<Radiograph, (IngestError, Option<RadiographMeta>)> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err((
            IngestError::InputTooLarge {
                size: bytes.len() as u64,
                max: limits.max_input_bytes,
            },
            None,
        ));
    }
    if bytes.len() as u64 > EARLY_SIZE_CHECK_BYTES {
        // A large object's header is read on its own first, so that one
        // whose image is over the limits is refused without a copy of its
        // pixels.
        let (header, has_pixels) =
            parse::parse_identity(bytes, limits.max_inflated_bytes).map_err(|e| (e, None))?;
        let identified = |e: IngestError| {
            let meta = RadiographMeta::from_object(&header.object);
            (e, is_valid_uid(&meta.sop_instance_uid).then_some(meta))
        };
        if !has_pixels {
            return Err(identified(IngestError::MissingPixelData));
        }
        pixels::check_size(&header.object, limits).map_err(identified)?;
    }
    // Native pixels are read straight from `bytes`: the header is parsed
    // without them and the values converted in one pass (parsing them into
    // the object and copying them out cost most of the decode time).
    let native = parse::parse_native(bytes).map_err(|e| (e, None))?;
    let (parsed, native_pixels) = match native {
        Some((parsed, value)) => (parsed, Some(value)),
        None => (
            parse::parse(bytes, limits.max_inflated_bytes).map_err(|e| (e, None))?,
            None,
        ),
    };
    let object = &parsed.object;
    let mut meta = RadiographMeta::from_object(object);
    meta.has_pixel_data |= native_pixels.is_some();
    let identified = |e: IngestError| {
        let meta = is_valid_uid(&meta.sop_instance_uid).then(|| meta.clone());
        (e, meta)
    };
    let (pixel_module, stored) = match native_pixels {
        Some(value) => {
            let module = pixels::pixel_module_of_header(object, limits).map_err(identified)?;
            let stored = pixels::native_frame_from_bytes(value, &module).map_err(identified)?;
            (module, stored)
        }
        None => {
            let module = pixels::pixel_module(object, limits).map_err(identified)?;
            let stored = pixels::decode_first_frame(
                object,
                &module,
                &parsed.transfer_syntax,
                limits.jpeg2000_reduce_to,
            )
            .map_err(identified)?;
            (module, stored)
        }
    };
    let (image, presentation) = voi::present(object, &pixel_module, &stored);
    let assessment = gate::assess(&meta, &pixel_module, limits);
    Ok(Radiograph {
        patient: Patient::from_object(object),
        frame: FrameChoice {
            decoded: 1,
            of: pixel_module.frames,
        },
        meta,
        pixel_module,
        transfer_syntax: parsed.transfer_syntax,
        stored,
        image,
        presentation,
        assessment,
    })
}
