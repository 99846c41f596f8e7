//! The result objects sent back to PACS, read by dcmtk: the SR parses in
//! `dsrdump` without a warning (relationship constraints of Comprehensive
//! 3D SR checked) and says what the analysis found; the Secondary Capture
//! renders in `dcm2pnm` with its banner and the heatmap; both file under
//! the original patient and study, in new series, and are made the same
//! twice (same UIDs) from the same image and model.

use crate::pacs_support;

use std::process::Command;

use cxr_ingest::{read_object, IngestLimits};
use cxr_pacs::derived::{text as attr, ResultInput};
use cxr_pacs::{sc, sr, uids};
use cxr_synth::{OutputSyntax, ViewChoice};
use dicom_dictionary_std::tags;
use pacs_support::*;

fn dump(tool: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(tool).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// David Clunie's IOD verifier (dicom3tools) finds no error in `file`.
/// Warnings about attributes it merely finds unusual are allowed; errors
/// (a missing or empty required attribute, a wrong value) are not.
fn dciodvfy(file: &std::path::Path) {
    let (_, stdout, stderr) = dump("dciodvfy", &[file.to_str().unwrap()]);
    let errors: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.starts_with("Error"))
        .collect();
    assert!(
        errors.is_empty(),
        "dciodvfy {}:\n{}\n\n{stderr}",
        file.display(),
        errors.join("\n")
    );
}

/// Reads a binary PPM (P6) written by dcm2pnm.
fn read_ppm(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, bytes[at + 1..at + 1 + w * h * 3].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sr_and_the_secondary_capture_report_the_findings_and_dcmtk_reads_them() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (pipeline, _store) = pipeline(data.path());
    warm(&pipeline).await;
    let (path, sop, study) = film(out.path(), 63, 1, OutputSyntax::ExplicitLe, true);
    let bytes = std::fs::read(&path).unwrap();
    let header = read_object(&bytes, &IngestLimits::default()).unwrap();
    let outcome = pipeline
        .analyze(bytes, cxr_pipeline::Source::named("test"))
        .await
        .unwrap()
        .outcome;
    let tb = outcome
        .findings
        .iter()
        .find(|f| f.finding == "tuberculosis")
        .unwrap();
    assert!(tb.positive, "TB-positive film scored {}", tb.score);
    let input = ResultInput {
        source: &header,
        outcome: &outcome,
        station: "CXR_TRIAGE",
        now_ms: 1_795_398_307_250,
    };

    // The SR.
    let report = sr::build(&input).unwrap();
    assert_eq!(report.sop_class_uid, uids::COMPREHENSIVE_3D_SR);
    assert_eq!(
        sr::build(&input).unwrap().sop_instance_uid,
        report.sop_instance_uid
    );
    let sr_path = out.path().join("sr.dcm");
    std::fs::write(&sr_path, &report.file).unwrap();
    let (ok, stdout, stderr) = dump(
        "dsrdump",
        &["+Pu", "+Pc", "+Pt", "+Pl", sr_path.to_str().unwrap()],
    );
    assert!(ok, "dsrdump failed: {stderr}");
    assert!(
        !stderr.contains("W:") && !stderr.contains("E:"),
        "dsrdump warnings:\n{stderr}\n{stdout}"
    );
    for expected in [
        "Comprehensive 3D SR",
        "Imaging Measurement Report",
        "TID 1500",
        "Device Observer UID",
        "Plain chest X-ray",
        "Image Library",
        "Pulmonary tuberculosis",
        "Certainty of Finding",
        "Probability of cancer",
        "Nodule",
        "Positive",
        "CAD Operating Point Description",
        "Threshold Value",
        "Algorithm Name",
        "cxr-reference-v1",
        "Image Region",
        "POLYLINE",
        "Qualitative Evaluations",
        "AI triage priority",
        &sop,
    ] {
        assert!(
            stdout.contains(expected),
            "SR lacks `{expected}`:\n{stdout}"
        );
    }
    // The score in the SR is the analysis's, as a percentage.
    let score = format!("\"{}\"", cxr_pacs::derived::ds(f64::from(tb.score) * 100.0));
    assert!(stdout.contains(&score), "score {score} missing:\n{stdout}");

    // The Secondary Capture.
    let picture = sc::build(&input).unwrap();
    assert_eq!(picture.sop_class_uid, uids::SECONDARY_CAPTURE);
    let sc_path = out.path().join("sc.dcm");
    std::fs::write(&sc_path, &picture.file).unwrap();
    let ppm = out.path().join("sc.ppm");
    let (ok, _, stderr) = dump(
        "dcm2pnm",
        &["+op", sc_path.to_str().unwrap(), ppm.to_str().unwrap()],
    );
    assert!(ok, "dcm2pnm: {stderr}");
    let (w, h, rgb) = read_ppm(&std::fs::read(&ppm).unwrap());
    let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
    // The banner's warning line is drawn in amber on black.
    let amber = (0..w)
        .flat_map(|x| (0..30).map(move |y| (x, y)))
        .filter(|&(x, y)| px(x, y) == [255, 200, 0])
        .count();
    assert!(amber > 100, "no banner text ({amber} amber pixels)");
    // The heatmap colours the image: many pixels are not grey.
    let coloured = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = px(x, y);
            p[0].abs_diff(p[1]) > 40 || p[1].abs_diff(p[2]) > 40
        })
        .count();
    assert!(
        coloured > w * h / 100,
        "no heatmap ({coloured} coloured pixels)"
    );

    // Both file under the original patient and study, in new series.
    for file in [&sr_path, &sc_path] {
        let obj = dicom_object::open_file(file).unwrap();
        assert_eq!(
            attr(&obj, tags::STUDY_INSTANCE_UID).as_deref(),
            Some(study.as_str())
        );
        assert_eq!(
            attr(&obj, tags::PATIENT_ID),
            attr(&header, tags::PATIENT_ID)
        );
        assert_eq!(
            attr(&obj, tags::PATIENT_NAME),
            attr(&header, tags::PATIENT_NAME)
        );
        assert_eq!(
            attr(&obj, tags::ACCESSION_NUMBER),
            attr(&header, tags::ACCESSION_NUMBER)
        );
        assert_ne!(
            attr(&obj, tags::SERIES_INSTANCE_UID),
            attr(&header, tags::SERIES_INSTANCE_UID)
        );
        assert_ne!(
            attr(&obj, tags::SOP_INSTANCE_UID).as_deref(),
            Some(sop.as_str())
        );
        // IHE AIR: the algorithm in Contributing Equipment.
        let (ok, stdout, _) = dump(
            "dcmdump",
            &[
                "+P",
                "0018,a001",
                "+P",
                "0008,1090",
                "+P",
                "0018,1020",
                file.to_str().unwrap(),
            ],
        );
        assert!(ok);
        assert!(stdout.contains("cxr-reference-v1"), "{stdout}");
    }
    let (_, stdout, _) = dump("dcmdump", &[sc_path.to_str().unwrap()]);
    assert!(
        stdout.contains("(0028,0301) CS [YES]"),
        "Burned In Annotation:\n{stdout}"
    );
    assert!(stdout.contains("DERIVED\\SECONDARY"), "{stdout}");
    for file in [&sr_path, &sc_path] {
        dciodvfy(file);
    }

    // A lateral is not analysed: no SR (there are no findings), and a
    // Secondary Capture notice that says so, in its own series, under the
    // same study.
    let lateral = {
        let spec = cxr_synth::CaseSpec {
            view: ViewChoice::Lateral,
            ..cxr_synth::CaseSpec::small()
        };
        let case = cxr_synth::generate_case(&spec, 63, 2).unwrap();
        cxr_synth::dicom_bytes(&case, OutputSyntax::ExplicitLe).unwrap()
    };
    let lateral_header = read_object(&lateral, &IngestLimits::default()).unwrap();
    let lateral_outcome = pipeline
        .analyze(lateral, cxr_pipeline::Source::named("test"))
        .await
        .unwrap()
        .outcome;
    assert!(!lateral_outcome.analyzable());
    let input = ResultInput {
        source: &lateral_header,
        outcome: &lateral_outcome,
        station: "CXR_TRIAGE",
        now_ms: 0,
    };
    assert!(sr::build(&input).is_err());
    let notice = sc::build(&input).expect("a not-analysed notice");
    let notice_path = out.path().join("notice.dcm");
    std::fs::write(&notice_path, &notice.file).unwrap();
    let obj = dicom_object::open_file(&notice_path).unwrap();
    assert_eq!(
        attr(&obj, tags::STUDY_INSTANCE_UID),
        attr(&lateral_header, tags::STUDY_INSTANCE_UID)
    );
    assert_eq!(
        attr(&obj, tags::SERIES_NUMBER).as_deref(),
        Some(sc::NOTICE_SERIES_NUMBER)
    );
    assert_ne!(
        attr(&obj, tags::SERIES_INSTANCE_UID),
        attr(
            &dicom_object::open_file(&sc_path).unwrap(),
            tags::SERIES_INSTANCE_UID
        )
    );
    let comments = attr(&obj, tags::IMAGE_COMMENTS).unwrap_or_default();
    assert!(comments.contains("NOT analysed"), "{comments}");
    dciodvfy(&notice_path);
    let ppm = out.path().join("notice.ppm");
    let (ok, _, stderr) = dump(
        "dcm2pnm",
        &["+op", notice_path.to_str().unwrap(), ppm.to_str().unwrap()],
    );
    assert!(ok, "dcm2pnm: {stderr}");
    let (w, h, rgb) = read_ppm(&std::fs::read(&ppm).unwrap());
    let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
    // Two amber warning lines on top, the lateral film below, no heatmap.
    let amber_rows = (0..h.min(60))
        .filter(|&y| (0..w).any(|x| px(x, y) == [255, 200, 0]))
        .count();
    assert!(amber_rows >= 10, "warning banner: {amber_rows} amber rows");
    let grey_nonblack = (h / 3..2 * h / 3)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = px(x, y);
            p[0] == p[1] && p[1] == p[2] && p[0] > 30
        })
        .count();
    assert!(grey_nonblack > w * h / 20, "the film is not shown");
    let coloured = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = px(x, y);
            p[0].abs_diff(p[1]) > 40 || p[1].abs_diff(p[2]) > 40
        })
        .count();
    // Only the banner text is coloured.
    assert!(
        coloured < w * 80,
        "{coloured} coloured pixels: a heatmap on a notice?"
    );
}
