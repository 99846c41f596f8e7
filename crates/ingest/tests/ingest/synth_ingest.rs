//! `synth` output read back by the project's own ingest: every transfer
//! syntax synth writes decodes to the case's stored values, the gate judges
//! the views right, and the findings survive into the presentation image.

use cxr_ingest::{read_bytes, IngestLimits, Radiograph, VoiSource};
use cxr_synth::{
    dicom_bytes, generate_case, CaseSpec, Encoder, ModalityChoice, OutputSyntax, PhotometricChoice,
    SyntheticCase, ViewChoice,
};

fn ingest(case: &SyntheticCase, syntax: OutputSyntax) -> Radiograph {
    let bytes = dicom_bytes(case, syntax).unwrap_or_else(|e| panic!("{syntax:?}: {e}"));
    read_bytes(&bytes, &IngestLimits::default()).unwrap_or_else(|e| panic!("{syntax:?}: {e}"))
}

fn spec(syntax: OutputSyntax) -> CaseSpec {
    CaseSpec {
        syntax,
        bits: Some(syntax.max_bits().min(12)),
        positive_rate: 1.0,
        ..CaseSpec::small()
    }
}

#[test]
fn synth_every_syntax_ingests_to_the_case_pixels() {
    for syntax in OutputSyntax::ALL {
        if matches!(
            syntax.encoder(),
            Encoder::Dcmtk { .. } | Encoder::OpenJpeg { .. }
        ) && std::env::var_os("CXR_SKIP_DCMTK_TESTS").is_some()
        {
            continue;
        }
        let spec = spec(syntax);
        let case = generate_case(&spec, 11, 1).expect("case");
        let r = ingest(&case, syntax);
        assert_eq!(r.transfer_syntax, syntax.uid(), "{syntax:?}");
        let bits = u8::try_from(r.pixel_module.bits_stored).expect("bits");
        let errors: Vec<i64> = case
            .pixels
            .iter()
            .enumerate()
            .map(|(i, v)| (i64::from(r.stored.value(i)) - i64::from(*v)).abs())
            .collect();
        let worst = errors.iter().copied().max().unwrap_or(0);
        match syntax.max_error(bits) {
            // Lossless, or lossy with a hard bound (JPEG-LS NEAR): exact.
            Some(bound) => assert!(
                worst <= i64::from(bound),
                "{syntax:?}: max error {worst} > {bound}"
            ),
            // DCT JPEG has no hard bound: the mean error stays under 1 % of the range.
            None => {
                let mean = errors.iter().sum::<i64>() as f64 / errors.len() as f64;
                let range = f64::from(1u32 << bits);
                assert!(
                    mean < 0.01 * range,
                    "{syntax:?}: mean error {mean} of {range}"
                );
            }
        }
        assert!(r.assessment.analyzable, "{syntax:?}: {:?}", r.assessment);
    }
}

#[test]
fn synth_views_are_judged_by_the_gate() {
    for (view, analyzable) in [
        (ViewChoice::Pa, true),
        (ViewChoice::Ap, true),
        (ViewChoice::Lateral, false),
    ] {
        let spec = CaseSpec {
            view,
            ..spec(OutputSyntax::ExplicitLe)
        };
        let r = ingest(
            &generate_case(&spec, 3, 1).expect("case"),
            OutputSyntax::ExplicitLe,
        );
        assert_eq!(r.assessment.analyzable, analyzable, "{view:?}");
        if !analyzable {
            assert_eq!(r.assessment.reason.expect("reason").code(), "lateral_view");
        }
    }
}

#[test]
fn synth_for_processing_images_get_an_automatic_window() {
    let spec = CaseSpec {
        modality: ModalityChoice::DxForProcessing,
        ..spec(OutputSyntax::ExplicitLe)
    };
    let r = ingest(
        &generate_case(&spec, 5, 1).expect("case"),
        OutputSyntax::ExplicitLe,
    );
    assert_eq!(
        r.meta.presentation_intent.as_deref(),
        Some("FOR PROCESSING")
    );
    assert!(
        matches!(r.presentation.voi, VoiSource::Automatic { .. }),
        "{:?}",
        r.presentation.voi
    );
    assert!(r.assessment.analyzable);
}

#[test]
fn synth_monochrome1_and_monochrome2_display_alike() {
    let m2 = CaseSpec {
        photometric: PhotometricChoice::Monochrome2,
        ..spec(OutputSyntax::ExplicitLe)
    };
    let m1 = CaseSpec {
        photometric: PhotometricChoice::Monochrome1,
        ..m2.clone()
    };
    let a = ingest(
        &generate_case(&m2, 9, 1).expect("case"),
        OutputSyntax::ExplicitLe,
    );
    let b = ingest(
        &generate_case(&m1, 9, 1).expect("case"),
        OutputSyntax::ExplicitLe,
    );
    assert!(b.presentation.inverted && !a.presentation.inverted);
    let mean_diff = a
        .image
        .pixels
        .iter()
        .zip(&b.image.pixels)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum::<f64>()
        / a.image.pixels.len() as f64;
    assert!(
        mean_diff < 0.02 * 65535.0,
        "mean display difference {mean_diff}"
    );
}

/// Ingest keeps what a reader sees: wherever a finding is brighter (or
/// darker) than the lung around it in the generated image, it is so in the
/// presentation image too, for MONOCHROME1 CR and MONOCHROME2 DX alike.
#[test]
fn synth_findings_keep_their_contrast_through_ingest() {
    let mut checked = 0;
    for (modality, index) in [(ModalityChoice::Cr, 1u64), (ModalityChoice::Dx, 2)]
        .iter()
        .flat_map(|(m, start)| (0..4).map(move |k| (*m, start + 2 * k)))
    {
        let spec = CaseSpec {
            modality,
            photometric: PhotometricChoice::Auto,
            ..spec(OutputSyntax::JpegLs)
        };
        let case = generate_case(&spec, 21, index).expect("case");
        let r = ingest(&case, OutputSyntax::JpegLs);
        let truth = case.monochrome2_values();
        let (w, h) = (i64::from(r.image.width), i64::from(r.image.height));
        for finding in &case.truth.findings {
            let [x0, y0, x1, y1] = finding.bbox.map(i64::from);
            let margin = ((x1 - x0).max(y1 - y0) / 2).max(4);
            let mut sums = [[0f64; 2]; 2]; // [inside, ring] x [display, truth]
            let mut counts = [0f64; 2];
            for y in (y0 - margin).max(0)..(y1 + margin).min(h) {
                for x in (x0 - margin).max(0)..(x1 + margin).min(w) {
                    let i = (y * w + x) as usize;
                    let which = if x >= x0 && x < x1 && y >= y0 && y < y1 {
                        0
                    } else if case.in_lung(x, y) {
                        1
                    } else {
                        continue;
                    };
                    sums[which][0] += f64::from(r.image.pixels[i]);
                    sums[which][1] += f64::from(truth[i]);
                    counts[which] += 1.0;
                }
            }
            if counts[1] < 10.0 {
                continue;
            }
            let display = sums[0][0] / counts[0] - sums[1][0] / counts[1];
            let generated = sums[0][1] / counts[0] - sums[1][1] / counts[1];
            assert_eq!(
                display > 0.0,
                generated > 0.0,
                "{finding:?}: display {display}, generated {generated}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} findings checked");
}
