//! Synthetic chest radiographs (placeholder; being written).

use clap::Args;

/// Options of `cxr-triage synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory for the generated DICOM files and the ground-truth sidecar.
    #[arg(long, short, env = "CXR_SYNTH_OUT", default_value = "synth-out")]
    pub out: std::path::PathBuf,
}

/// Runs `cxr-triage synth`.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("synth not yet implemented (out = {})", args.out.display())
}
