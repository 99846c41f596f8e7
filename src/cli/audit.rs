//! `cxr-triage audit`: the audit trail of who read and changed what —
//! `verify` walks its hash chain and says whether any record was changed,
//! inserted or removed; `show` prints the latest records.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cxr_worklist::{verify_audit, AuditVerdict};

use crate::config::ServiceConfig;

/// Options of `cxr-triage audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
    /// Configuration file (the service's: where its data directory is).
    #[arg(long, short, global = true, env = "CXR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain end to end; exit 1 when it is broken.
    Verify,
    /// Print the latest records (oldest first).
    Show {
        /// How many.
        #[arg(long, default_value_t = 50)]
        last: u64,
        /// One JSON object per record.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `audit`.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    let store = config.open_worklist(false)?;
    match &args.command {
        AuditCommand::Verify => match verify_audit(store.as_ref())? {
            AuditVerdict::Intact { records } => {
                println!("audit trail intact: {records} records");
                Ok(ExitCode::SUCCESS)
            }
            AuditVerdict::Broken { sequence, why } => {
                println!("audit trail BROKEN at record {sequence}: {why}");
                Ok(ExitCode::FAILURE)
            }
        },
        AuditCommand::Show { last, json } => {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let batch = store.audit_after(after, 1000)?;
                let Some(end) = batch.last().map(|r| r.sequence) else {
                    break;
                };
                after = end;
                all.extend(batch);
                let keep = usize::try_from(*last).unwrap_or(usize::MAX);
                if all.len() > keep {
                    all.drain(..all.len() - keep);
                }
            }
            for r in &all {
                if *json {
                    println!("{}", serde_json::to_string(r)?);
                } else {
                    let e = &r.entry;
                    println!(
                        "{:>6} {} {:<16} {:<14} {:<12} {:<24} {:<10} {} {}",
                        r.sequence,
                        e.at_ms,
                        e.who,
                        e.roles,
                        e.method,
                        e.action,
                        e.outcome,
                        e.address,
                        e.object
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
