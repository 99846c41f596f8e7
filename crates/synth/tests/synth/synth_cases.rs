//! `synth` cases: ground-truth geometry, finding visibility, labels and the
//! MONOCHROME1/2 relation.

use cxr_synth::{
    generate_case, CaseSpec, FindingKind, FindingSet, Margin, PhotometricChoice, SyntheticCase,
    MALIGNANT_DIAMETER_MM,
};

fn spec(nodule: bool, tb: bool) -> CaseSpec {
    CaseSpec {
        size: Some((256, 256)),
        positive_rate: 1.0,
        findings: FindingSet { nodule, tb },
        nodule_mm: (12.0, 24.0),
        ..CaseSpec::small()
    }
}

fn mean_in(case: &SyntheticCase, values: &[u16], keep: impl Fn(i64, i64) -> bool) -> f64 {
    let w = case.meta.width as i64;
    let (mut sum, mut n) = (0.0, 0u32);
    for (i, &v) in values.iter().enumerate() {
        let (x, y) = (i as i64 % w, i as i64 / w);
        if keep(x, y) {
            sum += f64::from(v);
            n += 1;
        }
    }
    assert!(n > 0, "empty region");
    sum / f64::from(n)
}

#[test]
fn synth_boxes_lie_in_the_image_and_in_a_lung() {
    for index in 0..12 {
        let case = generate_case(&spec(true, true), 2, index).expect("case");
        assert!(
            !case.truth.findings.is_empty(),
            "positive case {index} has findings"
        );
        for f in &case.truth.findings {
            let [x0, y0, x1, y1] = f.bbox.map(i64::from);
            assert!(x0 < x1 && y0 < y1);
            assert!(x1 <= case.meta.width as i64 && y1 <= case.meta.height as i64);
            let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2);
            assert!(
                case.in_lung(cx, cy),
                "case {index}: box centre outside lung"
            );
            match f.kind {
                FindingKind::Nodule => {
                    for (x, y) in [
                        (x0 + 2, y0 + 2),
                        (x1 - 3, y0 + 2),
                        (x0 + 2, y1 - 3),
                        (x1 - 3, y1 - 3),
                    ] {
                        assert!(
                            case.in_lung(x, y),
                            "case {index}: nodule box corner outside lung"
                        );
                    }
                }
                FindingKind::Tb => {
                    let inside = (y0..y1)
                        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                        .filter(|&(x, y)| case.in_lung(x, y))
                        .count();
                    let area = ((x1 - x0) * (y1 - y0)) as usize;
                    assert!(
                        inside * 2 >= area,
                        "case {index}: TB box mostly outside lung"
                    );
                }
            }
        }
    }
}

#[test]
fn synth_a_nodule_is_brighter_than_its_surroundings() {
    // In-image: mean over the nodule core vs a ring around the box, averaged
    // over cases; paired: the same case without the nodule is darker there.
    let (mut wins, mut total) = (0, 0);
    for index in 0..10 {
        let with = generate_case(&spec(true, false), 4, index).expect("case");
        let without = generate_case(
            &CaseSpec {
                positive_rate: 0.0,
                ..spec(true, false)
            },
            4,
            index,
        )
        .expect("case");
        for f in &with.truth.findings {
            let n = f.nodule.expect("nodule details");
            let [cx, cy] = n.center;
            let r = n.diameter_mm / 2.0 / with.meta.pixel_spacing_mm as f32;
            let core = |x: i64, y: i64| {
                ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) < (0.6 * r).powi(2)
            };
            let [x0, y0, x1, y1] = f.bbox.map(i64::from);
            let pad = ((x1 - x0).max(y1 - y0) / 2).max(4);
            let ring = |x: i64, y: i64| {
                let outside_box = x < x0 || x >= x1 || y < y0 || y >= y1;
                let near = x >= x0 - pad && x < x1 + pad && y >= y0 - pad && y < y1 + pad;
                outside_box && near && with.in_lung(x, y)
            };
            let m2 = with.monochrome2_values();
            let inside = mean_in(&with, &m2, core);
            if inside > mean_in(&with, &m2, ring) {
                wins += 1;
            }
            total += 1;
            let before = mean_in(&without, &without.monochrome2_values(), core);
            assert!(
                inside > before + 5.0,
                "case {index}: nodule adds {}",
                inside - before
            );
        }
    }
    assert!(total >= 10);
    assert!(
        wins * 10 >= total * 8,
        "nodule core brighter than ring in only {wins}/{total}"
    );
}

#[test]
fn synth_finding_signal_peaks_inside_its_box() {
    // The difference between a positive case and the same case drawn
    // negative is the finding; its strong part lies inside the boxes.
    for index in 0..8 {
        let with = generate_case(&spec(true, true), 6, index).expect("case");
        let without = generate_case(
            &CaseSpec {
                positive_rate: 0.0,
                ..spec(true, true)
            },
            6,
            index,
        )
        .expect("case");
        let (a, b) = (with.monochrome2_values(), without.monochrome2_values());
        let diff: Vec<i32> = a
            .iter()
            .zip(&b)
            .map(|(&p, &q)| i32::from(p) - i32::from(q))
            .collect();
        let peak = *diff.iter().max().expect("pixels");
        assert!(peak > 0);
        let w = with.meta.width as usize;
        for (i, &d) in diff.iter().enumerate() {
            if d > peak / 2 {
                let (x, y) = ((i % w) as u32, (i / w) as u32);
                let boxed = with.truth.findings.iter().any(|f| {
                    let [x0, y0, x1, y1] = f.bbox;
                    x + 2 >= x0 && x < x1 + 2 && y + 2 >= y0 && y < y1 + 2
                });
                assert!(
                    boxed,
                    "case {index}: strong signal at ({x}, {y}) outside every box"
                );
            }
        }
    }
}

#[test]
fn synth_labels_follow_the_findings() {
    for index in 0..20 {
        let case = generate_case(&spec(true, true), 8, index).expect("case");
        let tb = case
            .truth
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Tb);
        let malignant = case
            .truth
            .findings
            .iter()
            .filter_map(|f| f.nodule)
            .any(|n| n.margin == Margin::Spiculated || n.diameter_mm >= MALIGNANT_DIAMETER_MM);
        assert_eq!(case.truth.labels.tuberculosis, tb);
        assert_eq!(case.truth.labels.malignant_nodule, malignant);
    }
    let negative = generate_case(
        &CaseSpec {
            positive_rate: 0.0,
            ..spec(true, true)
        },
        8,
        0,
    )
    .expect("case");
    assert!(negative.truth.findings.is_empty());
    assert!(!negative.truth.labels.tuberculosis && !negative.truth.labels.malignant_nodule);
}

#[test]
fn synth_monochrome1_inverts_monochrome2() {
    let m2 = CaseSpec {
        photometric: PhotometricChoice::Monochrome2,
        ..spec(true, true)
    };
    let m1 = CaseSpec {
        photometric: PhotometricChoice::Monochrome1,
        ..m2.clone()
    };
    let (a, b) = (
        generate_case(&m2, 3, 5).expect("case"),
        generate_case(&m1, 3, 5).expect("case"),
    );
    let max = a.meta.max_value();
    assert!(a.pixels.iter().zip(&b.pixels).all(|(&p, &q)| p + q == max));
    assert_eq!(a.meta.window_width, b.meta.window_width);
    assert_eq!(a.meta.window_center, f64::from(max) - b.meta.window_center);
    assert_eq!(a.truth, b.truth);
    assert_eq!(a.monochrome2_values(), b.monochrome2_values());
}

#[test]
fn synth_stored_values_fit_bits_stored_and_use_the_range() {
    for bits in [10u8, 12, 16] {
        let case = generate_case(
            &CaseSpec {
                bits: Some(bits),
                positive_rate: 0.0,
                ..spec(false, false)
            },
            1,
            1,
        )
        .expect("case");
        let max = case.meta.max_value();
        assert!(case.pixels.iter().all(|&v| v <= max));
        let (lo, hi) = (
            case.pixels.iter().min().copied(),
            case.pixels.iter().max().copied(),
        );
        let span = f64::from(hi.unwrap_or(0) - lo.unwrap_or(0));
        assert!(span > 0.5 * f64::from(max), "{bits} bits: span {span}");
        let (wc, ww) = (case.meta.window_center, case.meta.window_width);
        assert!(ww > 0.3 * f64::from(max) && wc > 0.0 && wc < f64::from(max));
    }
}
