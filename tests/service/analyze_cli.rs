//! `cxr-triage analyze` through the shared analysis path, on the bundled
//! films: a frontal film is scored, a lateral is reported as set aside (and
//! is not a failure), bytes that are not DICOM and undecodable pixels are
//! failures with their reason, and the exit status says so.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn analyze(files: &[PathBuf], json: bool) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxr-triage"));
    c.env("CXR_LOG", "error")
        .arg("analyze")
        .arg("--models")
        .arg(root().join("models"))
        .args(["--provider", "cpu"])
        .args(files);
    if json {
        c.arg("--json");
    }
    let out = c.output().expect("running cxr-triage analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn analyze_scores_frontal_films_sets_laterals_aside_and_reports_failures() {
    let bundled = root().join("test-images/bundled");
    let frontal = bundled.join("synthetic-dx-pa-nodule.dcm");
    let lateral = bundled.join("synthetic-cr-lateral.dcm");

    let (ok, text) = analyze(&[frontal.clone(), lateral.clone()], false);
    assert!(
        ok,
        "a scored film and a set-aside lateral are both successes:\n{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("tuberculosis") && lines[0].contains("malignant_nodule"));
    assert!(lines[0].contains("cxr-reference-v1"), "{}", lines[0]);
    assert!(lines[1].contains("NOT ANALYZABLE") && lines[1].contains("lateral"));

    let (_, json) = analyze(std::slice::from_ref(&frontal), true);
    let record: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(record["analyzable"], true);
    assert!(record["width"].as_u64().unwrap() > 0 && record["height"].as_u64().unwrap() > 0);
    assert_eq!(
        record["priority"], "CRITICAL",
        "the bundled nodule film: {record}"
    );
    let findings = record["result"]["findings"].as_array().unwrap();
    assert_eq!(findings[1]["finding"], "malignant_nodule");
    assert!(findings[1]["positive"].as_bool().unwrap());

    // Not DICOM, and a DICOM file whose pixels are cut short.
    let tmp = tempfile::tempdir().unwrap();
    let text_file = tmp.path().join("notes.txt");
    std::fs::write(&text_file, "not a radiograph").unwrap();
    let bytes = std::fs::read(&frontal).unwrap();
    let cut = tmp.path().join("cut.dcm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, text) = analyze(&[frontal, text_file, cut], false);
    assert!(!ok, "failures make the exit status 1:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(lines[1].contains("ERROR"), "{}", lines[1]);
    assert!(lines[2].contains("ERROR"), "{}", lines[2]);
}
