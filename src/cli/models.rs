//! `cxr-triage models check [DIR]`: validate every manifest against its ONNX
//! graph, warm each model up on the chosen execution provider, and print
//! what would serve.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use cxr_model::{
    ExecutionProvider, FindingId, HeatmapSource, ModelSession, OcclusionSettings, ProviderChoice,
    SessionSettings,
};

/// `cxr-triage models ...`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do with the models.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// Model subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Validate manifests against their graphs, warm up, print a table.
    /// Exits non-zero, naming the file and field, on the first bad model.
    Check(CheckArgs),
}

/// Options of `models check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Models directory (manifests `*.toml` beside their `.onnx`).
    #[arg(value_name = "DIR", env = "CXR_MODELS_DIR", default_value = "models")]
    pub dir: PathBuf,
    /// Execution provider to try (falls back to the CPU, with the cause).
    #[arg(long, env = "CXR_PROVIDER", default_value = "auto")]
    pub provider: ProviderChoice,
    /// Use each model's fp16 variant (`model.fp16_file`) on CUDA/TensorRT.
    #[arg(long)]
    pub fp16: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `models ...`.
pub fn run(args: &ModelsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ModelsCommand::Check(check) => run_check(check),
    }
}

fn run_check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = SessionSettings {
        provider: args.provider,
        fp16: args.fp16,
        ..SessionSettings::default()
    };
    let manifests = match cxr_model::load_manifests(&args.dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut rows = Vec::new();
    for (path, manifest) in manifests {
        match ModelSession::open(&path, manifest, &settings) {
            Ok(session) => rows.push(Row::of(&session)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:<8} {:<17} {:<44} {:<10} {:<8} {:>10}",
        "MODEL",
        "VERSION",
        "FINDING",
        "OPERATING POINTS (default*)",
        "PROVIDER",
        "HEATMAP",
        "WARM-UP"
    );
    for row in &rows {
        for (i, finding) in row.findings.iter().enumerate() {
            let ops: Vec<String> = finding
                .operating_points
                .iter()
                .map(|(n, t)| format!("{n}={t:.3}{}", if *n == finding.default { "*" } else { "" }))
                .collect();
            if i == 0 {
                println!(
                    "{:<22} {:<8} {:<17} {:<44} {:<10} {:<8} {:>8.1}ms",
                    row.model,
                    row.version,
                    finding.finding,
                    ops.join(" "),
                    format!("{}{}", row.provider, if row.fp16 { "+fp16" } else { "" }),
                    row.heatmap,
                    row.warmup_ms
                );
            } else {
                println!(
                    "{:<22} {:<8} {:<17} {}",
                    "",
                    "",
                    finding.finding,
                    ops.join(" ")
                );
            }
        }
        if let Some(cause) = &row.fallback_cause {
            println!("  {} not used: {cause}", requested(args.provider));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of the check table.
#[derive(Debug, Serialize)]
struct Row {
    model: String,
    version: String,
    manifest: PathBuf,
    provider: ExecutionProvider,
    fp16: bool,
    io_binding: bool,
    fallback_cause: Option<String>,
    heatmap: HeatmapSource,
    warmup_ms: f64,
    findings: Vec<RowFinding>,
}

#[derive(Debug, Serialize)]
struct RowFinding {
    finding: FindingId,
    labels: Vec<String>,
    operating_points: BTreeMap<String, f64>,
    default: String,
}

impl Row {
    fn of(session: &ModelSession) -> Row {
        let m = &session.manifest;
        Row {
            model: m.model.id.clone(),
            version: m.model.version.clone(),
            manifest: session.manifest_path.clone(),
            provider: session.provider,
            fp16: session.fp16,
            io_binding: session.io_binding(),
            fallback_cause: session.fallback_cause.clone(),
            heatmap: if session.heatmap_shape.is_some() {
                HeatmapSource::Model
            } else if OcclusionSettings::default().enabled_for(session.provider) {
                HeatmapSource::Occlusion
            } else {
                HeatmapSource::None
            },
            warmup_ms: session.warmup.as_secs_f64() * 1e3,
            findings: m
                .findings
                .iter()
                .map(|(kind, f)| RowFinding {
                    finding: kind.clone(),
                    labels: f.labels.clone(),
                    operating_points: f.operating_points.clone(),
                    default: f.default_operating_point.clone(),
                })
                .collect(),
        }
    }
}

fn requested(choice: ProviderChoice) -> &'static str {
    match choice {
        ProviderChoice::Auto => "GPU",
        ProviderChoice::Tensorrt => "TensorRT",
        ProviderChoice::Cuda => "CUDA",
        ProviderChoice::Cpu => "CPU",
    }
}
