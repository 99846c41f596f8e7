//! Bytes → parsed DICOM object, with every allocation bounded by the input.
//!
//! `dicom-object` trusts the value lengths it reads: an element that claims
//! 4 GiB in a 200-byte file makes it zero-fill 4 GiB before the read fails.
//! So before handing bytes to it we walk the element headers once
//! ([`check_lengths`]) and reject any length that runs past the end of its
//! container. Deflated data sets are inflated here, with a cap, for the same
//! reason (a 10 MB deflate stream can expand to gigabytes).

use std::borrow::Cow;
use std::io::Read;

use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, FileMetaTable, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::IngestError;

/// Where the `DICM` magic is, which tells whether a preamble is present.
const PREAMBLE_LEN: usize = 128;
const MAGIC: &[u8; 4] = b"DICM";
/// Sequences nested deeper than this are rejected as malformed (no real CXR nests past 5).
const MAX_NESTING: u32 = 32;

/// A parsed object and the transfer syntax its data set was encoded in.
pub(crate) struct ParsedObject {
    pub object: DefaultDicomObject,
    /// The transfer syntax UID as stated in the file meta group.
    pub transfer_syntax: String,
}

/// Parses a DICOM Part 10 object held in memory, with or without preamble.
pub(crate) fn parse(bytes: &[u8], max_inflated: u64) -> Result<ParsedObject, IngestError> {
    parse_until(bytes, max_inflated, false).map(|(parsed, _)| parsed)
}

/// [`parse`] without the Pixel Data: every length is still checked, but the
/// data set is read only up to its top-level Pixel Data element, so that
/// the identity of a 250 MiB object costs kilobytes. Returns whether the
/// object has Pixel Data beside it.
pub(crate) fn parse_identity(
    bytes: &[u8],
    max_inflated: u64,
) -> Result<(ParsedObject, bool), IngestError> {
    parse_until(bytes, max_inflated, true).map(|(parsed, at)| (parsed, at.is_some()))
}

/// A native object — uncompressed, little-endian, not deflated — whose
/// Pixel Data has a defined length: its header parsed without the Pixel
/// Data, and the Pixel Data value borrowed from `bytes` (no copy). `None`
/// when the object is not one (the caller then uses [`parse`]).
pub(crate) fn parse_native(bytes: &[u8]) -> Result<Option<(ParsedObject, &[u8])>, IngestError> {
    let (file_meta, reader) = read_meta(bytes)?;
    let ts_uid = file_meta.transfer_syntax().to_string();
    let explicit_vr = match ts_uid.as_str() {
        uids::EXPLICIT_VR_LITTLE_ENDIAN => true,
        uids::IMPLICIT_VR_LITTLE_ENDIAN => false,
        _ => return Ok(None),
    };
    let encoding = Encoding {
        explicit_vr,
        big_endian: false,
    };
    let mut walker = Walker {
        buf: reader,
        pos: 0,
        pixel_data_at: None,
        pixel_value: None,
    };
    walker
        .elements(reader.len(), encoding, None, 0, false)
        .map_err(|e| e.into_ingest("data set"))?;
    let (Some(at), Some((start, len))) = (walker.pixel_data_at, walker.pixel_value) else {
        return Ok(None);
    };
    let ts = TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| {
        IngestError::UnsupportedTransferSyntax {
            uid: ts_uid.clone(),
            name: "not a known transfer syntax".into(),
        }
    })?;
    let mut object =
        InMemDicomObject::read_dataset_with_ts(&reader[..at], ts).map_err(|e| dataset_error(&e))?;
    resolve_unknown_vrs(&mut object);
    let parsed = ParsedObject {
        object: object.with_exact_meta(file_meta),
        transfer_syntax: ts_uid,
    };
    Ok(Some((parsed, &reader[start..start + len])))
}

/// Top-level elements that arrived with VR UN (sent in Explicit VR by a
/// router or archive that did not know their VR) but whose tag the
/// standard dictionary knows are read by the dictionary's VR, as pydicom
/// and dcmtk do: a Modality, View Position or Rows sent as UN is then the
/// text or number it is, not raw bytes. A UN value is encoded as in
/// Implicit VR Little Endian (PS3.5 6.2.2). Values that do not fit their
/// VR, and private or unknown tags, stay as they are.
fn resolve_unknown_vrs(obj: &mut InMemDicomObject) {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use dicom_core::header::Header;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let unknown: Vec<_> = obj
        .iter()
        .filter(|e| e.vr() == VR::UN)
        .map(|e| e.tag())
        .collect();
    for tag in unknown {
        let Some(entry) = dicom_dictionary_std::StandardDataDictionary.by_tag(tag) else {
            continue;
        };
        let vr = match entry.vr() {
            VirtualVr::Exact(vr) => vr,
            VirtualVr::Xs => VR::US,
            _ => continue,
        };
        let Some(bytes) = obj
            .element(tag)
            .ok()
            .and_then(|e| e.to_bytes().ok().map(|b| b.into_owned()))
        else {
            continue;
        };
        let numbers = |size: usize| (bytes.len() % size == 0).then(|| bytes.chunks_exact(size));
        let value = match vr {
            VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UI
            | VR::UR
            | VR::UT => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim_end_matches(['\0', ' ']);
                // Free text may hold a backslash; the others are multi-valued.
                let parts: Vec<String> = if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
                    vec![text.to_string()]
                } else {
                    text.split('\\').map(|p| p.trim().to_string()).collect()
                };
                Some(PrimitiveValue::Strs(parts.into_iter().collect()))
            }
            VR::US => numbers(2).map(|c| {
                PrimitiveValue::U16(c.map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
            }),
            VR::SS => numbers(2).map(|c| {
                PrimitiveValue::I16(c.map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
            }),
            VR::UL => numbers(4).map(|c| {
                PrimitiveValue::U32(
                    c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }),
            VR::SL => numbers(4).map(|c| {
                PrimitiveValue::I32(
                    c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }),
            VR::FL => numbers(4).map(|c| {
                PrimitiveValue::F32(
                    c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }),
            VR::FD => numbers(8).map(|c| {
                PrimitiveValue::F64(
                    c.map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                        .collect(),
                )
            }),
            _ => None,
        };
        if let Some(value) = value {
            obj.put(DataElement::new(tag, vr, value));
        }
    }
}

/// The file meta group, checked and read; and the data set's bytes after it.
fn read_meta(bytes: &[u8]) -> Result<(FileMetaTable, &[u8]), IngestError> {
    let from_magic = strip_preamble(bytes)?;
    let meta = &from_magic[MAGIC.len()..];
    // dicom-object reads meta elements, whatever their tags, until it has
    // consumed File Meta Information Group Length bytes after that element.
    check_lengths(meta, Encoding::EXPLICIT_LE, Some(meta_group_end(meta)))
        .map_err(|e| e.into_ingest("file meta group"))?;
    let mut reader = from_magic;
    let table = FileMetaTable::from_reader(&mut reader).map_err(|e| meta_error(&e))?;
    Ok((table, reader))
}

/// Parses, stopping before the top-level Pixel Data when `before_pixels`;
/// returns where that element starts in the data set (when present).
fn parse_until(
    bytes: &[u8],
    max_inflated: u64,
    before_pixels: bool,
) -> Result<(ParsedObject, Option<usize>), IngestError> {
    let (meta, reader) = read_meta(bytes)?;
    let ts_uid = meta.transfer_syntax().to_string();
    let ts = TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| {
        IngestError::UnsupportedTransferSyntax {
            uid: ts_uid.clone(),
            name: "not a known transfer syntax".into(),
        }
    })?;

    // `reader` now points at the first byte of the data set.
    let (dataset, read_ts) = if ts_uid == uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
        let inflated = inflate_capped(reader, max_inflated)?;
        let explicit = TransferSyntaxRegistry
            .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .ok_or_else(|| IngestError::UnsupportedTransferSyntax {
                uid: uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
                name: "Explicit VR Little Endian missing from the registry".into(),
            })?;
        (Cow::Owned(inflated), explicit)
    } else {
        (Cow::Borrowed(reader), ts)
    };

    // Implicit VR Little Endian is the only implicit transfer syntax.
    let encoding = Encoding {
        explicit_vr: read_ts.uid() != uids::IMPLICIT_VR_LITTLE_ENDIAN,
        big_endian: read_ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big,
    };
    let pixel_data_at =
        check_lengths(&dataset, encoding, None).map_err(|e| e.into_ingest("data set"))?;
    let read = match pixel_data_at {
        Some(at) if before_pixels => &dataset[..at],
        _ => &dataset[..],
    };

    let mut object =
        InMemDicomObject::read_dataset_with_ts(read, read_ts).map_err(|e| dataset_error(&e))?;
    resolve_unknown_vrs(&mut object);
    let parsed = ParsedObject {
        object: object.with_exact_meta(meta),
        transfer_syntax: ts_uid,
    };
    Ok((parsed, pixel_data_at))
}

/// Where the file meta group ends: after its (0002,0000) group length
/// element plus the length it states, read the way dicom-object reads it
/// (any VR, value length 4). 0 when the group does not start that way (the
/// parser then refuses it); `usize::MAX` when the input is too short to
/// tell, so that the walk goes on and reports the cut. Offsets are relative
/// to the byte after the `DICM` magic.
fn meta_group_end(meta: &[u8]) -> usize {
    let mut walker = Walker {
        buf: meta,
        pos: 0,
        pixel_data_at: None,
        pixel_value: None,
    };
    let end = meta.len();
    let Ok(tag) = walker.take::<4>(end) else {
        return usize::MAX;
    };
    if tag != [0x02, 0x00, 0x00, 0x00] {
        return 0;
    }
    let Ok((_, len)) = walker.header_rest(end, Encoding::EXPLICIT_LE, (2, 0)) else {
        return usize::MAX;
    };
    if len != 4 {
        return 0;
    }
    match walker.u32(end, false) {
        Ok(group_length) => walker.pos.saturating_add(group_length as usize),
        Err(_) => usize::MAX,
    }
}

/// Returns the bytes from the `DICM` magic on.
fn strip_preamble(bytes: &[u8]) -> Result<&[u8], IngestError> {
    if bytes.get(PREAMBLE_LEN..PREAMBLE_LEN + 4) == Some(MAGIC) {
        return Ok(&bytes[PREAMBLE_LEN..]);
    }
    if bytes.get(..4) == Some(MAGIC) {
        return Ok(bytes);
    }
    let detail = if bytes.len() < PREAMBLE_LEN + 4 && bytes.len() >= 4 {
        format!(
            "{} bytes, too short for a preamble and no DICM magic at offset 0",
            bytes.len()
        )
    } else if bytes.len() < 4 {
        format!("only {} bytes", bytes.len())
    } else {
        "no DICM magic at offset 0 or 128 (raw data sets without a file meta group are not accepted)"
            .to_string()
    };
    Err(IngestError::NotDicom { detail })
}

fn inflate_capped(deflated: &[u8], max: u64) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::DeflateDecoder::new(deflated).take(max.saturating_add(1));
    decoder
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed {
            detail: format!("deflated data set does not inflate: {e}"),
        })?;
    if out.len() as u64 > max {
        return Err(IngestError::InputTooLarge {
            size: out.len() as u64,
            max,
        });
    }
    Ok(out)
}

fn meta_error(e: &dicom_object::meta::Error) -> IngestError {
    let text = e.to_string();
    if is_eof(&text) {
        IngestError::Truncated {
            detail: format!("in the file meta group: {text}"),
        }
    } else {
        IngestError::Malformed {
            detail: format!("file meta group: {text}"),
        }
    }
}

fn dataset_error(e: &dicom_object::ReadError) -> IngestError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if is_eof(&text) {
        IngestError::Truncated { detail: text }
    } else {
        IngestError::Malformed { detail: text }
    }
}

fn is_eof(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("eof") || lower.contains("end of file") || lower.contains("fill whole buffer")
}

/// Whether two bytes name a VR of PS3.5 (unknown ones are read as UN).
fn is_known_vr(vr: &[u8; 2]) -> bool {
    dicom_core::VR::from_binary(*vr).is_some()
}

/// The VR the standard dictionary gives a tag, as its two letters (`--`
/// when unknown or context-dependent).
fn dictionary_vr(tag: (u16, u16)) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let entry = dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1));
    match entry.map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => {
            let name = vr.to_string();
            match name.as_bytes() {
                [a, b] => [*a, *b],
                _ => *b"--",
            }
        }
        Some(VirtualVr::Xs) => *b"US",
        _ => *b"--",
    }
}

/// Size of one value of a binary VR. dicom-parser reads `length / size`
/// values and moves on, so a length that is not a multiple of the size
/// desynchronises it (the next header is read from inside this value).
fn binary_value_size(vr: &[u8; 2]) -> Option<u32> {
    match vr {
        b"SS" | b"US" | b"OW" => Some(2),
        b"AT" | b"FL" | b"SL" | b"UL" | b"OF" | b"OL" => Some(4),
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => Some(8),
        _ => None,
    }
}

/// How the element headers of a data set are encoded.
#[derive(Debug, Clone, Copy)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

impl Encoding {
    const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
    };
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// A structural fault found by [`check_lengths`], with its byte offset.
#[derive(Debug)]
struct LengthFault {
    offset: usize,
    what: String,
    truncated: bool,
}

impl LengthFault {
    fn into_ingest(self, part: &str) -> IngestError {
        let detail = format!("{part}, byte {}: {}", self.offset, self.what);
        if self.truncated {
            IngestError::Truncated { detail }
        } else {
            IngestError::Malformed { detail }
        }
    }
}

/// Walks element headers and checks that every defined length fits in its
/// container, recursing into sequence items. `stop_at` ends the walk at the
/// first element starting at or after that offset (the file meta group).
/// Returns where the top-level Pixel Data element starts, if there is one.
fn check_lengths(
    buf: &[u8],
    enc: Encoding,
    stop_at: Option<usize>,
) -> Result<Option<usize>, LengthFault> {
    let mut walker = Walker {
        buf,
        pos: 0,
        pixel_data_at: None,
        pixel_value: None,
    };
    walker.elements(buf.len(), enc, stop_at, 0, false)?;
    Ok(walker.pixel_data_at)
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of the top-level Pixel Data element's tag, once walked past.
    pixel_data_at: Option<usize>,
    /// Offset and length of its value, when the length is defined.
    pixel_value: Option<(usize, usize)>,
}

impl Walker<'_> {
    fn fault(&self, what: impl Into<String>, truncated: bool) -> LengthFault {
        LengthFault {
            offset: self.pos,
            what: what.into(),
            truncated,
        }
    }

    fn take<const N: usize>(&mut self, end: usize) -> Result<[u8; N], LengthFault> {
        let stop = self.pos + N;
        if stop > end {
            return Err(self.fault("element header runs past the end", end == self.buf.len()));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..stop]);
        self.pos = stop;
        Ok(out)
    }

    fn u16(&mut self, end: usize, big: bool) -> Result<u16, LengthFault> {
        let b = self.take::<2>(end)?;
        Ok(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self, end: usize, big: bool) -> Result<u32, LengthFault> {
        let b = self.take::<4>(end)?;
        Ok(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn skip(&mut self, len: u32, end: usize, what: &str) -> Result<(), LengthFault> {
        let stop = self.pos.checked_add(len as usize).filter(|s| *s <= end);
        match stop {
            Some(stop) => {
                self.pos = stop;
                Ok(())
            }
            None => Err(self.fault(
                format!(
                    "{what} claims {len} bytes but only {} remain",
                    end - self.pos
                ),
                end == self.buf.len(),
            )),
        }
    }

    /// Elements until `end`, or until an item delimiter when `in_undefined_item`.
    fn elements(
        &mut self,
        end: usize,
        enc: Encoding,
        stop_at: Option<usize>,
        depth: u32,
        in_undefined_item: bool,
    ) -> Result<(), LengthFault> {
        if depth > MAX_NESTING {
            return Err(self.fault("sequences nested too deeply", false));
        }
        while self.pos < end {
            if stop_at.is_some_and(|stop| self.pos >= stop) {
                return Ok(());
            }
            let start = self.pos;
            let group = self.u16(end, enc.big_endian)?;
            let element = self.u16(end, enc.big_endian)?;
            if depth == 0 && (group, element) == PIXEL_DATA && self.pixel_data_at.is_none() {
                self.pixel_data_at = Some(start);
            }
            if group == 0xFFFE {
                let len = self.u32(end, enc.big_endian)?;
                if (group, element) == ITEM_END && in_undefined_item {
                    return Ok(());
                }
                // Stray delimiters at data set level are tolerated by readers; skip them.
                self.skip(if len == UNDEFINED { 0 } else { len }, end, "delimiter")?;
                continue;
            }
            let (vr, len) = self.header_rest(end, enc, (group, element))?;
            if self.pixel_data_at == Some(start) && depth == 0 && len != UNDEFINED {
                self.pixel_value = Some((self.pos, len as usize));
            }
            if len == UNDEFINED {
                let nested = if (enc.explicit_vr && !is_known_vr(&vr)) || vr == *b"UN" {
                    Encoding::IMPLICIT_LE
                } else {
                    enc
                };
                let fragments = (group, element) == PIXEL_DATA;
                self.items(end, nested, depth + 1, fragments)?;
            } else if vr == *b"SQ" {
                let stop = self.pos.checked_add(len as usize).filter(|s| *s <= end);
                let Some(stop) = stop else {
                    return Err(self.fault(
                        format!("sequence claims {len} bytes past its container"),
                        end == self.buf.len(),
                    ));
                };
                self.items(stop, enc, depth + 1, false)?;
                self.pos = stop;
            } else {
                if let Some(size) = binary_value_size(&vr) {
                    if len % size != 0 {
                        return Err(self.fault(
                            format!(
                                "({group:04X},{element:04X}) {} value of {len} bytes is not a multiple of {size}",
                                String::from_utf8_lossy(&vr)
                            ),
                            false,
                        ));
                    }
                }
                self.skip(len, end, "element value")?;
            }
        }
        if in_undefined_item {
            return Err(self.fault("item without its delimiter", end == self.buf.len()));
        }
        Ok(())
    }

    fn header_rest(
        &mut self,
        end: usize,
        enc: Encoding,
        tag: (u16, u16),
    ) -> Result<([u8; 2], u32), LengthFault> {
        if !enc.explicit_vr {
            let len = self.u32(end, enc.big_endian)?;
            // Implicit VR: the parser takes the VR from the dictionary, so we
            // do too (a defined-length sequence is walked; binary values get
            // the size check); an undefined length can only be a sequence.
            let vr = if len == UNDEFINED {
                *b"SQ"
            } else {
                dictionary_vr(tag)
            };
            return Ok((vr, len));
        }
        let vr = self.take::<2>(end)?;
        // PS3.5 7.1.2: these VRs have a 16-bit length; every other VR, and
        // an unknown one (read as UN, as dicom-parser does), a 32-bit length.
        let short = matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        let long = !short;
        let len = if long {
            self.take::<2>(end)?;
            self.u32(end, enc.big_endian)?
        } else {
            u32::from(self.u16(end, enc.big_endian)?)
        };
        Ok((vr, len))
    }

    /// Items of a sequence until `end` or a sequence delimiter. Items of a
    /// sequence are data sets and are walked; `fragments` (encapsulated pixel
    /// data) are opaque and must merely fit.
    fn items(
        &mut self,
        end: usize,
        enc: Encoding,
        depth: u32,
        fragments: bool,
    ) -> Result<(), LengthFault> {
        while self.pos < end {
            let group = self.u16(end, enc.big_endian)?;
            let element = self.u16(end, enc.big_endian)?;
            let len = self.u32(end, enc.big_endian)?;
            match (group, element) {
                SEQUENCE_END => return Ok(()),
                ITEM if len == UNDEFINED && !fragments => {
                    self.elements(end, enc, None, depth, true)?
                }
                ITEM if len == UNDEFINED => {
                    return Err(self.fault("pixel data fragment of undefined length", false))
                }
                ITEM => {
                    let stop = self.pos.checked_add(len as usize).filter(|s| *s <= end);
                    let Some(stop) = stop else {
                        return Err(self.fault(
                            format!("item claims {len} bytes but only {} remain", end - self.pos),
                            end == self.buf.len(),
                        ));
                    };
                    if !fragments {
                        self.elements(stop, enc, None, depth, false)?;
                    }
                    self.pos = stop;
                }
                _ => {
                    return Err(self.fault(
                        format!("expected an item tag, found ({group:04X},{element:04X})"),
                        false,
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_length_past_the_end_is_a_truncation() {
        let mut buf = explicit_element((0x0010, 0x0010), b"PN", b"DOE^JOHN");
        // OB with a 4 GiB length and nothing behind it.
        buf.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
        ]);
        let fault = check_lengths(&buf, Encoding::EXPLICIT_LE, None).unwrap_err();
        assert!(fault.truncated, "{fault:?}");
        assert!(fault.what.contains("4294967280"), "{fault:?}");
    }

    #[test]
    fn a_length_past_its_item_is_malformed_even_when_the_file_is_long() {
        // SQ of defined length 20 holding one item of 12 whose element claims 1000.
        let inner = explicit_element((0x0008, 0x0100), b"SH", b"ABCD");
        let mut inner_bad = inner.clone();
        inner_bad[6] = 0xE8; // length 1000 (0x03E8)
        inner_bad[7] = 0x03;
        let mut item = Vec::new();
        item.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        item.extend_from_slice(&(inner_bad.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner_bad);
        let mut buf = Vec::new();
        buf.extend_from_slice(&[0x08, 0x00, 0x15, 0x92, b'S', b'Q', 0, 0]);
        buf.extend_from_slice(&(item.len() as u32).to_le_bytes());
        buf.extend_from_slice(&item);
        buf.extend(std::iter::repeat_n(0u8, 2000));
        let fault = check_lengths(&buf, Encoding::EXPLICIT_LE, None).unwrap_err();
        assert!(!fault.truncated, "{fault:?}");
        assert!(fault.what.contains("1000"), "{fault:?}");
    }

    #[test]
    fn implicit_defined_length_sequences_are_walked_too() {
        // (0008,1115) ReferencedSeriesSequence, implicit VR, defined length 20,
        // one item of 12 whose element claims 1000 bytes.
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0];
        item.extend_from_slice(&[
            0x08, 0x00, 0x50, 0x11, 0xE8, 0x03, 0, 0, b'1', b'.', b'2', 0,
        ]);
        let mut buf = vec![0x08, 0x00, 0x15, 0x11, 20, 0, 0, 0];
        buf.extend_from_slice(&item);
        buf.extend(std::iter::repeat_n(0u8, 2000));
        let fault = check_lengths(&buf, Encoding::IMPLICIT_LE, None).unwrap_err();
        assert!(fault.what.contains("1000"), "{fault:?}");
    }

    #[test]
    fn well_formed_elements_pass() {
        let mut buf = explicit_element((0x0008, 0x0060), b"CS", b"CR");
        buf.extend(explicit_element((0x0018, 0x5101), b"CS", b"PA"));
        assert!(check_lengths(&buf, Encoding::EXPLICIT_LE, None).is_ok());
    }

    #[test]
    fn no_magic_is_not_dicom() {
        let err = strip_preamble(b"\x89PNG\r\n\x1a\n and so on").unwrap_err();
        assert!(matches!(err, IngestError::NotDicom { .. }), "{err}");
    }

    #[test]
    fn magic_with_and_without_preamble_is_found() {
        let mut with = vec![0u8; 128];
        with.extend_from_slice(b"DICMrest");
        assert_eq!(strip_preamble(&with).unwrap(), b"DICMrest");
        assert_eq!(strip_preamble(b"DICMrest").unwrap(), b"DICMrest");
    }
}
