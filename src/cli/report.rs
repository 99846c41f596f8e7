//! `cxr-triage report`: the command line of [`ReportOptions`].

use clap::Args;
use std::path::PathBuf;

use cxr_campaign::report::ReportOptions;

/// Options of `cxr-triage report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results of `cxr-triage score` (`.csv` or `.jsonl`): one file, or the
    /// shard files of a campaign split with `score --shard I/N` (merged;
    /// an image in two files is an error).
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// The JSON of `cxr-triage evaluate --json` (adds ROC curves and metrics).
    #[arg(long)]
    pub evaluation: Option<PathBuf>,
    /// The HTML page to write.
    #[arg(long, short, default_value = "report.html")]
    pub out: PathBuf,
    /// Title of the page.
    #[arg(long, default_value = "cxr-triage campaign report")]
    pub title: String,
}

impl ReportArgs {
    /// The library's options.
    pub fn options(self) -> ReportOptions {
        ReportOptions {
            results: self.results,
            evaluation: self.evaluation,
            out: self.out,
            title: self.title,
        }
    }
}
