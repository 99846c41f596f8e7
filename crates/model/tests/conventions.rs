//! Interpolation conventions against the training frameworks themselves:
//! a real radiograph (NEMA's RG1 chest CR from the fixtures, cut to even sizes)
//! presented by cxr-ingest, resized by our taps and by Pillow, OpenCV,
//! scikit-image and TensorFlow (`test-images/resize_reference.py`, in the
//! test venv) and PyTorch (its outputs recorded with torch 2.15, see that
//! script), at 16 and 8 bits, to sizes whose ratios put sample points on pixel boundaries.
//! Nearest variants must pick exactly the same pixels; the others agree
//! within 1/255 (the frameworks round 8-bit intermediates; float cubic and
//! Lanczos overshoot, which the model input clamps).

use std::path::{Path, PathBuf};

use cxr_ingest::{read_file, GreyImage, IngestLimits};
use cxr_model::preprocess::{
    resample, write_input, Geometry, InputSpec, Interpolation, Layout, Normalization, ResizeMode,
};

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

/// The RG1 chest CR presented, cut to 1736 × 1952: even sizes, so that
/// resizing to 150 puts sample points exactly on pixel boundaries (column
/// 37 of 150 samples 434.0), where the frameworks' nearest rules part.
fn radiograph() -> GreyImage {
    let path = root().join("test-images/generated/RG1_UNCR.dcm");
    let full = read_file(&path, &IngestLimits::default())
        .unwrap_or_else(|e| panic!("{} (make fixtures): {e}", path.display()))
        .image;
    let (w, h) = (1736usize, 1952usize);
    let pixels = (0..h)
        .flat_map(|r| full.pixels[r * full.width as usize..][..w].to_vec())
        .collect();
    GreyImage {
        width: w as u32,
        height: h as u32,
        pixels,
    }
}

/// The image with every value on the 8-bit grid a PNG pipeline sees.
fn eight_bit(image: &GreyImage) -> GreyImage {
    GreyImage {
        pixels: image
            .pixels
            .iter()
            .map(|&v| ((f64::from(v) / 257.0).round() as u16) * 257)
            .collect(),
        ..image.clone()
    }
}

const CONVENTIONS: [(&str, Interpolation, bool); 20] = [
    ("pil_nearest", Interpolation::PilNearest, true),
    ("pil_bilinear", Interpolation::PilBilinear, false),
    ("pil_bicubic", Interpolation::PilBicubic, false),
    ("pil_box", Interpolation::PilBox, false),
    ("pil_hamming", Interpolation::PilHamming, false),
    ("pil_lanczos", Interpolation::PilLanczos, false),
    ("opencv_nearest", Interpolation::OpencvNearest, true),
    (
        "opencv_nearest_exact",
        Interpolation::OpencvNearestExact,
        true,
    ),
    ("opencv_linear", Interpolation::OpencvLinear, false),
    ("opencv_area", Interpolation::OpencvArea, false),
    ("opencv_cubic", Interpolation::OpencvCubic, false),
    ("skimage", Interpolation::Skimage, false),
    ("tf_bilinear", Interpolation::OpencvLinear, false),
    ("tf_nearest", Interpolation::TorchNearestExact, true),
    ("tf_area", Interpolation::OpencvArea, false),
    ("torch_nearest", Interpolation::TorchNearest, true),
    (
        "torch_nearest_exact",
        Interpolation::TorchNearestExact,
        true,
    ),
    ("torch_bilinear", Interpolation::OpencvLinear, false),
    (
        "torch_bilinear_antialias",
        Interpolation::PilBilinear,
        false,
    ),
    ("torch_bicubic", Interpolation::OpencvCubic, false),
];

/// 150 columns from 1841 and rows from 1955 put sample points exactly on
/// pixel boundaries (where the rules differ); 224² and 299 × 256 are common
/// model inputs.
const SIZES: [(u32, u32); 3] = [(150, 150), (224, 224), (299, 256)];

#[test]
fn each_convention_reproduces_its_framework_on_a_real_radiograph() {
    let image = radiograph();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("grey.u16");
    std::fs::write(
        &raw,
        image
            .pixels
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let mut jobs = Vec::new();
    for (name, _, _) in CONVENTIONS {
        for (w, h) in SIZES {
            for bits in [16, 8] {
                let out = dir.path().join(format!("{name}-{w}x{h}-{bits}.f32"));
                jobs.push(serde_json::json!({
                    "name": name, "width": w, "height": h, "bits": bits, "out": out,
                }));
            }
        }
    }
    let spec = dir.path().join("jobs.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "image": raw, "width": image.width, "height": image.height, "jobs": jobs,
        })
        .to_string(),
    )
    .unwrap();
    // torch's outputs are recorded (see resize_reference.py); with a Python
    // that has torch, record them again first.
    if let Some(torch) = std::env::var_os("CXR_TORCH_PYTHON") {
        let out = std::process::Command::new(torch)
            .arg(root().join("test-images/resize_reference.py"))
            .arg("--record-torch")
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("test-images/resize_reference.py"))
        .arg(&spec)
        .output()
        .expect("the test venv's python (make test sets it up)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let image8 = eight_bit(&image);
    let mut report = Vec::new();
    for (name, interpolation, nearest) in CONVENTIONS {
        for (w, h) in SIZES {
            for bits in [16, 8] {
                let path = dir.path().join(format!("{name}-{w}x{h}-{bits}.f32"));
                let reference: Vec<f32> = std::fs::read(&path)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).clamp(0.0, 1.0))
                    .collect();
                let source = if bits == 16 { &image } else { &image8 };
                let g = Geometry::fit(source.width, source.height, w, h, ResizeMode::Stretch);
                let ours = resample(source, &g, interpolation);
                assert_eq!(ours.len(), reference.len());
                let worst = ours
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                report.push(format!("{name} {w}x{h} {bits}-bit: max |Δ| {worst:.2e}"));
                // Nearest: the same pixels (values equal to float rounding).
                let bound = if nearest { 1e-6 } else { 1.0 / 255.0 };
                assert!(
                    worst <= bound,
                    "{name} at {w}x{h}, {bits}-bit: max |Δ| {worst} > {bound}\n{}",
                    report.join("\n")
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));

    // The test can tell the rules apart: at 150 columns cxr-triage's exact
    // `nearest` reads another source column than Pillow's.
    let g = Geometry::fit(image.width, image.height, 150, 150, ResizeMode::Stretch);
    let exact = resample(&image, &g, Interpolation::Nearest);
    let pil = resample(&image, &g, Interpolation::PilNearest);
    assert_ne!(exact, pil, "the boundary case is not exercised");
}

#[test]
fn grey_is_replicated_to_three_channels_with_each_channels_normalisation() {
    let image = radiograph();
    let spec = InputSpec {
        width: 224,
        height: 224,
        channels: 3,
        layout: Layout::Nchw,
        resize: ResizeMode::Stretch,
        interpolation: Interpolation::PilBilinear,
        normalization: Normalization::MeanStd {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        },
    };
    let mut input = vec![0.0f32; spec.image_len()];
    let g = write_input(&spec, &image, &mut input);
    let plane = resample(&image, &g, Interpolation::PilBilinear);
    for (c, (m, s)) in [(0.485f32, 0.229f32), (0.456, 0.224), (0.406, 0.225)]
        .into_iter()
        .enumerate()
    {
        let channel = &input[c * plane.len()..(c + 1) * plane.len()];
        for (x, g) in channel.iter().zip(&plane) {
            assert!((x - (g - m) / s).abs() < 1e-5);
        }
    }
}

#[test]
fn every_documented_name_parses_and_todays_names_keep_their_meaning() {
    for name in Interpolation::NAMES {
        let parsed: Result<Interpolation, _> =
            serde_json::from_value(serde_json::Value::String((*name).to_string()));
        assert!(parsed.is_ok(), "{name}");
    }
    let parse = |n: &str| -> Interpolation {
        serde_json::from_value(serde_json::Value::String(n.into())).unwrap()
    };
    assert_eq!(parse("area"), Interpolation::Area);
    assert_eq!(parse("nearest"), Interpolation::Nearest);
    assert_eq!(parse("bilinear"), Interpolation::Bilinear);
    assert_eq!(parse("torch_bilinear"), Interpolation::OpencvLinear);
    assert_eq!(
        parse("torch_bilinear_antialias"),
        Interpolation::PilBilinear
    );
    assert_eq!(parse("tf_nearest"), Interpolation::TorchNearestExact);
}
