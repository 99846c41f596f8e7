//! `cxr-triage score`: the command line of a campaign rescoring
//! ([`cxr_campaign::score`]); models, provider and priority policy come
//! from the service's configuration, as for `serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use cxr_campaign::{ScoreOptions, Shard};
use cxr_model::ProviderChoice;

use crate::config::ServiceConfig;

/// Options of `cxr-triage score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// DICOM files and folders to score.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Walk folders recursively (otherwise their top level only).
    #[arg(long, short)]
    pub recursive: bool,
    /// Results file: `.csv`, or `.jsonl` for JSON Lines. An existing one is
    /// resumed: images already in it, scored by the same model versions, are
    /// skipped.
    #[arg(long, short, default_value = "results.csv")]
    pub out: PathBuf,
    /// Also file every result in this worklist database (the service's
    /// SQLite store, e.g. `data/worklist.sqlite`).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Score only shard I of N (`I/N`, 0 ≤ I < N), chosen by a hash of the
    /// SOP Instance UID: N machines (or the pods of an indexed Job) split a
    /// campaign without coordination.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Configuration file (the service's: models, provider, batching, site
    /// operating points, priority policy).
    #[arg(long, short, env = "CXR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Models directory (overrides the configuration).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Execution provider (overrides the configuration).
    #[arg(long)]
    pub provider: Option<ProviderChoice>,
    /// Decode/preprocess workers (default: one more than the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write a heatmap overlay PNG per analysed image and finding here
    /// (`SOP_FINDING.png`).
    #[arg(long)]
    pub heatmaps: Option<PathBuf>,
    /// Progress on stderr: a live line on a terminal, a line every 10 s
    /// otherwise; `--quiet` turns it off.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `score`; the exit status is 1 when some file failed.
pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(m) = args.models {
        config.engine.models_dir = m;
    }
    if let Some(p) = args.provider {
        config.engine.session.provider = p;
    }
    cxr_pipeline::jpeg2000::install(&config.decode)?;
    let summary = cxr_campaign::score(&ScoreOptions {
        paths: args.paths,
        recursive: args.recursive,
        out: args.out,
        db: args.db,
        shard: args.shard,
        engine: config.engine,
        priority: config.priority,
        jpeg2000_reduce: config.decode.jpeg2000_reduce,
        workers: args.workers,
        heatmaps: args.heatmaps,
        quiet: args.quiet,
    })?;
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
