//! `cxr-triage inspect`: decode files and say what is in them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{json, Value};

use cxr_ingest::{self as dicom, IngestError, IngestLimits, Radiograph};

/// Options of `cxr-triage inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// DICOM files to inspect.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file (JSON Lines) instead of a summary line.
    #[arg(long, env = "CXR_INSPECT_JSON")]
    pub json: bool,
    /// Include patient attributes (ID, name, sex, age). Off by default so that
    /// output can be pasted into a ticket or a log without leaking them.
    #[arg(long, env = "CXR_INSPECT_PHI")]
    pub phi: bool,
    /// Largest input file accepted, in MiB.
    #[arg(long, env = "CXR_MAX_INPUT_MIB", default_value_t = 512)]
    pub max_input_mib: u64,
    /// Largest accepted Rows or Columns.
    #[arg(long, env = "CXR_MAX_SIDE", default_value_t = IngestLimits::default().max_side)]
    pub max_side: u32,
}

/// Inspects every file; a failure is reported and the next file is read.
/// Exits 1 when any file failed to decode.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let limits = IngestLimits {
        max_input_bytes: args.max_input_mib << 20,
        max_side: args.max_side,
        ..IngestLimits::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for path in &args.files {
        let started = Instant::now();
        let result = dicom::read_file(path, &limits);
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
        let line = match &result {
            Ok(radiograph) => {
                let record = report(path, radiograph, decode_ms, args.phi);
                if args.json {
                    record.to_string()
                } else {
                    summary(path, radiograph, decode_ms)
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("{}: {:?}: {error}", path.display(), error.kind());
                if args.json {
                    error_report(path, error).to_string()
                } else {
                    format!("{}\tERROR\t{error}", path.display())
                }
            }
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn transfer_syntax_name(uid: &str) -> &'static str {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name())
        .unwrap_or("unknown")
}

/// The JSON record of one decoded file.
fn report(path: &Path, r: &Radiograph, decode_ms: f64, phi: bool) -> Value {
    let m = &r.meta;
    let p = &r.pixel_module;
    let mut record = json!({
        "file": path.display().to_string(),
        "sop_class_uid": m.sop_class_uid,
        "sop_instance_uid": m.sop_instance_uid,
        "study_instance_uid": m.study_instance_uid,
        "series_instance_uid": m.series_instance_uid,
        "accession_number": m.accession_number,
        "modality": m.modality,
        "view_position": m.view_position,
        "laterality": m.laterality,
        "body_part_examined": m.body_part_examined,
        "pixel_spacing_mm": m.pixel_spacing_mm,
        "pixel_spacing_source": m.pixel_spacing_source,
        "study_date": m.study_date,
        "study_time": m.study_time,
        "manufacturer": m.manufacturer,
        "presentation_intent": m.presentation_intent,
        "rows": p.rows,
        "columns": p.columns,
        "photometric_interpretation": p.photometric,
        "bits_allocated": p.bits_allocated,
        "bits_stored": p.bits_stored,
        "high_bit": p.high_bit,
        "pixel_representation": u8::from(p.signed),
        "number_of_frames": p.frames,
        "frame_decoded": r.frame.decoded,
        "transfer_syntax": r.transfer_syntax,
        "transfer_syntax_name": transfer_syntax_name(&r.transfer_syntax),
        "analyzable": r.assessment.analyzable,
        "reason": r.assessment.reason.as_ref().map(|x| x.to_string()),
        "reason_code": r.assessment.reason.as_ref().map(|x| x.code()),
        "notes": r.assessment.notes,
        "presentation": r.presentation,
        "decode_ms": (decode_ms * 1000.0).round() / 1000.0,
        "pixel_sha256": r.stored.sha256_hex(),
    });
    if phi {
        record["patient"] = json!(r.patient);
    }
    record
}

fn error_report(path: &Path, error: &IngestError) -> Value {
    json!({
        "file": path.display().to_string(),
        "error": { "kind": error.kind(), "message": error.to_string() },
    })
}

/// One human-readable line.
fn summary(path: &Path, r: &Radiograph, decode_ms: f64) -> String {
    let verdict = match &r.assessment.reason {
        None => "analyzable".to_string(),
        Some(reason) => format!("NOT ANALYZABLE: {reason}"),
    };
    format!(
        "{}\t{} {} {}x{} {}-bit {}\t{}\t{:.1} ms\t{}",
        path.display(),
        r.meta.modality.as_deref().unwrap_or("?"),
        r.meta.view_position.as_deref().unwrap_or("?"),
        r.pixel_module.columns,
        r.pixel_module.rows,
        r.pixel_module.bits_stored,
        r.pixel_module.photometric,
        transfer_syntax_name(&r.transfer_syntax),
        decode_ms,
        verdict
    )
}
