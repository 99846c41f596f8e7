//! The greyscale pipeline on real DICOM objects built in memory: modality
//! LUT, VOI (windows, functions, LUT sequence, automatic), MONOCHROME1,
//! padding, signed and 8-bit pixels, multi-frame, preamble handling.

use crate::common;

use common::TestImage;
use cxr_ingest::{read_bytes, IngestLimits, Radiograph, VoiSource};
use dicom_core::{PrimitiveValue, VR};
use dicom_dictionary_std::tags;

fn read(image: &TestImage) -> Radiograph {
    read_bytes(&image.to_bytes(), &IngestLimits::default()).expect("decodes")
}

/// A 300 x 300 ramp: value = column * 10 (0 ..= 2990), fits 12 bits.
fn ramp() -> TestImage {
    TestImage::new(300, 300, |_, c| (c * 10) as u16)
}

fn windowed(image: TestImage, center: f64, width: f64) -> TestImage {
    image
        .set(tags::WINDOW_CENTER, VR::DS, center.to_string())
        .set(tags::WINDOW_WIDTH, VR::DS, width.to_string())
}

#[test]
fn stored_values_come_back_exactly() {
    let r = read(&ramp());
    assert_eq!(r.stored.value(0), 0);
    assert_eq!(r.stored.value(299), 2990);
    assert_eq!(r.stored.value(300 * 150 + 7), 70);
    assert!(r.assessment.analyzable, "{:?}", r.assessment);
}

#[test]
fn linear_window_maps_center_to_mid_grey_and_clips_outside() {
    let r = read(&windowed(ramp(), 1500.0, 1001.0));
    let px = |c: usize| r.image.pixels[c];
    assert_eq!(px(0), 0, "below the window is black");
    assert_eq!(px(299), 65535, "above the window is white");
    // 1500 is half a step above the centre - 0.5 point: (0.5/1000 + 0.5).
    let expected = ((0.5 / 1000.0 + 0.5) * 65535.0_f64).round() as u16;
    assert_eq!(px(150), expected);
    match r.presentation.voi {
        VoiSource::Window {
            center,
            width,
            ref function,
            offered,
        } => {
            assert_eq!(
                (center, width, function.as_str(), offered),
                (1500.0, 1001.0, "LINEAR", 1)
            );
        }
        ref other => panic!("expected the header window, got {other:?}"),
    }
}

#[test]
fn rescale_is_applied_before_the_window() {
    // Modality value = 2 * stored - 1000; window 1000 +- 500 on modality values.
    let image = windowed(ramp(), 1000.0, 1000.0)
        .set(tags::RESCALE_SLOPE, VR::DS, "2")
        .set(tags::RESCALE_INTERCEPT, VR::DS, "-1000");
    let r = read(&image);
    // stored 1000 (column 100) -> modality 1000 = the centre.
    let mid = r.image.pixels[100];
    assert!((i32::from(mid) - 32768).abs() < 100, "{mid}");
    // stored 250 (column 25) -> modality -500, below 500: black.
    assert_eq!(r.image.pixels[25], 0);
    assert_eq!(r.presentation.rescale_slope, 2.0);
}

#[test]
fn monochrome1_is_the_inverse_of_monochrome2() {
    let m2 = read(&windowed(ramp(), 1500.0, 3000.0));
    let m1 = read(&windowed(ramp(), 1500.0, 3000.0).set(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME1",
    ));
    assert!(m1.presentation.inverted && !m2.presentation.inverted);
    for (a, b) in m1.image.pixels.iter().zip(&m2.image.pixels) {
        assert!(
            (i32::from(*a) + i32::from(*b) - 65535).abs() <= 1,
            "{a} + {b}"
        );
    }
    // Stored values are untouched by the photometric interpretation.
    assert_eq!(m1.stored.sha256_hex(), m2.stored.sha256_hex());
}

#[test]
fn sigmoid_and_linear_exact_functions_are_honoured() {
    let sigmoid =
        read(&windowed(ramp(), 1500.0, 1000.0).set(tags::VOILUT_FUNCTION, VR::CS, "SIGMOID"));
    assert!((i32::from(sigmoid.image.pixels[150]) - 32768).abs() <= 1);
    // Sigmoid never clips: column 0 is dark but not exactly black.
    assert!(sigmoid.image.pixels[0] > 0 && sigmoid.image.pixels[0] < 1000);
    let exact =
        read(&windowed(ramp(), 1500.0, 1000.0).set(tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT"));
    assert!((i32::from(exact.image.pixels[150]) - 32768).abs() <= 1);
    assert_eq!(
        exact.image.pixels[100], 0,
        "1000 = centre - width/2 is black"
    );
}

#[test]
fn the_first_of_several_windows_is_used() {
    let image = ramp()
        .set(
            tags::WINDOW_CENTER,
            VR::DS,
            PrimitiveValue::Strs(["1000".to_string(), "2000".to_string()].into()),
        )
        .set(
            tags::WINDOW_WIDTH,
            VR::DS,
            PrimitiveValue::Strs(["500".to_string(), "800".to_string()].into()),
        );
    match read(&image).presentation.voi {
        VoiSource::Window {
            center,
            width,
            offered,
            ..
        } => {
            assert_eq!((center, width, offered), (1000.0, 500.0, 2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_voi_lut_sequence_is_preferred_over_the_window() {
    // LUT: 0..4096 entries mapping v -> 4095 - v (an inverting LUT), 12 bits out.
    let data: Vec<u16> = (0..4096).map(|v| 4095 - v).collect();
    let r = read(&windowed(ramp(), 1500.0, 1000.0).voi_lut(0, 12, data));
    assert!(matches!(
        r.presentation.voi,
        VoiSource::LutSequence {
            entries: 4096,
            first_mapped: 0
        }
    ));
    assert_eq!(r.image.pixels[0], 65535);
    let at_2990 = ((4095.0 - 2990.0) / 4095.0 * 65535.0_f64).round() as u16;
    assert_eq!(r.image.pixels[299], at_2990);
}

#[test]
fn without_any_voi_the_window_comes_from_the_image() {
    let r = read(&ramp());
    match r.presentation.voi {
        VoiSource::Automatic { low, high, .. } => {
            assert!(low < 50.0 && high > 2900.0, "{low}..{high}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.image.pixels[0] < 1000 && r.image.pixels[299] > 64000);
}

#[test]
fn for_processing_images_get_their_own_window_even_with_one_in_the_header() {
    let image =
        windowed(ramp(), 100.0, 10.0).set(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PROCESSING");
    let r = read(&image);
    assert_eq!(
        r.meta.presentation_intent.as_deref(),
        Some("FOR PROCESSING")
    );
    assert!(
        matches!(r.presentation.voi, VoiSource::Automatic { .. }),
        "{:?}",
        r.presentation.voi
    );
}

#[test]
fn padding_pixels_are_black_and_counted() {
    // Left 20 columns are padding (value 4000), the rest a ramp.
    let image = TestImage::new(300, 300, |_, c| if c < 20 { 4000 } else { (c * 10) as u16 })
        .set(
            tags::PIXEL_PADDING_VALUE,
            VR::US,
            PrimitiveValue::from(4000u16),
        )
        .set(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME1");
    let r = read(&image);
    assert_eq!(r.presentation.padding_pixels, 20 * 300);
    assert_eq!(r.image.pixels[5], 0, "padding is black even in MONOCHROME1");
    // The automatic window ignores padding: 4000 would otherwise be the top.
    match r.presentation.voi {
        VoiSource::Automatic { high, .. } => assert!(high < 3000.0, "{high}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn signed_pixels_are_sign_extended_from_bits_stored() {
    // 12 bits stored, signed: raw 0x0FFF is -1, 0x0800 is -2048.
    let image = TestImage::new(300, 300, |_, c| match c {
        0 => 0x0FFF,
        1 => 0x0800,
        _ => (c as u16) & 0x07FF,
    })
    .set(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    let r = read(&image);
    assert_eq!(r.stored.value(0), -1);
    assert_eq!(r.stored.value(1), -2048);
    assert_eq!(r.stored.value(2), 2);
    assert_eq!(r.stored.values[0], 0xFFFF, "hash input is the i16 pattern");
}

#[test]
fn eight_bit_pixels_decode() {
    let bytes: Vec<u8> = (0..300 * 300).map(|i| (i % 300) as u8).collect();
    let image = TestImage::new(300, 300, |_, _| 0)
        .set(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16))
        .set(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16))
        .set(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16))
        .raw_pixels(bytes);
    let r = read(&image);
    assert_eq!(r.stored.value(255), 255);
    assert_eq!(r.stored.value(256), 0);
}

#[test]
fn multi_frame_decodes_frame_one_and_says_so() {
    let frame = |c: u32| (c * 10) as u16;
    let pixels: Vec<u16> = (0..2 * 300 * 300u32)
        .map(|i| if i < 300 * 300 { frame(i % 300) } else { 4000 })
        .collect();
    let image = ramp().set(tags::NUMBER_OF_FRAMES, VR::IS, "2").set(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    );
    let r = read(&image);
    assert_eq!((r.frame.decoded, r.frame.of), (1, 2));
    assert_eq!(r.stored.sha256_hex(), read(&ramp()).stored.sha256_hex());
}

#[test]
fn the_preamble_is_optional() {
    let with = ramp().to_bytes();
    let without = &with[128..];
    let a = read_bytes(&with, &IngestLimits::default()).unwrap();
    let b = read_bytes(without, &IngestLimits::default()).unwrap();
    assert_eq!(a.stored.sha256_hex(), b.stored.sha256_hex());
    assert_eq!(a.meta, b.meta);
}

#[test]
fn patient_identifiers_never_reach_debug_output() {
    let r = read(&ramp());
    assert_eq!(r.patient.id.as_deref(), Some("PID-SECRET-42"));
    let printed = format!("{r:?}");
    assert!(!printed.contains("SECRET"), "{printed}");
}

#[test]
fn lateral_and_non_chest_images_decode_but_are_not_analyzable() {
    let lateral = read(&ramp().set(tags::VIEW_POSITION, VR::CS, "LL"));
    assert!(!lateral.assessment.analyzable);
    assert_eq!(lateral.assessment.reason.unwrap().code(), "lateral_view");
    let skull = read(&ramp().set(tags::BODY_PART_EXAMINED, VR::CS, "SKULL"));
    assert_eq!(skull.assessment.reason.unwrap().code(), "not_chest");
}

/// PS3.3 C.11.2.1.2.1: the LINEAR window function, in `[0, 1]`.
fn linear_window(x: f64, center: f64, width: f64) -> f64 {
    let (c, w) = (center - 0.5, width - 1.0);
    if x <= c - w / 2.0 {
        0.0
    } else if x > c + w / 2.0 {
        1.0
    } else {
        (x - c) / w + 0.5
    }
}

/// pydicom's `apply_modality_lut` + `apply_voi_lut` of row 0, every 7th
/// column, scaled to `[0, 1]` by the Modality LUT's output range (what
/// pydicom windows into when the image has one).
fn pydicom_presentation(bytes: &[u8]) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.dcm");
    std::fs::write(&path, bytes).unwrap();
    let python = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ));
    let script = "import sys, json, pydicom\n\
        from pydicom.pixels import apply_modality_lut, apply_voi_lut\n\
        ds = pydicom.dcmread(sys.argv[1])\n\
        v = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)\n\
        top = 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1\n\
        print(json.dumps([float(v[0, c]) / top for c in range(0, 300, 7)]))\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("the test venv's python (make test sets it up)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_modality_lut_sequence_replaces_rescale_and_feeds_the_window() {
    // A non-linear Modality LUT (stored² / 256, 16-bit output) and a
    // window in its output space; the Rescale Slope must not be applied.
    let lut: Vec<u16> = (0..4096u32).map(|s| (s * s / 256) as u16).collect();
    let image = windowed(ramp(), 20000.0, 30000.0)
        .set(tags::RESCALE_SLOPE, VR::DS, "5")
        .modality_lut(4096, 0, 16, lut.clone());
    let bytes = image.to_bytes();
    let r = read_bytes(&bytes, &IngestLimits::default()).unwrap();
    assert_eq!(
        r.presentation.modality_lut,
        Some(cxr_ingest::ModalityLut {
            entries: 4096,
            first_mapped: 0,
            bits: 16
        })
    );
    for c in 0..300usize {
        let stored = c * 10;
        let expected = linear_window(f64::from(lut[stored]), 20000.0, 30000.0);
        let ours = f64::from(r.image.pixels[c]) / 65535.0;
        assert!(
            (ours - expected).abs() <= 1.0 / 65535.0,
            "column {c}: {ours} vs {expected}"
        );
    }
    // The standard pipeline as pydicom implements it agrees.
    let reference = pydicom_presentation(&bytes);
    for (i, want) in reference.iter().enumerate() {
        let ours = f64::from(r.image.pixels[i * 7]) / 65535.0;
        assert!(
            (ours - want).abs() < 1e-3,
            "column {}: {ours} vs pydicom {want}",
            i * 7
        );
    }
}

#[test]
fn an_8_bit_modality_lut_packed_in_words_is_unpacked() {
    // 4096 8-bit entries (stored / 16) packed two to a word, little end first.
    let entries: Vec<u8> = (0..4096u32).map(|s| (s / 16) as u8).collect();
    let words: Vec<u16> = entries
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    let image = windowed(ramp(), 128.0, 256.0).modality_lut(4096, 0, 8, words);
    let r = read(&image);
    assert_eq!(
        r.presentation.modality_lut.as_ref().map(|l| l.bits),
        Some(8)
    );
    for c in [0usize, 37, 150, 299] {
        let expected = linear_window(f64::from(entries[c * 10]), 128.0, 256.0);
        let ours = f64::from(r.image.pixels[c]) / 65535.0;
        assert!((ours - expected).abs() <= 1.0 / 65535.0, "column {c}");
    }
}

#[test]
fn attributes_sent_as_un_are_read_by_their_dictionary_vr() {
    // A router that did not know these VRs forwarded them as UN.
    let un = |bytes: &[u8]| PrimitiveValue::U8(bytes.to_vec().into());
    let image = ramp()
        .set(tags::MODALITY, VR::UN, un(b"CR"))
        .set(tags::VIEW_POSITION, VR::UN, un(b"PA"))
        .set(tags::BODY_PART_EXAMINED, VR::UN, un(b"CHEST "))
        .set(tags::ROWS, VR::UN, un(&300u16.to_le_bytes()))
        .set(tags::WINDOW_CENTER, VR::UN, un(b"1500\\1000"))
        .set(tags::WINDOW_WIDTH, VR::UN, un(b"1001\\2000"));
    let r = read(&image);
    assert_eq!(r.meta.modality.as_deref(), Some("CR"));
    assert_eq!(r.meta.view_position.as_deref(), Some("PA"));
    assert_eq!(r.meta.body_part_examined.as_deref(), Some("CHEST"));
    assert_eq!(r.pixel_module.rows, 300);
    assert!(r.assessment.analyzable, "{:?}", r.assessment);
    match r.presentation.voi {
        VoiSource::Window {
            center,
            width,
            offered,
            ..
        } => assert_eq!((center, width, offered), (1500.0, 1001.0, 2)),
        ref other => panic!("expected the header window, got {other:?}"),
    }
}
