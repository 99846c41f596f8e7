//! Command-line interface: one subcommand per job, each a thin wrapper over
//! the library stage that does the work.

mod analyze;
mod audit;
mod bench;
mod evaluate;
mod health;
mod inspect;
mod models;
mod preprocess;
mod purge;
mod report;
mod results;
mod score;
mod serve;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use analyze::AnalyzeArgs;
pub use audit::AuditArgs;
pub use bench::BenchArgs;
pub use evaluate::EvaluateArgs;
pub use inspect::InspectArgs;
pub use models::ModelsArgs;
pub use preprocess::PreprocessArgs;
pub use purge::PurgeArgs;
pub use report::ReportArgs;
pub use results::ResultsArgs;
pub use score::ScoreArgs;
pub use serve::ServeArgs;

/// AI triage of chest radiographs (tuberculosis, malignant lung nodules).
#[derive(Debug, Parser)]
#[command(name = "cxr-triage", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `cxr_triage=debug`.
    /// Logs go to stderr and never carry patient identifiers.
    #[arg(long, global = true, env = "CXR_LOG")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC triage service: receive DICOM, score, keep the
    /// prioritised worklist (zero configuration: bundled models, ./data,
    /// localhost ports).
    Serve(ServeArgs),
    /// Decode DICOM files and report their metadata, the gate's verdict and a
    /// hash of the stored pixels (one line per file; JSON Lines with --json).
    Inspect(InspectArgs),
    /// Write the model-input tensors of DICOM files to a NumPy .npy file
    /// (what the engine feeds a model; for training and debugging).
    Preprocess(PreprocessArgs),
    /// Score DICOM files with the models (no service needed): findings,
    /// operating points, heatmap peaks; JSON Lines with --json.
    Analyze(AnalyzeArgs),
    /// Model repository tools: `models check [DIR]` validates manifests
    /// against their ONNX graphs and warms each model up.
    Models(ModelsArgs),
    /// Score a screening campaign: folders of DICOM files → one row per
    /// image (CSV or JSON Lines), resumable, shardable, optionally into the
    /// worklist database.
    Score(ScoreArgs),
    /// Evaluate results against ground truth: AUC with its 95 % interval,
    /// sensitivity/specificity/PPV/NPV per operating point, the threshold for
    /// a target sensitivity; can write site operating points.
    Evaluate(EvaluateArgs),
    /// Write a self-contained HTML report of results (and an evaluation):
    /// priorities, score histograms, ROC curves, slowest and unread images.
    Report(ReportArgs),
    /// Benchmark this machine: decode, preprocess, inference per batch size
    /// and the whole pipeline under N workers, on the provider it gets.
    Bench(BenchArgs),
    /// The audit trail of who read and changed what: `verify` checks its
    /// hash chain, `show` prints the latest records.
    Audit(AuditArgs),
    /// Ask a running service whether it is SERVING (models warm): exit 0
    /// if so (a container HEALTHCHECK, a script's probe).
    Health(health::HealthArgs),
    /// Apply the retention policy now (`serve` does it daily): previews,
    /// heatmaps and the change log of read studies older than the retention.
    Purge(PurgeArgs),
    /// The results for the RIS and the EHR (HL7, FHIR) waiting, sent or
    /// failed; requeue failed ones.
    Results(ResultsArgs),
    /// The web worklist's tools: `web hash-password` makes a local user's
    /// stored password.
    Web(web::WebArgs),
}

impl Command {
    /// Runs the subcommand; the exit code says whether every input succeeded.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve(args) => serve::run(&args),
            Command::Inspect(args) => inspect::run(&args),
            Command::Preprocess(args) => preprocess::run(&args),
            Command::Analyze(args) => analyze::run(&args),
            Command::Models(args) => models::run(&args),
            Command::Score(args) => score::run(args),
            Command::Evaluate(args) => cxr_campaign::evaluate::run(&args.options()),
            Command::Report(args) => cxr_campaign::report::run(&args.options()),
            Command::Bench(args) => cxr_campaign::bench::run(&args.options()),
            Command::Audit(args) => audit::run(&args),
            Command::Purge(args) => purge::run(&args),
            Command::Results(args) => results::run(&args),
            Command::Health(args) => health::run(&args),
            Command::Web(args) => web::run(&args),
        }
    }
}

/// Sets up `tracing` to stderr with the given filter (default `warn`).
pub fn init_logging(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
