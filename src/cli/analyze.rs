//! `cxr-triage analyze`: decode DICOM files and score them with the models,
//! without the service — one line (or JSON object) per file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rayon::prelude::*;
use serde_json::{json, Value};

use std::sync::Arc;

use cxr_findings::PriorityPolicy;
use cxr_ingest::IngestLimits;
use cxr_model::{
    Engine, EngineConfig, OcclusionMode, OcclusionSettings, ProviderChoice, SessionSettings,
};
use cxr_pipeline::{Analyzer, NotAnalyzed, Outcome};

/// Options of `cxr-triage analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// DICOM files to analyze.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Models directory.
    #[arg(long, env = "CXR_MODELS_DIR", default_value = "models")]
    pub models: PathBuf,
    /// Execution provider to try (falls back to the CPU, with the cause).
    #[arg(long, env = "CXR_PROVIDER", default_value = "auto")]
    pub provider: ProviderChoice,
    /// Occlusion maps for models without a heatmap output: auto (GPU only),
    /// on, off.
    #[arg(long, env = "CXR_OCCLUSION", default_value = "auto")]
    pub occlusion: OcclusionMode,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, env = "CXR_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Print one JSON object per file (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// With --json, include each finding's heatmap grid and geometry.
    #[arg(long, requires = "json")]
    pub heatmaps: bool,
}

/// Analyzes every file; exits 1 when any file could not be read or scored
/// (the others are still reported).
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let config = EngineConfig {
        models_dir: args.models.clone(),
        session: SessionSettings {
            provider: args.provider,
            intra_threads: args.intra_threads,
            ..SessionSettings::default()
        },
        occlusion: OcclusionSettings {
            mode: args.occlusion,
            ..OcclusionSettings::default()
        },
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::load(&config)?);
    let analyzer = Analyzer::new(engine, PriorityPolicy::default(), IngestLimits::default());
    let records: Vec<(Value, String, bool)> = args
        .files
        .par_iter()
        .map(|path| analyze_one(&analyzer, path, args.heatmaps))
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for (record, line, ok) in records {
        failed |= !ok;
        if args.json {
            writeln!(out, "{record}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One file through the shared analysis path; (JSON record, text line,
/// whether it succeeded). An image the gate set aside is a success (it is
/// reported); undecodable pixels or a failed inference are not.
fn analyze_one(analyzer: &Analyzer, path: &Path, heatmaps: bool) -> (Value, String, bool) {
    let name = path.display().to_string();
    let outcome = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            analyzer
                .analyze_blocking(&bytes, false)
                .map_err(|e| e.to_string())
        });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let record = json!({"file": name, "error": {"kind": "unreadable", "message": e}});
            return (record, format!("{name}\tERROR\t{e}"), false);
        }
    };
    let mut record = json!({
        "file": name,
        "sop_instance_uid": outcome.identity.sop_instance_uid,
        "study_instance_uid": outcome.identity.study_instance_uid,
        "width": outcome.image_size.map(|s| s.0),
        "height": outcome.image_size.map(|s| s.1),
        "decode_ms": outcome.timings.decode_ms,
        "analyzable": outcome.analyzable(),
        "priority": outcome.image_priority.priority.as_str(),
    });
    match &outcome.reason {
        Some(reason @ NotAnalyzed::Gate(_)) => {
            record["reason"] = json!(reason.to_string());
            record["reason_code"] = json!(reason.code());
            (record, format!("{name}\tNOT ANALYZABLE\t{reason}"), true)
        }
        Some(reason) => {
            record["error"] = json!({"kind": reason.code(), "message": reason.to_string()});
            (record, format!("{name}\tERROR\t{reason}"), false)
        }
        None => {
            record["result"] = analysis_json(&outcome, heatmaps);
            (record, summary(&name, &outcome), true)
        }
    }
}

fn analysis_json(outcome: &Outcome, heatmaps: bool) -> Value {
    let mut value = json!({
        "findings": outcome.findings,
        "provenance": outcome.provenance,
        "timings": outcome.timings.engine,
        "priority": outcome.image_priority,
    });
    if let Some(findings) = value["findings"].as_array_mut() {
        for (f, result) in findings.iter_mut().zip(&outcome.findings) {
            match (&result.heatmap, heatmaps) {
                (Some(h), false) => f["heatmap"] = json!({"source": h.source, "peak": h.peak()}),
                (Some(h), true) => f["heatmap"]["peak"] = json!(h.peak()),
                (None, _) => f["heatmap"] = Value::Null,
            }
        }
    }
    value
}

fn summary(name: &str, analysis: &Outcome) -> String {
    let mut line = name.to_string();
    for f in &analysis.findings {
        line.push_str(&format!(
            "\t{} {:.3} {} ({} ≥ {:.3})",
            f.finding,
            f.score,
            if f.positive { "POSITIVE" } else { "negative" },
            f.operating_point,
            f.threshold
        ));
        if let Some(peak) = f.heatmap.as_ref().and_then(|h| h.peak()) {
            line.push_str(&format!(" peak ({:.0}, {:.0})", peak.x, peak.y));
        }
    }
    if let Some(p) = analysis.provenance.first() {
        line.push_str(&format!(
            "\t[{} {} on {}]",
            p.model_id, p.model_version, p.provider
        ));
    }
    line
}
