//! JPEG 2000 decoded at a reduced resolution level
//! (`IngestLimits::jpeg2000_reduce_to`): the RG1 chest CR in JPEG 2000
//! lossless, HTJ2K and JPEG 2000 lossy comes out 2^r smaller, and close to
//! the full-resolution image averaged over each 2^r × 2^r block; other
//! syntaxes, and films too small to reduce, are decoded in full.

use std::path::PathBuf;

use cxr_ingest::{read_file, GreyImage, IngestLimits};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../test-images/generated"
    ))
    .join(name)
}

/// The mean of each `f × f` block of `full` (partial blocks at the edges),
/// as `0..=1` grey.
fn block_mean(full: &GreyImage, f: u32, w: u32, h: u32) -> Vec<f64> {
    let mut out = Vec::with_capacity((w * h) as usize);
    for by in 0..h {
        for bx in 0..w {
            let (mut sum, mut n) = (0.0, 0.0);
            for y in by * f..((by + 1) * f).min(full.height) {
                for x in bx * f..((bx + 1) * f).min(full.width) {
                    sum += f64::from(full.pixels[(y * full.width + x) as usize]);
                    n += 1.0;
                }
            }
            out.push(sum / n / 65535.0);
        }
    }
    out
}

#[test]
fn jpeg2000_films_decode_at_the_level_asked_and_match_the_full_image() {
    let full_limits = IngestLimits::default();
    let reduced_limits = IngestLimits {
        jpeg2000_reduce_to: Some(460),
        ..IngestLimits::default()
    };
    for name in ["RG1_J2KR.dcm", "RG1_HTJ2KL.dcm", "RG1_J2KI.dcm"] {
        let full = read_file(&fixture(name), &full_limits).unwrap();
        let reduced = read_file(&fixture(name), &reduced_limits).unwrap();
        assert_eq!(full.stored.reduction, 0);
        assert_eq!(reduced.stored.decoder.as_str(), "cpu_reduced", "recorded");
        // 1841 × 1955: two levels down is 461 × 489, the last above 460.
        assert_eq!(reduced.stored.reduction, 2, "{name}");
        assert_eq!(
            (reduced.image.width, reduced.image.height),
            (1841u32.div_ceil(4), 1955u32.div_ceil(4)),
            "{name}"
        );
        assert_eq!(
            (reduced.pixel_module.columns, reduced.pixel_module.rows),
            (1841, 1955),
            "the header is as it was"
        );
        let expected = block_mean(&full.image, 4, reduced.image.width, reduced.image.height);
        let diffs: Vec<f64> = reduced
            .image
            .pixels
            .iter()
            .zip(&expected)
            .map(|(&v, e)| (f64::from(v) / 65535.0 - e).abs())
            .collect();
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        eprintln!("{name}: mean |Δ| vs the 4×4 block mean {mean:.4}");
        assert!(mean < 0.01, "{name}: mean |Δ| {mean}");
    }
}

#[test]
fn other_syntaxes_and_small_films_are_decoded_in_full() {
    let limits = IngestLimits {
        jpeg2000_reduce_to: Some(460),
        ..IngestLimits::default()
    };
    let native = read_file(&fixture("RG1_UNCR.dcm"), &limits).unwrap();
    assert_eq!((native.stored.reduction, native.image.width), (0, 1841));
    let jpeg_ls = read_file(&fixture("RG1_JLSL.dcm"), &limits).unwrap();
    assert_eq!(jpeg_ls.stored.reduction, 0);
    let big_target = IngestLimits {
        jpeg2000_reduce_to: Some(1000),
        ..IngestLimits::default()
    };
    let j2k = read_file(&fixture("RG1_J2KR.dcm"), &big_target).unwrap();
    assert_eq!(
        (j2k.stored.reduction, j2k.image.width),
        (0, 1841),
        "a level down would be under 1000 px"
    );
}
