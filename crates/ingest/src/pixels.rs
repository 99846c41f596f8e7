//! Image Pixel module → frame 1's stored values, for every transfer syntax.
//!
//! The output is [`StoredFrame`]: the values exactly as stored (before any
//! LUT), masked to Bits Stored and sign-extended when Pixel Representation
//! says signed. Everything that sizes a buffer is checked against
//! [`IngestLimits`] first, including the dimensions written inside a
//! compressed codestream, which a decoder would otherwise trust.

use dicom_core::value::Value;
use dicom_core::PrimitiveValue;
use dicom_dictionary_std::{tags, uids};
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::accel::{self, Decoder};
use super::meta::{numbers, text};
use super::{jpeg12, rle, IngestError, IngestLimits};

/// The Image Pixel module attributes, validated.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PixelModule {
    /// Rows (0028,0010).
    pub rows: u32,
    /// Columns (0028,0011).
    pub columns: u32,
    /// Samples per Pixel (0028,0002); always 1 once validated.
    pub samples_per_pixel: u16,
    /// Photometric Interpretation (0028,0004): `MONOCHROME1` or `MONOCHROME2`.
    pub photometric: String,
    /// Bits Allocated (0028,0100): 8 or 16.
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101).
    pub bits_stored: u16,
    /// High Bit (0028,0102).
    pub high_bit: u16,
    /// Pixel Representation (0028,0103) is 1: two's complement.
    pub signed: bool,
    /// Number of Frames (0028,0008); 1 when absent. Only frame 1 is decoded.
    pub frames: u32,
}

impl PixelModule {
    /// `MONOCHROME1`: the minimum stored value is white.
    pub fn is_inverted(&self) -> bool {
        self.photometric == "MONOCHROME1"
    }
}

/// Frame 1 as stored: `values[row * columns + column]`, each value widened to
/// 16 bits (`i16` bit patterns when [`StoredFrame::signed`]).
#[derive(Clone, PartialEq)]
pub struct StoredFrame {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Values are two's complement.
    pub signed: bool,
    /// Bits Stored: the values lie in its range.
    pub bits_stored: u16,
    /// Row-major stored values.
    pub values: Vec<u16>,
    /// Which decoder produced them.
    pub decoder: Decoder,
    /// JPEG 2000 resolution levels left out (0: full resolution): the
    /// frame is Rows × Columns divided by `2^reduction`, rounded up.
    pub reduction: u8,
}

impl std::fmt::Debug for StoredFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoredFrame {{ {}x{}, {} {} bits, {} }}",
            self.columns,
            self.rows,
            if self.signed { "signed" } else { "unsigned" },
            self.bits_stored,
            self.decoder
        )
    }
}

impl StoredFrame {
    /// The stored value at a row-major index, as a signed integer.
    pub fn value(&self, index: usize) -> i32 {
        self.value_of(self.values[index])
    }

    /// A raw 16-bit sample of this frame as a signed integer.
    pub fn value_of(&self, raw: u16) -> i32 {
        if self.signed {
            i32::from(raw as i16)
        } else {
            i32::from(raw)
        }
    }

    /// SHA-256 of the values as 16-bit little-endian, row-major, lower-case hex.
    /// Two files whose stored pixels agree have the same hash, whatever their
    /// transfer syntax.
    pub fn sha256_hex(&self) -> String {
        let mut hasher = Sha256::new();
        for chunk in self.values.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            hasher.update(&bytes);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Rows and Columns, checked against the limits: what [`pixel_module`]
/// checks first, also usable on a header read without its Pixel Data.
pub(crate) fn check_size(
    obj: &DefaultDicomObject,
    limits: &IngestLimits,
) -> Result<(u32, u32), IngestError> {
    let rows = required_u32(obj, tags::ROWS, "Rows", "(0028,0010)")?;
    let columns = required_u32(obj, tags::COLUMNS, "Columns", "(0028,0011)")?;
    if rows == 0 || columns == 0 {
        return Err(IngestError::InvalidAttribute {
            name: "Rows/Columns",
            value: format!("{rows} x {columns}"),
            why: "an image needs at least one row and one column",
        });
    }
    let pixels = u64::from(rows) * u64::from(columns);
    if rows > limits.max_side || columns > limits.max_side || pixels > limits.max_pixels {
        return Err(IngestError::ImageTooLarge {
            rows,
            columns,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    Ok((rows, columns))
}

/// Reads and validates the Image Pixel module; fails before any pixel buffer
/// is allocated if the image is not greyscale or over the limits.
pub(crate) fn pixel_module(
    obj: &DefaultDicomObject,
    limits: &IngestLimits,
) -> Result<PixelModule, IngestError> {
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(IngestError::MissingPixelData);
    }
    pixel_module_of_header(obj, limits)
}

/// [`pixel_module`] of a header parsed without its Pixel Data (whose
/// presence the caller has established).
pub(crate) fn pixel_module_of_header(
    obj: &DefaultDicomObject,
    limits: &IngestLimits,
) -> Result<PixelModule, IngestError> {
    let (rows, columns) = check_size(obj, limits)?;
    let samples_per_pixel = optional_u32(obj, tags::SAMPLES_PER_PIXEL)?.unwrap_or(1);
    let photometric =
        text(obj, tags::PHOTOMETRIC_INTERPRETATION).ok_or(IngestError::MissingAttribute {
            name: "PhotometricInterpretation",
            tag: "(0028,0004)",
        })?;
    check_greyscale(&photometric, samples_per_pixel)?;
    let bits_allocated = required_u32(obj, tags::BITS_ALLOCATED, "BitsAllocated", "(0028,0100)")?;
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(IngestError::InvalidAttribute {
            name: "BitsAllocated",
            value: bits_allocated.to_string(),
            why: "a greyscale radiograph allocates 8 or 16 bits",
        });
    }
    let bits_stored = optional_u32(obj, tags::BITS_STORED)?.unwrap_or(bits_allocated);
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(IngestError::InvalidAttribute {
            name: "BitsStored",
            value: bits_stored.to_string(),
            why: "must be between 1 and Bits Allocated",
        });
    }
    let high_bit = optional_u32(obj, tags::HIGH_BIT)?.unwrap_or(bits_stored - 1);
    if high_bit >= bits_allocated || high_bit + 1 < bits_stored {
        return Err(IngestError::InvalidAttribute {
            name: "HighBit",
            value: high_bit.to_string(),
            why: "must lie within Bits Allocated and leave room for Bits Stored",
        });
    }
    let signed = optional_u32(obj, tags::PIXEL_REPRESENTATION)?.unwrap_or(0) == 1;
    let frames = match text(obj, tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(s) => s.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            IngestError::InvalidAttribute {
                name: "NumberOfFrames",
                value: s.clone(),
                why: "must be a positive integer",
            }
        })?,
    };
    Ok(PixelModule {
        rows,
        columns,
        samples_per_pixel: samples_per_pixel as u16,
        photometric,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        high_bit: high_bit as u16,
        signed,
        frames,
    })
}

fn check_greyscale(photometric: &str, samples_per_pixel: u32) -> Result<(), IngestError> {
    let hint = match photometric {
        "MONOCHROME1" | "MONOCHROME2" if samples_per_pixel == 1 => return Ok(()),
        "MONOCHROME1" | "MONOCHROME2" => "greyscale with more than one sample per pixel is not valid DICOM",
        "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" | "YBR_PARTIAL_420" => {
            "a colour image: probably a photograph or scan of a film, or a screenshot, not a radiograph from a detector"
        }
        "PALETTE COLOR" => "a palette-colour image (a rendered picture or map), not a radiograph",
        _ => "not a photometric interpretation a radiograph uses",
    };
    Err(IngestError::UnsupportedPhotometric {
        photometric: photometric.to_string(),
        samples_per_pixel: samples_per_pixel.min(u32::from(u16::MAX)) as u16,
        hint,
    })
}

fn optional_u32(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
) -> Result<Option<u32>, IngestError> {
    match numbers(obj, tag) {
        None => Ok(None),
        Some(v) => {
            let x = v[0];
            if x.is_finite() && x >= 0.0 && x <= f64::from(u16::MAX) && x.fract() == 0.0 {
                Ok(Some(x as u32))
            } else {
                Err(IngestError::InvalidAttribute {
                    name: "image pixel attribute",
                    value: format!("{tag} = {x}"),
                    why: "must be a small non-negative integer",
                })
            }
        }
    }
}

fn required_u32(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    name: &'static str,
    tag_text: &'static str,
) -> Result<u32, IngestError> {
    optional_u32(obj, tag)?.ok_or(IngestError::MissingAttribute {
        name,
        tag: tag_text,
    })
}

/// Decodes frame 1 into stored values; JPEG 2000 at a reduced resolution
/// when `reduce_to` allows ([`crate::IngestLimits::jpeg2000_reduce_to`]).
pub(crate) fn decode_first_frame(
    obj: &DefaultDicomObject,
    module: &PixelModule,
    transfer_syntax: &str,
    reduce_to: Option<u32>,
) -> Result<StoredFrame, IngestError> {
    let element = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(IngestError::MissingPixelData)?;
    let (raw, decoder, reduced) = match element.value() {
        Value::Primitive(p) => (native_frame(p, module)?, Decoder::Native, None),
        Value::PixelSequence(seq) => {
            let frame1 = Fragments {
                fragments: seq.fragments(),
                offset_table: seq.offset_table(),
            };
            encapsulated_frame(obj, &frame1, module, transfer_syntax, reduce_to)?
        }
        Value::Sequence(_) => {
            return Err(IngestError::Malformed {
                detail: "Pixel Data (7FE0,0010) holds a sequence of items, not pixels".into(),
            })
        }
    };
    let (columns, rows, reduction) = reduced.unwrap_or((module.columns, module.rows, 0));
    Ok(StoredFrame {
        rows,
        columns,
        signed: module.signed,
        bits_stored: module.bits_stored,
        values: normalise(raw, module),
        decoder,
        reduction,
    })
}

/// JPEG 2000 at the lowest resolution level whose shorter side keeps at
/// least `min_side` pixels: (values, columns, rows, levels left out).
/// `None` when no reduced level qualifies, or OpenJPEG cannot give one
/// (fewer decomposition levels than asked, an image offset, more than one
/// component): the caller decodes in full.
fn jpeg2000_reduced(
    stream: &[u8],
    module: &PixelModule,
    min_side: u32,
) -> Option<(Vec<u16>, u32, u32, u8)> {
    let short = module.rows.min(module.columns);
    let mut r = 0u32;
    while r < 5 && short.div_ceil(1 << (r + 1)) >= min_side {
        r += 1;
    }
    if r == 0 {
        return None;
    }
    let params = jpeg2k::DecodeParameters::new().reduce(r);
    let image = std::panic::catch_unwind(|| jpeg2k::Image::from_bytes_with(stream, params))
        .ok()?
        .ok()?;
    let components = image.components();
    let c = components.first()?;
    let (w, h) = (
        module.columns.div_ceil(1 << r),
        module.rows.div_ceil(1 << r),
    );
    if components.len() != 1 || c.width() != w || c.height() != h {
        return None;
    }
    // Two's complement bit patterns, as the full-resolution path gives.
    let values = c.data().iter().map(|&v| v as u16).collect();
    Some((values, w, h, r as u8))
}

/// The first frame of native (uncompressed, little-endian) Pixel Data
/// given as the value's bytes, borrowed from the input: one pass from the
/// bytes to the stored values, with the same length checks as the parsed
/// path.
pub(crate) fn native_frame_from_bytes(
    value: &[u8],
    module: &PixelModule,
) -> Result<StoredFrame, IngestError> {
    let frame_samples = module.rows as usize * module.columns as usize;
    let bytes_per_sample = usize::from(module.bits_allocated / 8);
    check_native_length(value.len() as u64, module)?;
    // Exact-size iterators collect without zero-filling first, in one
    // pass that vectorises.
    let bytes = &value[..frame_samples * bytes_per_sample];
    let values = if module.bits_allocated == 8 {
        normalise(bytes.iter().map(|&b| u16::from(b)).collect(), module)
    } else if module.high_bit + 1 == module.bits_stored && !module.signed {
        // The common case (unsigned, low bits): conversion and masking at once.
        let mask = if module.bits_stored >= 16 {
            u16::MAX
        } else {
            (1u16 << module.bits_stored) - 1
        };
        let (pairs, _) = bytes.as_chunks::<2>();
        pairs
            .iter()
            .map(|&pair| u16::from_le_bytes(pair) & mask)
            .collect()
    } else {
        let (pairs, _) = bytes.as_chunks::<2>();
        normalise(
            pairs.iter().map(|&pair| u16::from_le_bytes(pair)).collect(),
            module,
        )
    };
    Ok(StoredFrame {
        rows: module.rows,
        columns: module.columns,
        signed: module.signed,
        bits_stored: module.bits_stored,
        values,
        decoder: Decoder::Native,
        reduction: 0,
    })
}

/// Checks native Pixel Data of `actual` bytes against the module: all its
/// frames, or one byte more (odd lengths are padded to even).
fn check_native_length(actual: u64, module: &PixelModule) -> Result<(), IngestError> {
    let frame_samples = u64::from(module.rows) * u64::from(module.columns);
    let expected = frame_samples * u64::from(module.bits_allocated / 8) * u64::from(module.frames);
    if actual == expected || actual == expected + 1 {
        Ok(())
    } else {
        Err(IngestError::PixelDataLength {
            expected,
            actual,
            rows: module.rows,
            columns: module.columns,
            bits_allocated: module.bits_allocated,
            frames: module.frames,
        })
    }
}

/// The frame's values as allocated (not yet masked to Bits Stored).
fn native_frame(value: &PrimitiveValue, module: &PixelModule) -> Result<Vec<u16>, IngestError> {
    let frame_samples = module.rows as usize * module.columns as usize;
    let bytes_per_sample = usize::from(module.bits_allocated / 8);
    match value {
        // OW read by dicom-object is already in native order, whatever the
        // transfer syntax's byte order.
        PrimitiveValue::U16(words) if module.bits_allocated == 16 => {
            let actual = words.len() as u64 * 2;
            check_native_length(actual, module)?;
            Ok(words[..frame_samples].to_vec())
        }
        PrimitiveValue::U16(words) => {
            let actual = words.len() as u64 * 2;
            check_native_length(actual, module)?;
            Ok(words
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(frame_samples)
                .map(u16::from)
                .collect())
        }
        PrimitiveValue::U8(bytes) => {
            let actual = bytes.len() as u64;
            check_native_length(actual, module)?;
            Ok(from_le_bytes(
                &bytes[..frame_samples * bytes_per_sample],
                module.bits_allocated,
            ))
        }
        other => Err(IngestError::Malformed {
            detail: format!(
                "Pixel Data holds {} values of the wrong kind, expected OB or OW bytes",
                other.multiplicity()
            ),
        }),
    }
}

fn from_le_bytes(bytes: &[u8], bits_allocated: u16) -> Vec<u16> {
    if bits_allocated == 8 {
        bytes.iter().map(|b| u16::from(*b)).collect()
    } else {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
}

/// A [`IngestError::CorruptPixelData`] for a stream in `transfer_syntax`.
fn corrupt_in(transfer_syntax: &str, detail: String) -> IngestError {
    IngestError::CorruptPixelData {
        transfer_syntax: transfer_syntax.to_string(),
        detail,
    }
}

/// The fragments of encapsulated pixel data and their Basic Offset Table.
struct Fragments<'a> {
    fragments: &'a [Vec<u8>],
    offset_table: &'a [u32],
}

/// A frame's values as allocated, their decoder, and — when decoded at a
/// reduced JPEG 2000 resolution — (columns, rows, levels left out).
type Reduced = (Vec<u16>, Decoder, Option<(u32, u32, u8)>);

fn encapsulated_frame(
    obj: &DefaultDicomObject,
    encapsulated: &Fragments<'_>,
    module: &PixelModule,
    transfer_syntax: &str,
    reduce_to: Option<u32>,
) -> Result<Reduced, IngestError> {
    let corrupt = |detail: String| corrupt_in(transfer_syntax, detail);
    let stream = frame_fragments(
        encapsulated.fragments,
        encapsulated.offset_table,
        module.frames,
    )
    .filter(|bytes| !bytes.is_empty())
    .ok_or_else(|| corrupt("cannot locate frame 1 among the fragments".into()))?;
    check_codestream_size(&stream, module, transfer_syntax).map_err(corrupt)?;

    let is_dct =
        transfer_syntax == uids::JPEG_BASELINE8_BIT || transfer_syntax == uids::JPEG_EXTENDED12_BIT;
    if is_dct && jpeg12::read_frame_header(&stream).is_ok_and(|h| h.precision == 12) {
        return decode_jpeg12(&stream, module, transfer_syntax).map(|v| (v, Decoder::Jpeg12, None));
    }
    if transfer_syntax == uids::RLE_LOSSLESS {
        let pixels = module.rows as usize * module.columns as usize;
        return rle::decode_frame(&stream, pixels, module.bits_allocated)
            .map(|v| (v, Decoder::Rle, None))
            .map_err(|e| corrupt(e.to_string()));
    }
    let mut decoder = Decoder::Cpu;
    let accelerated = accel::jpeg2000_decoder();
    if let (Family::Jpeg2000, None, Some(min_side)) =
        (codestream_family(transfer_syntax), &accelerated, reduce_to)
    {
        if let Some((values, w, h, r)) = jpeg2000_reduced(&stream, module, min_side) {
            return Ok((values, Decoder::CpuReduced, Some((w, h, r))));
        }
    }
    if codestream_family(transfer_syntax) == Family::Jpeg2000 {
        if let Some(accelerated) = accelerated {
            let pixels = u64::from(module.rows) * u64::from(module.columns);
            match accelerated.decode(&stream, pixels) {
                Ok(frame) if frame.width == module.columns && frame.height == module.rows => {
                    return Ok((frame.samples, Decoder::Accelerated, None));
                }
                Ok(frame) => tracing::warn!(
                    decoder = accelerated.name(),
                    "decoded {}x{}, the header says {}x{}; decoding on the CPU",
                    frame.width,
                    frame.height,
                    module.columns,
                    module.rows
                ),
                Err(e) => tracing::warn!(
                    decoder = accelerated.name(),
                    error = %e,
                    "JPEG 2000 decoder failed; decoding on the CPU"
                ),
            }
            decoder = Decoder::Fallback;
        }
    }
    // Third-party decoders must return errors, but one that panics on a
    // hostile stream must not take the service down with it.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(0)
    }))
    .map_err(|_| corrupt("the decoder panicked on this stream".into()))?
    .map_err(|e| decoder_error(e, transfer_syntax))?;
    let bytes = decoded.data();
    let expected =
        module.rows as usize * module.columns as usize * usize::from(module.bits_allocated / 8);
    if bytes.len() < expected {
        return Err(corrupt(format!(
            "decoder produced {} bytes, the image needs {expected}",
            bytes.len()
        )));
    }
    Ok((
        from_le_bytes(&bytes[..expected], module.bits_allocated),
        decoder,
        None,
    ))
}

fn decode_jpeg12(
    stream: &[u8],
    module: &PixelModule,
    transfer_syntax: &str,
) -> Result<Vec<u16>, IngestError> {
    let corrupt = |detail: String| corrupt_in(transfer_syntax, detail);
    let max_pixels = u64::from(module.rows) * u64::from(module.columns);
    let frame = jpeg12::decode(stream, max_pixels).map_err(|e| corrupt(e.to_string()))?;
    if u32::from(frame.width) != module.columns
        || u32::from(frame.height) != module.rows
        || frame.components != 1
    {
        return Err(corrupt(format!(
            "JPEG frame is {}x{} with {} component(s), the header says {}x{} greyscale",
            frame.width, frame.height, frame.components, module.columns, module.rows
        )));
    }
    Ok(frame.samples)
}

/// The bytes of frame 1: all fragments of a single-frame image, else the
/// fragments before the second offset-table entry.
fn frame_fragments(fragments: &[Vec<u8>], offsets: &[u32], frames: u32) -> Option<Vec<u8>> {
    if frames == 1 {
        return Some(fragments.concat());
    }
    if fragments.len() == frames as usize {
        return fragments.first().cloned();
    }
    let next = *offsets.get(1)? as usize;
    let mut out = Vec::new();
    let mut position = 0usize;
    for fragment in fragments {
        if position >= next {
            break;
        }
        out.extend_from_slice(fragment);
        position += fragment.len() + 8;
    }
    Some(out)
}

fn decoder_error(e: dicom_pixeldata::Error, transfer_syntax: &str) -> IngestError {
    let text = e.to_string();
    if text.contains("Unsupported transfer syntax") || text.contains("Unknown transfer syntax") {
        return IngestError::UnsupportedTransferSyntax {
            uid: transfer_syntax.to_string(),
            name: text,
        };
    }
    let mut detail = text;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    IngestError::CorruptPixelData {
        transfer_syntax: transfer_syntax.to_string(),
        detail,
    }
}

/// Refuses codestreams that announce a bigger image than the DICOM header:
/// decoders size their buffers from the codestream's own frame header, and
/// a hostile stream can hide one after a junk fragment.
fn check_codestream_size(
    stream: &[u8],
    module: &PixelModule,
    transfer_syntax: &str,
) -> Result<(), String> {
    let family = codestream_family(transfer_syntax);
    let frames = codestream_frame_headers(stream, family);
    if family == Family::Jpeg2000 && frames.is_empty() {
        // Neither a codestream starting SOC, SIZ nor a JP2 file holding one:
        // nothing bounds what a decoder would allocate for it.
        return Err("no JPEG 2000 codestream header (SOC, SIZ) found in frame 1".into());
    }
    for frame in frames {
        let (width, height) = (frame.width, frame.height);
        if width > module.columns || height > module.rows {
            return Err(format!(
                "codestream announces {width}x{height} but the header says {}x{}",
                module.columns, module.rows
            ));
        }
        if frame.components != u32::from(module.samples_per_pixel) {
            return Err(format!(
                "codestream has {} component(s) but the header says {} sample(s) per pixel",
                frame.components, module.samples_per_pixel
            ));
        }
        if frame.precision > u32::from(module.bits_allocated) {
            return Err(format!(
                "codestream precision is {} bits but Bits Allocated is {}",
                frame.precision, module.bits_allocated
            ));
        }
    }
    Ok(())
}

/// What a codestream's frame header says a decoder will produce.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CodestreamFrame {
    width: u32,
    height: u32,
    /// Bits per sample.
    precision: u32,
    components: u32,
}

/// Which frame header a transfer syntax's codestream carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    /// ITU T.81 JPEG: SOFn markers.
    Jpeg,
    /// JPEG-LS: SOF55.
    JpegLs,
    /// JPEG 2000 / HTJ2K: SIZ right after SOC.
    Jpeg2000,
    /// No codestream frame header (RLE, native, unknown).
    Other,
}

fn codestream_family(transfer_syntax: &str) -> Family {
    match transfer_syntax.strip_prefix("1.2.840.10008.1.2.4.") {
        Some("80" | "81") => Family::JpegLs,
        Some("90" | "91" | "92" | "93" | "201" | "202" | "203") => Family::Jpeg2000,
        Some(n) if n.parse::<u32>().is_ok_and(|n| (50..=70).contains(&n)) => Family::Jpeg,
        _ => Family::Other,
    }
}

/// Every frame header a decoder could read from the stream. For JPEG and
/// JPEG-LS a byte scan, so that nothing a tolerant decoder might find is
/// missed: byte stuffing keeps SOFn (after `FF`, a byte of `C0`–`CF`) out of
/// JPEG entropy-coded data, and bit stuffing keeps any byte ≥ `80` after `FF`
/// out of JPEG-LS data, so a match off the header means a corrupt stream.
/// JPEG 2000 packet data may contain those bytes, but its SIZ must directly
/// follow SOC at the start.
fn codestream_frame_headers(data: &[u8], family: Family) -> Vec<CodestreamFrame> {
    let be16 = |i: usize| {
        data.get(i..i + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    // SOFn / SOF55: Lf, P, Y (height), X (width).
    let byte = |i: usize| data.get(i).map(|b| u32::from(*b));
    // SOFn / SOF55: Lf, P, Y (height), X (width), Nf.
    let sof_at = |i: usize| {
        Some(CodestreamFrame {
            precision: byte(i + 4)?,
            height: be16(i + 5)?,
            width: be16(i + 7)?,
            components: byte(i + 9)?,
        })
    };
    let is_sof = |m: u8| match family {
        Family::Jpeg => matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC),
        Family::JpegLs => m == 0xF7,
        _ => false,
    };
    match family {
        Family::Jpeg | Family::JpegLs => (0..data.len().saturating_sub(1))
            .filter(|&i| data[i] == 0xFF && is_sof(data[i + 1]))
            .filter_map(sof_at)
            .collect(),
        Family::Jpeg2000 => j2k_siz(jp2_codestream(data).unwrap_or(data))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The SIZ marker segment of a JPEG 2000 codestream, which must directly
/// follow SOC: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz,
/// YTOsiz, Csiz, then Ssiz (precision - 1) per component.
fn j2k_siz(code: &[u8]) -> Option<CodestreamFrame> {
    if !code.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return None;
    }
    let be16 = |i: usize| {
        code.get(i..i + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let be32 = |i: usize| {
        code.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (x, y) = (be32(8)?, be32(12)?);
    let (xo, yo) = (be32(16)?, be32(20)?);
    Some(CodestreamFrame {
        width: x.checked_sub(xo).unwrap_or(x),
        height: y.checked_sub(yo).unwrap_or(y),
        components: be16(40)?,
        precision: (u32::from(*code.get(42)?) & 0x7F) + 1,
    })
}

/// The codestream inside a JP2 file (its `jp2c` box), when `data` is one:
/// DICOM wants a bare codestream, but some senders wrap it, and decoders
/// accept both, so its SIZ must be checked all the same.
fn jp2_codestream(data: &[u8]) -> Option<&[u8]> {
    const SIGNATURE: [u8; 12] = [
        0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A,
    ];
    if !data.starts_with(&SIGNATURE) {
        return None;
    }
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let length = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as u64;
        let kind = &data[at + 4..at + 8];
        let (header, length) = match length {
            0 => (8u64, (data.len() - at) as u64),
            1 => (
                16,
                u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().ok()?),
            ),
            n => (8, n),
        };
        if length < header {
            return None;
        }
        let start = at + header as usize;
        let end = at
            .checked_add(usize::try_from(length).ok()?)?
            .min(data.len());
        if kind == b"jp2c" {
            return data.get(start..end);
        }
        at = end;
        if end == data.len() {
            break;
        }
    }
    None
}

/// Shifts values down to the low bits, masks to Bits Stored and sign-extends.
fn normalise(mut values: Vec<u16>, module: &PixelModule) -> Vec<u16> {
    let shift = module.high_bit + 1 - module.bits_stored;
    let bits = module.bits_stored;
    let mask: u16 = if bits >= 16 {
        u16::MAX
    } else {
        (1u16 << bits) - 1
    };
    let extend = 16 - bits;
    let signed = module.signed;
    if shift == 0 && bits == 16 {
        return values;
    }
    for v in &mut values {
        let x = (*v >> shift) & mask;
        *v = if signed && extend > 0 {
            (((x << extend) as i16) >> extend) as u16
        } else {
            x
        };
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(bits_stored: u16, high_bit: u16, signed: bool) -> PixelModule {
        PixelModule {
            rows: 1,
            columns: 4,
            samples_per_pixel: 1,
            photometric: "MONOCHROME2".into(),
            bits_allocated: 16,
            bits_stored,
            high_bit,
            signed,
            frames: 1,
        }
    }

    #[test]
    fn unsigned_values_are_masked_to_bits_stored() {
        let out = normalise(vec![0xF123, 0x0FFF, 0x1000, 0], &module(12, 11, false));
        assert_eq!(out, vec![0x0123, 0x0FFF, 0, 0]);
    }

    #[test]
    fn signed_values_are_sign_extended_from_bits_stored() {
        let out = normalise(vec![0x0FFF, 0x0800, 0x07FF, 0x0001], &module(12, 11, true));
        let as_i16: Vec<i16> = out.iter().map(|v| *v as i16).collect();
        assert_eq!(as_i16, vec![-1, -2048, 2047, 1]);
    }

    #[test]
    fn high_bit_above_bits_stored_shifts_down() {
        let out = normalise(vec![0x0010, 0xFFF0], &module(12, 15, false));
        assert_eq!(out, vec![0x0001, 0x0FFF]);
    }

    #[test]
    fn sha_is_of_little_endian_words() {
        let frame = StoredFrame {
            rows: 1,
            columns: 2,
            signed: false,
            bits_stored: 16,
            values: vec![0x0102, 0x0304],
            decoder: Decoder::Native,
            reduction: 0,
        };
        let expected: String = Sha256::digest([0x02u8, 0x01, 0x04, 0x03])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(frame.sha256_hex(), expected);
    }

    #[test]
    fn codestream_dimensions_are_read_from_sof_and_siz() {
        let sizes = |d: &[u8], f| -> Vec<(u32, u32)> {
            codestream_frame_headers(d, f)
                .iter()
                .map(|h| (h.width, h.height))
                .collect()
        };
        // SOI, SOF1 len 11, precision 12, height 0x0100, width 0x0200, 1 comp.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 12, 0x01, 0x00, 0x02, 0x00, 1, 1, 0x11, 0,
        ];
        assert_eq!(sizes(&jpeg, Family::Jpeg), vec![(512, 256)]);
        let header = codestream_frame_headers(&jpeg, Family::Jpeg)[0];
        assert_eq!((header.precision, header.components), (12, 1));
        // A second frame header hidden after junk is found too.
        let mut hidden = jpeg.to_vec();
        hidden.extend_from_slice(&[0x12, 0x34, 0xFF, 0xC0, 0, 11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1]);
        assert_eq!(sizes(&hidden, Family::Jpeg)[1], (65535, 65535));
        // SOC, SIZ: Lsiz, Rsiz, 640 x 480, no offsets, tiles, 1 component of 12 bits.
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [640u32, 480, 0, 0, 640, 480, 0, 0] {
            j2k.extend_from_slice(&v.to_be_bytes());
        }
        j2k.extend_from_slice(&[0, 1, 11, 1, 1]);
        assert_eq!(sizes(&j2k, Family::Jpeg2000), vec![(640, 480)]);
        let header = codestream_frame_headers(&j2k, Family::Jpeg2000)[0];
        assert_eq!((header.precision, header.components), (12, 1));
        assert!(sizes(b"garbage", Family::Jpeg).is_empty());
        // The same codestream in a JP2 file (signature, ftyp, jp2c boxes):
        // its SIZ is found and checked too.
        let mut jp2 = vec![
            0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A,
        ];
        jp2.extend_from_slice(&[0, 0, 0, 20, b'f', b't', b'y', b'p']);
        jp2.extend_from_slice(b"jp2 \0\0\0\0jp2 ");
        jp2.extend_from_slice(&(8 + j2k.len() as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&j2k);
        assert_eq!(sizes(&jp2, Family::Jpeg2000), vec![(640, 480)]);
        let sized = |columns: u32, rows: u32| PixelModule {
            rows,
            columns,
            bits_allocated: 16,
            bits_stored: 12,
            high_bit: 11,
            ..module(12, 11, false)
        };
        let j2k_ts = "1.2.840.10008.1.2.4.90";
        assert!(check_codestream_size(&jp2, &sized(640, 480), j2k_ts).is_ok());
        assert!(check_codestream_size(&jp2, &sized(320, 240), j2k_ts)
            .unwrap_err()
            .contains("640x480"));
        // Neither a codestream nor a JP2 file: refused, nothing to bound it.
        assert!(check_codestream_size(b"garbage", &sized(640, 480), j2k_ts)
            .unwrap_err()
            .contains("no JPEG 2000 codestream header"));
        assert_eq!(
            codestream_family("1.2.840.10008.1.2.4.201"),
            Family::Jpeg2000
        );
        assert_eq!(codestream_family("1.2.840.10008.1.2.4.57"), Family::Jpeg);
        assert_eq!(codestream_family("1.2.840.10008.1.2.5"), Family::Other);
    }

    #[test]
    fn colour_images_are_refused_with_a_hint() {
        let err = check_greyscale("RGB", 3).unwrap_err();
        assert!(err.to_string().contains("photograph"), "{err}");
        assert!(check_greyscale("MONOCHROME1", 1).is_ok());
    }
}
