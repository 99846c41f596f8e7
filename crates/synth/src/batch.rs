//! Many cases at once: parallel generation and writing with rayon, and the
//! ground-truth sidecars `ground_truth.jsonl` and `labels.csv`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::case::{Finding, Labels, SyntheticCase};
use super::spec::{CaseSpec, Modality, Photometric, View};
use super::{generate_case, write_dicom};

/// One line of `ground_truth.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TruthRecord {
    /// File name inside the output directory.
    pub file: String,
    /// Case index (the number in the file name).
    pub index: u64,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// View Position.
    pub view: View,
    /// Modality / IOD.
    pub modality: Modality,
    /// Photometric Interpretation.
    pub photometric: Photometric,
    /// Transfer Syntax UID of the file.
    pub transfer_syntax: String,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Square pixel spacing, mm.
    pub pixel_spacing_mm: f64,
    /// Bits Stored.
    pub bits_stored: u8,
    /// Pixel Representation 1.
    pub signed: bool,
    /// Findings with boxes `[x0, y0, x1, y1]` (half-open, stored-image pixels).
    pub findings: Vec<Finding>,
    /// Image-level labels.
    pub labels: Labels,
}

impl TruthRecord {
    /// The record of `case` written as `file` with Transfer Syntax `ts_uid`.
    pub fn new(case: &SyntheticCase, file: String, ts_uid: &str) -> TruthRecord {
        let m = &case.meta;
        TruthRecord {
            file,
            index: m.index,
            sop_instance_uid: m.study.sop_instance_uid.clone(),
            study_instance_uid: m.study.study_uid.clone(),
            view: m.view,
            modality: m.modality,
            photometric: m.photometric,
            transfer_syntax: ts_uid.to_string(),
            width: m.width,
            height: m.height,
            pixel_spacing_mm: m.pixel_spacing_mm,
            bits_stored: m.bits_stored,
            signed: m.signed,
            findings: case.truth.findings.clone(),
            labels: case.truth.labels,
        }
    }
}

/// The file name of case `index`: six digits at least, `.dcm`.
pub fn file_name(index: u64) -> String {
    format!("{index:06}.dcm")
}

/// Generates cases `first .. first + count` in parallel on the current rayon
/// pool, writes each to `out/NNNNNN.dcm`, and returns the truth records in
/// index order. Stops at the first error.
pub fn generate_batch(
    spec: &CaseSpec,
    seed: u64,
    first: u64,
    count: u64,
    out: &Path,
) -> anyhow::Result<Vec<TruthRecord>> {
    let done = AtomicU64::new(0);
    let step = (count / 10).max(100);
    (first..first.saturating_add(count))
        .into_par_iter()
        .map(|index| {
            let case = generate_case(spec, seed, index)?;
            let file = file_name(index);
            write_dicom(&case, spec.syntax, &out.join(&file))?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(step) {
                tracing::info!("synth: {n}/{count} images written");
            }
            Ok(TruthRecord::new(&case, file, spec.syntax.uid()))
        })
        .collect()
}

/// Writes `ground_truth.jsonl` (one JSON object per image) and `labels.csv`
/// (`sop_instance_uid,file,tuberculosis,malignant_nodule`, labels as 0/1).
pub fn write_sidecars(out: &Path, records: &[TruthRecord]) -> anyhow::Result<()> {
    let mut jsonl = Vec::new();
    for r in records {
        serde_json::to_writer(&mut jsonl, r)?;
        jsonl.push(b'\n');
    }
    std::fs::write(out.join("ground_truth.jsonl"), jsonl)?;
    let mut csv = Vec::new();
    writeln!(csv, "sop_instance_uid,file,tuberculosis,malignant_nodule")?;
    for r in records {
        let (tb, mal) = (
            u8::from(r.labels.tuberculosis),
            u8::from(r.labels.malignant_nodule),
        );
        writeln!(csv, "{},{},{tb},{mal}", r.sop_instance_uid, r.file)?;
    }
    std::fs::write(out.join("labels.csv"), csv)?;
    Ok(())
}
