//! The results file of `score`: one row per image, as CSV or JSON Lines
//! (chosen by the extension: `.jsonl` / `.json` → JSON Lines, otherwise
//! CSV). Both hold the same fields; CSV flattens the per-finding ones into
//! `FINDING_score`, `FINDING_raw_score` and `FINDING@OPERATING_POINT`
//! (1 = positive) columns.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One scored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The file, as found by the walk.
    pub file: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// Accession Number.
    pub accession_number: String,
    /// Whether the AI read the image.
    pub analyzable: bool,
    /// Why not (a code such as `lateral_view`, `decode_failed`).
    pub reason_code: String,
    /// Why not, in words.
    pub reason: String,
    /// CRITICAL / URGENT / NOT_ANALYZED / ROUTINE.
    pub priority: String,
    /// Calibrated score per finding.
    pub scores: BTreeMap<String, f32>,
    /// Raw model score per finding.
    pub raw_scores: BTreeMap<String, f32>,
    /// Verdict per finding and operating point.
    pub positive: BTreeMap<String, BTreeMap<String, bool>>,
    /// Threshold per finding and operating point (on the calibrated score),
    /// as the models had it for this run.
    #[serde(default)]
    pub thresholds: BTreeMap<String, BTreeMap<String, f64>>,
    /// `id version` of each model, `;`-separated (resume compares it).
    pub models: String,
    /// Execution provider(s).
    pub provider: String,
    /// Decode, ms.
    pub decode_ms: f64,
    /// Preprocess, ms.
    pub preprocess_ms: f64,
    /// Waiting in the batch queue, ms.
    pub queue_ms: f64,
    /// Inference, ms.
    pub inference_ms: f64,
    /// Whole image, ms.
    pub total_ms: f64,
}

/// Whether `path` is written as JSON Lines (else CSV).
pub fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json" | "ndjson")
    )
}

const FIXED: [&str; 9] = [
    "file",
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "accession_number",
    "analyzable",
    "reason_code",
    "reason",
    "priority",
];
const TAIL: [&str; 7] = [
    "models",
    "provider",
    "decode_ms",
    "preprocess_ms",
    "queue_ms",
    "inference_ms",
    "total_ms",
];

/// CSV columns for findings with these operating points.
pub fn csv_header(findings: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut h: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    for (finding, ops) in findings {
        h.push(format!("{finding}_score"));
        h.push(format!("{finding}_raw_score"));
        for op in ops {
            h.push(format!("{finding}@{op}"));
        }
        for op in ops {
            h.push(format!("{finding}@{op}_threshold"));
        }
    }
    h.extend(TAIL.iter().map(|s| s.to_string()));
    h
}

/// Writes rows, CSV or JSON Lines.
pub struct ResultWriter {
    out: Box<dyn Write + Send>,
    csv: Option<Vec<String>>,
}

impl ResultWriter {
    /// A writer appending to `out`; for CSV, `header` gives the columns and
    /// is written first when `write_header`.
    pub fn new(
        out: Box<dyn Write + Send>,
        jsonl: bool,
        header: Vec<String>,
        write_header: bool,
    ) -> std::io::Result<ResultWriter> {
        let mut w = ResultWriter { out, csv: None };
        if !jsonl {
            if write_header {
                w.out.write_all(&csv_line(&header)?)?;
            }
            w.csv = Some(header);
        }
        Ok(w)
    }

    /// Writes one row (and flushes it: a killed run keeps what it wrote).
    pub fn write(&mut self, row: &ResultRow) -> std::io::Result<()> {
        match &mut self.csv {
            None => {
                let mut line = serde_json::to_vec(row).map_err(std::io::Error::other)?;
                line.push(b'\n');
                self.out.write_all(&line)?;
            }
            Some(header) => {
                let record: Vec<String> = header.iter().map(|h| csv_field(row, h)).collect();
                self.out.write_all(&csv_line(&record)?)?;
            }
        }
        self.out.flush()
    }
}

/// One CSV record, quoted where needed.
fn csv_line(fields: &[String]) -> std::io::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(fields).map_err(std::io::Error::other)?;
    w.into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

fn csv_field(row: &ResultRow, column: &str) -> String {
    match column {
        "file" => row.file.clone(),
        "sop_instance_uid" => row.sop_instance_uid.clone(),
        "study_instance_uid" => row.study_instance_uid.clone(),
        "series_instance_uid" => row.series_instance_uid.clone(),
        "accession_number" => row.accession_number.clone(),
        "analyzable" => u8::from(row.analyzable).to_string(),
        "reason_code" => row.reason_code.clone(),
        "reason" => row.reason.clone(),
        "priority" => row.priority.clone(),
        "models" => row.models.clone(),
        "provider" => row.provider.clone(),
        "decode_ms" => format!("{:.2}", row.decode_ms),
        "preprocess_ms" => format!("{:.2}", row.preprocess_ms),
        "queue_ms" => format!("{:.2}", row.queue_ms),
        "inference_ms" => format!("{:.2}", row.inference_ms),
        "total_ms" => format!("{:.2}", row.total_ms),
        other => {
            if let Some(f) = other.strip_suffix("_raw_score") {
                row.raw_scores
                    .get(f)
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default()
            } else if let Some(f) = other.strip_suffix("_score") {
                row.scores
                    .get(f)
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default()
            } else if let Some((f, op)) = other
                .strip_suffix("_threshold")
                .and_then(|c| c.split_once('@'))
            {
                row.thresholds
                    .get(f)
                    .and_then(|m| m.get(op))
                    .map(|t| format!("{t}"))
                    .unwrap_or_default()
            } else if let Some((f, op)) = other.split_once('@') {
                row.positive
                    .get(f)
                    .and_then(|m| m.get(op))
                    .map(|p| u8::from(*p).to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        }
    }
}

/// Reads the results files of one campaign — one file, or the shard files
/// of `score --shard I/N` run on several machines (the merge step) — as one
/// list, in the order given. A SOP Instance UID in two files (a shard
/// scored twice, or overlapping inputs) is an error rather than counted
/// twice.
pub fn read_all_results(paths: &[PathBuf]) -> anyhow::Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (n, path) in paths.iter().enumerate() {
        for row in read_results(path)? {
            if !row.sop_instance_uid.is_empty() {
                if let Some(first) = seen.insert(row.sop_instance_uid.clone(), n) {
                    anyhow::bail!(
                        "{} and {} both hold a result for one image (SOP Instance UID {}): \
                         shards must not overlap",
                        paths[first].display(),
                        path.display(),
                        row.sop_instance_uid
                    );
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The results files named for a page or a file header: `a.csv`, or
/// `a.csv + b.csv + …`.
pub fn describe_results(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Reads a results file written by `score` (CSV or JSON Lines).
pub fn read_results(path: &Path) -> anyhow::Result<Vec<ResultRow>> {
    use anyhow::Context;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if is_jsonl(path) {
        let mut rows = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            // A row cut short by a killed run is not a result (it is
            // scored again on resume).
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    tracing::warn!(file = %path.display(), line = i + 1, error = %e, "unreadable row skipped");
                }
            }
        }
        return Ok(rows);
    }
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    for required in ["file", "sop_instance_uid", "analyzable", "models"] {
        if !header.iter().any(|h| h == required) {
            anyhow::bail!(
                "{}: no `{required}` column: not a results file of `cxr-triage score`",
                path.display()
            );
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // A row cut short by a killed run is not a result.
        let Ok(record) = record else { continue };
        if record.len() != header.len() {
            continue;
        }
        let mut row = ResultRow {
            file: String::new(),
            sop_instance_uid: String::new(),
            study_instance_uid: String::new(),
            series_instance_uid: String::new(),
            accession_number: String::new(),
            analyzable: false,
            reason_code: String::new(),
            reason: String::new(),
            priority: String::new(),
            scores: BTreeMap::new(),
            raw_scores: BTreeMap::new(),
            positive: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            models: String::new(),
            provider: String::new(),
            decode_ms: 0.0,
            preprocess_ms: 0.0,
            queue_ms: 0.0,
            inference_ms: 0.0,
            total_ms: 0.0,
        };
        for (h, v) in header.iter().zip(record.iter()) {
            let num = || v.parse::<f64>().unwrap_or(0.0);
            match h.as_str() {
                "file" => row.file = v.into(),
                "sop_instance_uid" => row.sop_instance_uid = v.into(),
                "study_instance_uid" => row.study_instance_uid = v.into(),
                "series_instance_uid" => row.series_instance_uid = v.into(),
                "accession_number" => row.accession_number = v.into(),
                "analyzable" => row.analyzable = v == "1" || v == "true",
                "reason_code" => row.reason_code = v.into(),
                "reason" => row.reason = v.into(),
                "priority" => row.priority = v.into(),
                "models" => row.models = v.into(),
                "provider" => row.provider = v.into(),
                "decode_ms" => row.decode_ms = num(),
                "preprocess_ms" => row.preprocess_ms = num(),
                "queue_ms" => row.queue_ms = num(),
                "inference_ms" => row.inference_ms = num(),
                "total_ms" => row.total_ms = num(),
                other => {
                    if v.is_empty() {
                        continue;
                    }
                    if let Some(f) = other.strip_suffix("_raw_score") {
                        row.raw_scores.insert(f.into(), num() as f32);
                    } else if let Some(f) = other.strip_suffix("_score") {
                        row.scores.insert(f.into(), num() as f32);
                    } else if let Some((f, op)) = other
                        .strip_suffix("_threshold")
                        .and_then(|c| c.split_once('@'))
                    {
                        row.thresholds
                            .entry(f.into())
                            .or_default()
                            .insert(op.into(), num());
                    } else if let Some((f, op)) = other.split_once('@') {
                        row.positive
                            .entry(f.into())
                            .or_default()
                            .insert(op.into(), v == "1");
                    } else {
                        anyhow::bail!(
                            "{}: row {}: unknown column `{other}`",
                            path.display(),
                            i + 2
                        );
                    }
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
