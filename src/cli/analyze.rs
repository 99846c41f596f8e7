//! `cxr-triage analyze`: decode DICOM files and score them with the models,
//! without the service — one line (or JSON object) per file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::dicom::{self, IngestLimits};
use crate::engine::{
    Analysis, Engine, EngineConfig, OcclusionMode, OcclusionSettings, ProviderChoice,
    SessionSettings,
};

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
    #[arg(long, value_enum, env = "CXR_PROVIDER", default_value = "auto")]
    pub provider: ProviderChoice,
    /// Occlusion maps for models without a heatmap output: auto (GPU only),
    /// on, off.
    #[arg(long, env = "CXR_OCCLUSION", default_value = "auto", value_parser = parse_occlusion)]
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

fn parse_occlusion(s: &str) -> Result<OcclusionMode, String> {
    match s {
        "auto" => Ok(OcclusionMode::Auto),
        "on" => Ok(OcclusionMode::On),
        "off" => Ok(OcclusionMode::Off),
        other => Err(format!("`{other}`: use auto, on or off")),
    }
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
    let engine = Engine::load(&config)?;
    let limits = IngestLimits::default();
    let records: Vec<(Value, String, bool)> = args
        .files
        .par_iter()
        .map(|path| analyze_one(&engine, path, &limits, args.heatmaps))
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

fn analyze_one(
    engine: &Engine,
    path: &Path,
    limits: &IngestLimits,
    heatmaps: bool,
) -> (Value, String, bool) {
    let name = path.display().to_string();
    let started = Instant::now();
    let radiograph = match dicom::read_file(path, limits) {
        Ok(r) => r,
        Err(e) => {
            let record =
                json!({"file": name, "error": {"kind": e.kind(), "message": e.to_string()}});
            return (record, format!("{name}\tERROR\t{e}"), false);
        }
    };
    let decode_ms = started.elapsed().as_secs_f64() * 1e3;
    let identity = json!({
        "file": name,
        "sop_instance_uid": radiograph.meta.sop_instance_uid,
        "study_instance_uid": radiograph.meta.study_instance_uid,
        "width": radiograph.image.width,
        "height": radiograph.image.height,
        "decode_ms": decode_ms,
    });
    if let Some(reason) = &radiograph.assessment.reason {
        let mut record = identity;
        record["analyzable"] = json!(false);
        record["reason"] = json!(reason.to_string());
        record["reason_code"] = json!(reason.code());
        return (record, format!("{name}\tNOT ANALYZABLE\t{reason}"), true);
    }
    match engine.analyze_blocking(&radiograph.image) {
        Ok(analysis) => {
            let line = summary(&name, &analysis);
            let mut record = identity;
            record["analyzable"] = json!(true);
            record["result"] = analysis_json(&analysis, heatmaps);
            (record, line, true)
        }
        Err(e) => {
            let mut record = identity;
            record["error"] = json!({"kind": "inference", "message": e.to_string()});
            (record, format!("{name}\tERROR\t{e}"), false)
        }
    }
}

fn analysis_json(analysis: &Analysis, heatmaps: bool) -> Value {
    let mut value = json!(analysis);
    if !heatmaps {
        if let Some(findings) = value["findings"].as_array_mut() {
            for (f, result) in findings.iter_mut().zip(&analysis.findings) {
                f["heatmap"] = match &result.heatmap {
                    Some(h) => json!({"source": h.source, "peak": h.peak()}),
                    None => Value::Null,
                };
            }
        }
    } else if let Some(findings) = value["findings"].as_array_mut() {
        for (f, result) in findings.iter_mut().zip(&analysis.findings) {
            if let Some(h) = &result.heatmap {
                f["heatmap"]["peak"] = json!(h.peak());
            }
        }
    }
    value
}

fn summary(name: &str, analysis: &Analysis) -> String {
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
