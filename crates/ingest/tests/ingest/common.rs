//! Builds small, real DICOM Part 10 objects in memory for ingest tests.
#![allow(dead_code)]

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// A greyscale image under construction; every attribute can be changed
/// before `to_bytes`.
pub struct TestImage {
    pub obj: InMemDicomObject,
    pub transfer_syntax: &'static str,
}

impl TestImage {
    /// A 16-bit, 12-bits-stored MONOCHROME2 CR PA chest of `columns` x `rows`
    /// whose pixel values are `f(row, column)`.
    pub fn new(rows: u16, columns: u16, f: impl Fn(u32, u32) -> u16) -> Self {
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag: Tag, vr: VR, v: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, v));
        };
        put(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE.into(),
        );
        put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1001".into());
        put(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.1002".into());
        put(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.1003".into());
        put(tags::MODALITY, VR::CS, "CR".into());
        put(tags::VIEW_POSITION, VR::CS, "PA".into());
        put(tags::BODY_PART_EXAMINED, VR::CS, "CHEST".into());
        put(tags::PATIENT_NAME, VR::PN, "TEST^SECRET".into());
        put(tags::PATIENT_ID, VR::LO, "PID-SECRET-42".into());
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        );
        put(tags::ROWS, VR::US, PrimitiveValue::from(rows));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(columns));
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16));
        put(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
        let pixels: Vec<u16> = (0..u32::from(rows))
            .flat_map(|r| (0..u32::from(columns)).map(move |c| (r, c)))
            .map(|(r, c)| f(r, c))
            .collect();
        put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into()));
        TestImage {
            obj,
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN,
        }
    }

    /// Sets (or replaces) an attribute.
    pub fn set(mut self, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> Self {
        self.obj.put(DataElement::new(tag, vr, value.into()));
        self
    }

    /// Removes an attribute.
    pub fn without(mut self, tag: Tag) -> Self {
        self.obj.remove_element(tag);
        self
    }

    /// Replaces the pixel data with raw bytes (OB).
    pub fn raw_pixels(self, bytes: Vec<u8>) -> Self {
        self.set(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(bytes.into()))
    }

    /// Adds a VOI LUT Sequence with one item.
    pub fn voi_lut(self, first_mapped: u16, bits: u16, data: Vec<u16>) -> Self {
        self.lut_sequence(tags::VOILUT_SEQUENCE, first_mapped, bits, data)
    }

    /// Adds a Modality LUT Sequence with one item (its data given as
    /// 16-bit words: two 8-bit entries a word when `bits` is 8 and the
    /// words are half the entries).
    pub fn modality_lut(self, entries: u16, first_mapped: u16, bits: u16, data: Vec<u16>) -> Self {
        self.lut_sequence_of(
            tags::MODALITY_LUT_SEQUENCE,
            entries,
            first_mapped,
            bits,
            data,
        )
    }

    fn lut_sequence(self, tag: Tag, first_mapped: u16, bits: u16, data: Vec<u16>) -> Self {
        let entries = data.len() as u16;
        self.lut_sequence_of(tag, entries, first_mapped, bits, data)
    }

    fn lut_sequence_of(
        mut self,
        tag: Tag,
        entries: u16,
        first_mapped: u16,
        bits: u16,
        data: Vec<u16>,
    ) -> Self {
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(vec![entries, first_mapped, bits].into()),
        ));
        item.put(DataElement::new(
            tags::LUT_DATA,
            VR::OW,
            PrimitiveValue::U16(data.into()),
        ));
        self.obj.put(DataElement::new(
            tag,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        self
    }

    /// The Part 10 bytes, with preamble.
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(self.transfer_syntax)
            .media_storage_sop_class_uid(uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("2.25.1001")
            .build()
            .expect("valid meta");
        let file = self.obj.clone().with_exact_meta(meta);
        let mut out = Vec::new();
        file.write_all(&mut out).expect("writes to memory");
        out
    }
}

/// The generated fixtures directory (made by `make fixtures`).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("test-images/generated")
}

/// Reads a generated fixture, failing with a pointer to `make fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}): run `make fixtures` (part of `make test`)",
            path.display()
        )
    })
}
