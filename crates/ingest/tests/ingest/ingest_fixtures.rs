//! Real radiographs (NEMA RG1 chest CR, transcoded by dcmtk and OpenJPH into
//! every transfer syntax) decode to the same stored pixels as pydicom.
//!
//! The fixtures and pydicom's reference (`reference.jsonl`) are made by
//! `make fixtures`, which `make test` runs first.

use crate::common;

use std::collections::{BTreeSet, HashMap};

use cxr_ingest::{read_bytes, IngestLimits, Radiograph};
use serde_json::Value;

/// Transfer syntaxes whose decoders differ legitimately by rounding (DCT
/// JPEG: the IDCT is not bit-exact between implementations).
const DCT_JPEG: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];

/// Every transfer syntax the issue asks ingest to decode.
const REQUIRED_SYNTAXES: [(&str, &str); 14] = [
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline 8-bit"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended 12-bit"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless, Process 14"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
];

fn references() -> Vec<Value> {
    let path = common::fixtures_dir().join("reference.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `make fixtures` (part of `make test`)",
            path.display()
        )
    });
    text.lines()
        .map(|l| serde_json::from_str(l).expect("reference.jsonl is JSON Lines"))
        .collect()
}

fn decode(name: &str) -> Radiograph {
    read_bytes(&common::fixture(name), &IngestLimits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn every_required_transfer_syntax_has_a_fixture() {
    let present: BTreeSet<String> = references()
        .iter()
        .map(|r| {
            r["transfer_syntax"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for (uid, name) in REQUIRED_SYNTAXES {
        assert!(present.contains(uid), "no fixture in {name} ({uid})");
    }
}

#[test]
fn every_fixture_agrees_with_pydicom() {
    let mut decoded: HashMap<String, Radiograph> = HashMap::new();
    let refs = references();
    assert!(refs.len() >= 20, "only {} fixtures", refs.len());
    for reference in &refs {
        let name = reference["file"].as_str().expect("file");
        let ours = decode(name);
        let ts = reference["transfer_syntax"].as_str().unwrap_or_default();
        assert_eq!(ours.transfer_syntax, ts, "{name}");
        assert_eq!(
            i64::from(ours.pixel_module.rows),
            int(reference, "rows"),
            "{name}"
        );
        assert_eq!(
            i64::from(ours.pixel_module.columns),
            int(reference, "columns"),
            "{name}"
        );
        assert_eq!(
            i64::from(ours.pixel_module.bits_stored),
            int(reference, "bits_stored"),
            "{name}"
        );
        assert_eq!(
            i64::from(ours.frame.of),
            int(reference, "number_of_frames"),
            "{name}"
        );
        assert_eq!(
            ours.pixel_module.photometric, reference["photometric"],
            "{name}"
        );

        if DCT_JPEG.contains(&ts) {
            // Rounding differences between IDCTs: within one grey level.
            for sample in reference["samples"].as_array().expect("samples") {
                let (row, col, value) = (
                    sample[0].as_i64().unwrap(),
                    sample[1].as_i64().unwrap(),
                    sample[2].as_i64().unwrap(),
                );
                let index = (row * i64::from(ours.stored.columns) + col) as usize;
                let got = i64::from(ours.stored.value(index));
                assert!(
                    (got - value).abs() <= 1,
                    "{name} at ({row},{col}): ours {got}, pydicom {value}"
                );
            }
        } else {
            assert_eq!(
                ours.stored.sha256_hex(),
                reference["pixel_sha256"],
                "{name}: stored pixels differ from pydicom's"
            );
        }
        decoded.insert(name.to_string(), ours);
    }

    // Lossless transcodes equal their source; lossy ones stay within the
    // error pydicom measured (plus one level for IDCT rounding).
    for reference in &refs {
        let name = reference["file"].as_str().unwrap();
        if let Some(source) = reference["lossless_of"].as_str() {
            assert_eq!(
                decoded[name].stored.values, decoded[source].stored.values,
                "{name} vs {source}"
            );
        }
        if let Some(source) = reference["lossy_of"].as_str() {
            let (ours, original) = (&decoded[name].stored, &decoded[source].stored);
            let (mut max, mut sum_sq) = (0i64, 0f64);
            for i in 0..ours.values.len() {
                let d = i64::from(ours.value(i) - original.value(i));
                max = max.max(d.abs());
                sum_sq += (d * d) as f64;
            }
            let rms = (sum_sq / ours.values.len() as f64).sqrt();
            let stated_max = int(reference, "max_abs_error");
            let stated_rms = reference["rms_error"].as_f64().unwrap();
            assert!(
                max <= stated_max + 1,
                "{name}: max error {max} > stated {stated_max}"
            );
            assert!(
                rms <= stated_rms * 1.01 + 0.05,
                "{name}: rms {rms} > stated {stated_rms}"
            );
        }
    }
}

#[test]
fn the_real_chest_film_is_an_analyzable_pa_cr_shown_inverted() {
    let r = decode("RG1_UNCR.dcm");
    assert!(r.assessment.analyzable, "{:?}", r.assessment);
    assert_eq!(r.meta.modality.as_deref(), Some("CR"));
    assert_eq!(r.meta.view_position.as_deref(), Some("PA"));
    assert!(r.presentation.inverted);
    // MONOCHROME1 shown the right way round: the lungs (dark on a film) are
    // darker than the mediastinum between them.
    let image = &r.image;
    let mean = |x0: u32, x1: u32, y0: u32, y1: u32| {
        let mut sum = 0u64;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += u64::from(image.pixels[(y * image.width + x) as usize]);
            }
        }
        sum as f64 / f64::from((x1 - x0) * (y1 - y0))
    };
    let (w, h) = (image.width, image.height);
    let right_lung = mean(w / 5, w / 5 + w / 10, h * 2 / 5, h / 2);
    let mediastinum = mean(w / 2 - w / 20, w / 2 + w / 20, h * 2 / 5, h / 2);
    assert!(
        right_lung < mediastinum,
        "lung {right_lung} should be darker than mediastinum {mediastinum}"
    );
}

#[test]
fn monochrome2_twin_displays_like_the_monochrome1_original() {
    let m1 = decode("RG1_UNCR.dcm");
    let m2 = decode("RG1_MONO2.dcm");
    assert!(!m2.presentation.inverted);
    let worst = m1
        .image
        .pixels
        .iter()
        .zip(&m2.image.pixels)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 3, "display differs by up to {worst} of 65535");
}

#[test]
fn multi_frame_fixtures_decode_frame_one() {
    let r = decode("RG1_MF2_JLSL.dcm");
    assert_eq!((r.frame.decoded, r.frame.of), (1, 2));
}

#[test]
fn padding_fixture_reports_its_border() {
    let r = decode("RG1_PAD.dcm");
    assert!(r.presentation.padding_pixels > 0);
}

#[test]
fn corrupt_compressed_streams_are_typed_errors() {
    use cxr_ingest::IngestErrorKind;
    let mut report = Vec::new();
    for name in [
        "RG1_J2KR.dcm",
        "RG1_JLSL.dcm",
        "RG1_JPLL_SV1.dcm",
        "RG1_12BIT_JPEXT.dcm",
        "RG1_8BIT_JPBASE.dcm",
        "RG1_HTJ2KL.dcm",
    ] {
        let mut bytes = common::fixture(name);
        // Scramble 4 KiB in the middle of the compressed stream, keeping the
        // element structure (lengths) intact.
        let mid = bytes.len() / 2;
        for (i, b) in bytes[mid..mid + 4096].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151) ^ 0xA5;
        }
        match read_bytes(&bytes, &IngestLimits::default()) {
            Err(e) => {
                assert_eq!(e.kind(), IngestErrorKind::CorruptPixelData, "{name}: {e}");
                report.push(format!("{name}: {e}"));
            }
            // JPEG 2000 and JPEG decoders may conceal damage in one
            // code-block or MCU row; that yields an image, not a panic.
            Ok(_) => report.push(format!("{name}: concealed")),
        }
        // A file cut inside the pixel data is a truncation.
        let whole = common::fixture(name);
        let err = read_bytes(&whole[..whole.len() * 3 / 4], &IngestLimits::default()).unwrap_err();
        assert_eq!(err.kind(), IngestErrorKind::Truncated, "{name}: {err}");
    }
    let errors = report.iter().filter(|r| !r.ends_with("concealed")).count();
    assert!(
        errors >= 3,
        "most corruptions should be detected: {report:#?}"
    );
    eprintln!("{report:#?}");
}
