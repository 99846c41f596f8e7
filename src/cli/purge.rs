//! `cxr-triage purge`: apply the retention policy now (what `serve` does
//! daily): previews and heatmaps of read or dismissed studies and the
//! change log older than `[retention] days`; with `--results`, those
//! studies themselves. Open studies and the audit trail are kept.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::ServiceConfig;

/// Options of `cxr-triage purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Configuration file (the service's).
    #[arg(long, short, env = "CXR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Days to keep (overrides `[retention] days`).
    #[arg(long)]
    pub days: Option<u32>,
    /// Also remove read or dismissed studies and their results.
    #[arg(long)]
    pub results: bool,
}

/// Runs `purge`.
pub fn run(args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(days) = args.days {
        config.retention.days = days;
    }
    config.retention.results |= args.results;
    let Some(cutoff) = config.retention.cutoff_ms(cxr_worklist::now_ms()) else {
        println!("retention days = 0: nothing is purged");
        return Ok(ExitCode::SUCCESS);
    };
    let store = config.open_worklist(false)?;
    let p = store.purge(cutoff, config.retention.results)?;
    let mut d = cxr_pacs::purge(&config.dicom.state_dir(&config.data_dir), cutoff)?;
    if config.worklist_is_postgres() {
        d.sent_rows += cxr_pacs::purge_shared_outbox(&config.worklist_url(), cutoff)?;
    }
    let shared = config.worklist_is_postgres().then(|| config.worklist_url());
    let ris = cxr_ris::purge(&config.data_dir, shared.as_deref(), cutoff)?;
    println!(
        "purged (older than {} days): {} previews, {} heatmaps, {} events, {} images, {} studies, \
         {} sent outbox rows, {} rejected DICOM files, {} sent HL7/FHIR messages, {} RIS orders",
        config.retention.days,
        p.previews,
        p.heatmaps,
        p.events,
        p.images,
        p.studies,
        d.sent_rows,
        d.rejected_files,
        ris.sent_messages,
        ris.orders
    );
    Ok(ExitCode::SUCCESS)
}
