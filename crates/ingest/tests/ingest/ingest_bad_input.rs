//! Every class of bad input gets its own typed error, quickly, without a
//! panic and without allocating what the input merely claims.

use crate::common;

use common::TestImage;
use cxr_ingest::{read_bytes, IngestErrorKind, IngestLimits};
use dicom_core::{PrimitiveValue, VR};
use dicom_dictionary_std::tags;

fn kind_of(bytes: &[u8]) -> IngestErrorKind {
    kind_with(bytes, &IngestLimits::default())
}

fn kind_with(bytes: &[u8], limits: &IngestLimits) -> IngestErrorKind {
    match read_bytes(bytes, limits) {
        Ok(r) => panic!("expected an error, decoded {:?}", r.meta),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.kind()
        }
    }
}

fn valid() -> TestImage {
    TestImage::new(300, 300, |r, c| ((r + c) % 4096) as u16)
}

#[test]
fn not_dicom() {
    assert_eq!(
        kind_of(b"\x89PNG\r\n\x1a\n not a dicom file at all"),
        IngestErrorKind::NotDicom
    );
    assert_eq!(kind_of(b""), IngestErrorKind::NotDicom);
    assert_eq!(kind_of(&[0u8; 4096]), IngestErrorKind::NotDicom);
}

#[test]
fn truncated_file() {
    let bytes = valid().to_bytes();
    for cut in [140, 300, bytes.len() / 2, bytes.len() - 1] {
        let kind = kind_of(&bytes[..cut]);
        assert_eq!(kind, IngestErrorKind::Truncated, "cut at {cut}");
    }
}

#[test]
fn missing_pixel_data() {
    let bytes = valid().without(tags::PIXEL_DATA).to_bytes();
    assert_eq!(kind_of(&bytes), IngestErrorKind::MissingPixelData);
}

#[test]
fn missing_rows() {
    let bytes = valid().without(tags::ROWS).to_bytes();
    assert_eq!(kind_of(&bytes), IngestErrorKind::MissingAttribute);
}

#[test]
fn pixel_data_shorter_or_longer_than_the_header_says() {
    let short = valid()
        .raw_pixels(vec![0u8; 300 * 300 * 2 - 600])
        .to_bytes();
    assert_eq!(kind_of(&short), IngestErrorKind::PixelDataLength);
    let long = valid()
        .raw_pixels(vec![0u8; 300 * 300 * 2 + 600])
        .to_bytes();
    assert_eq!(kind_of(&long), IngestErrorKind::PixelDataLength);
    // Bits Allocated 16 declared, 8-bit worth of data present.
    let half = valid().raw_pixels(vec![0u8; 300 * 300]).to_bytes();
    assert_eq!(kind_of(&half), IngestErrorKind::PixelDataLength);
}

#[test]
fn rows_and_columns_beyond_the_limit_are_refused_before_allocating() {
    // 60000 x 60000 x 2 bytes would be 7.2 GB; the pixel data is tiny.
    let bytes = valid()
        .set(tags::ROWS, VR::US, PrimitiveValue::from(60000u16))
        .set(tags::COLUMNS, VR::US, PrimitiveValue::from(60000u16))
        .to_bytes();
    assert_eq!(kind_of(&bytes), IngestErrorKind::ImageTooLarge);
    let limits = IngestLimits {
        max_side: 200,
        ..IngestLimits::default()
    };
    assert_eq!(
        kind_with(&valid().to_bytes(), &limits),
        IngestErrorKind::ImageTooLarge
    );
}

#[test]
fn colour_photograph_of_a_film_is_named_as_such() {
    let bytes = valid()
        .set(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB")
        .set(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(3u16))
        .to_bytes();
    let err = read_bytes(&bytes, &IngestLimits::default()).unwrap_err();
    assert_eq!(err.kind(), IngestErrorKind::UnsupportedPhotometric);
    assert!(err.to_string().contains("photograph"), "{err}");
}

#[test]
fn impossible_bit_depths_are_invalid_attributes() {
    let twelve = valid()
        .set(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(12u16))
        .to_bytes();
    assert_eq!(kind_of(&twelve), IngestErrorKind::InvalidAttribute);
    let stored = valid()
        .set(tags::BITS_STORED, VR::US, PrimitiveValue::from(17u16))
        .to_bytes();
    assert_eq!(kind_of(&stored), IngestErrorKind::InvalidAttribute);
}

#[test]
fn a_huge_claimed_length_fails_fast_without_allocating_it() {
    // A valid header followed by an OB element claiming ~4 GiB.
    let mut bytes = valid().without(tags::PIXEL_DATA).to_bytes();
    bytes.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
    ]);
    bytes.extend_from_slice(&[0u8; 64]);
    let started = std::time::Instant::now();
    assert_eq!(kind_of(&bytes), IngestErrorKind::Truncated);
    // Zero-filling 4 GiB takes seconds; refusing it takes microseconds.
    assert!(
        started.elapsed().as_millis() < 500,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn input_over_the_size_limit_is_refused_unread() {
    let limits = IngestLimits {
        max_input_bytes: 1000,
        ..IngestLimits::default()
    };
    assert_eq!(
        kind_with(&valid().to_bytes(), &limits),
        IngestErrorKind::InputTooLarge
    );
}

#[test]
fn unknown_transfer_syntax() {
    // dicom-object will not write an unknown syntax, so patch the meta group:
    // same length as "1.2.840.10008.1.2.1\0", so no length changes.
    let mut bytes = valid().to_bytes();
    let known = b"1.2.840.10008.1.2.1\0";
    let at = bytes
        .windows(known.len())
        .position(|w| w == known)
        .expect("transfer syntax in meta");
    bytes[at..at + known.len()].copy_from_slice(b"1.2.3.4.5.6.7.8.9.10");
    assert_eq!(kind_of(&bytes), IngestErrorKind::UnsupportedTransferSyntax);
}

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates a valid object thousands of times: flipped bytes, truncations,
/// overwritten lengths. Every outcome must be a result, never a panic.
#[test]
fn mutated_files_never_panic() {
    let original = TestImage::new(64, 64, |r, c| ((r * c) % 4096) as u16)
        .set(tags::WINDOW_CENTER, VR::DS, "2000")
        .set(tags::WINDOW_WIDTH, VR::DS, "4000")
        .voi_lut(0, 12, (0..4096).collect())
        .to_bytes();
    let limits = IngestLimits {
        min_side: 16,
        ..IngestLimits::default()
    };
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let (mut ok, mut failed) = (0, 0);
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..5000 {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = 0xFF,
                _ => bytes.truncate(at.max(1)),
            }
        }
        let started = std::time::Instant::now();
        let result = read_bytes(&bytes, &limits);
        slowest = slowest.max(started.elapsed());
        match result {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    // A mutated length must never make the reader allocate or zero-fill what
    // the file merely claims: that would take seconds, not milliseconds.
    assert!(
        slowest.as_millis() < 1000,
        "slowest mutation took {slowest:?}"
    );
    assert!(
        failed > 100,
        "mutations should break files: {ok} ok, {failed} failed"
    );
}

/// Inputs the fuzzer (`fuzz/`) found to crash or exhaust memory, kept as
/// regressions: each must now be a quick, typed error.
#[test]
fn fuzzer_findings_stay_fixed() {
    let dir =
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/data/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/data/fuzz") {
        let path = entry.expect("dir entry").path();
        let bytes = std::fs::read(&path).expect("readable");
        let started = std::time::Instant::now();
        let result = read_bytes(&bytes, &IngestLimits::default());
        assert!(result.is_err(), "{}", path.display());
        assert!(
            started.elapsed().as_millis() < 500,
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
        seen += 1;
    }
    assert!(seen >= 1);
}

/// A deflated object of some kilobytes that would inflate to 24
/// MiB stops at the inflation cap with a typed error, having inflated no
/// more than the cap; the same object within the cap parses.
#[test]
fn a_deflate_bomb_stops_at_the_inflation_cap() {
    let mut image = valid().raw_pixels(vec![0u8; 24 << 20]);
    image.transfer_syntax = dicom_dictionary_std::uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
    let bomb = image.to_bytes();
    assert!(
        bomb.len() < 1 << 20,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let capped = IngestLimits {
        max_inflated_bytes: 4 << 20,
        ..IngestLimits::default()
    };
    match cxr_ingest::read_bytes_identified(&bomb, &capped) {
        Err((e, meta)) => {
            assert_eq!(e.kind(), IngestErrorKind::InputTooLarge, "{e}");
            assert!(meta.is_none(), "nothing parsed, nothing to file");
        }
        Ok(_) => panic!("a 24 MiB data set passed a 4 MiB cap"),
    }
    // The default cap (160 MiB) lets the 24 MiB data set inflate: it is
    // then judged on its pixels like any other object.
    if let Err(e) = read_bytes(&bomb, &IngestLimits::default()) {
        assert_ne!(e.kind(), IngestErrorKind::InputTooLarge, "{e}");
    }
}
