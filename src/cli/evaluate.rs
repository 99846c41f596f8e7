//! `cxr-triage evaluate`: the command line of [`EvaluateOptions`].

use clap::Args;
use std::path::PathBuf;

use cxr_campaign::evaluate::EvaluateOptions;

/// Options of `cxr-triage evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Results of `cxr-triage score` (`.csv` or `.jsonl`): one file, or the
    /// shard files of a campaign split with `score --shard I/N` (merged;
    /// an image in two files is an error).
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Ground truth CSV: a `sop_instance_uid` or `file` column, and a 0/1
    /// column per finding (`tuberculosis`, `malignant_nodule`), as `cxr-triage
    /// synth` writes `labels.csv`. Rows match by SOP Instance UID when the
    /// truth has that column; otherwise by path, or by bare file name when
    /// only one result has that name.
    #[arg(long)]
    pub truth: PathBuf,
    /// Sensitivity the chosen threshold must reach.
    #[arg(long, default_value_t = 0.90)]
    pub target_sensitivity: f64,
    /// Specificity the chosen threshold should keep (reported as met or not).
    #[arg(long, default_value_t = 0.70)]
    pub min_specificity: f64,
    /// Bootstrap resamples for the AUC's confidence interval.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 20261122)]
    pub seed: u64,
    /// Also write the evaluation as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the chosen thresholds as a site operating-point file (TOML for
    /// `serve --config` / `score --config`).
    #[arg(long)]
    pub write_operating_points: Option<PathBuf>,
    /// Name of the operating point written.
    #[arg(long, default_value = "site")]
    pub operating_point_name: String,
}

impl EvaluateArgs {
    /// The library's options.
    pub fn options(self) -> EvaluateOptions {
        EvaluateOptions {
            results: self.results,
            truth: self.truth,
            target_sensitivity: self.target_sensitivity,
            min_specificity: self.min_specificity,
            bootstrap: self.bootstrap,
            seed: self.seed,
            json: self.json,
            write_operating_points: self.write_operating_points,
            operating_point_name: self.operating_point_name,
        }
    }
}
