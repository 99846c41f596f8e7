//! `cxr-triage results`: the messages for the RIS and the EHR (`[hl7]`,
//! `[fhir]`) in this replica's outboxes — `list` shows them (keys, study
//! UIDs, states, last errors; never the message bodies, which name the
//! patient), `requeue` makes failed ones ready again once their cause is
//! mended. A running `serve` picks requeued messages up within seconds.
//! Each requeue is written to the audit trail.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use cxr_ris::{Outbox, Requeued};

use crate::config::ServiceConfig;

/// Options of `cxr-triage results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ResultsCommand,
    /// Configuration file (the service's: where its data directory is).
    #[arg(long, short, global = true, env = "CXR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Only this interface: `hl7` or `fhir`.
    #[arg(long, global = true, value_parser = ["hl7", "fhir"])]
    pub interface: Option<String>,
}

/// `results` subcommands.
#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// Print the latest messages, newest first.
    List {
        /// Only those in this state.
        #[arg(long, value_parser = ["ready", "sent", "failed"])]
        state: Option<String>,
        /// How many per interface.
        #[arg(long, default_value_t = 50)]
        last: u32,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Make failed messages ready again (all failed ones with `--failed`);
    /// a message a later version of its study superseded is left.
    Requeue {
        /// Keys (the HL7 control ID, MSH-10) as `list` shows them.
        keys: Vec<String>,
        /// Every failed message that is its study's latest.
        #[arg(long, conflicts_with = "keys")]
        failed: bool,
    },
}

/// Runs `results`.
pub fn run(args: &ResultsArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    let shared = config.worklist_is_postgres().then(|| config.worklist_url());
    let outboxes: Vec<(&str, Outbox)> =
        cxr_ris::existing_outboxes(&config.data_dir, shared.as_deref())
            .context("opening the HL7/FHIR outboxes")?
            .into_iter()
            .filter(|(name, _)| args.interface.as_deref().is_none_or(|i| i == *name))
            .collect();
    if outboxes.is_empty() {
        println!(
            "no HL7/FHIR outbox in {} ([hl7] destination / [fhir] base_url not used yet)",
            config.data_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        ResultsCommand::List { state, last, json } => {
            for (name, outbox) in &outboxes {
                let t = outbox.tally()?;
                if !json {
                    println!(
                        "{name}: {} ready, {} sent, {} failed",
                        t.ready, t.sent, t.failed
                    );
                }
                for row in outbox.list(state.as_deref(), *last)? {
                    if *json {
                        let mut v = serde_json::to_value(&row)?;
                        v["interface"] = serde_json::json!(name);
                        println!("{v}");
                    } else {
                        println!(
                            "  {:<22} {:<7} attempts {:<3} study {}{}",
                            row.key,
                            row.state,
                            row.attempts,
                            row.study_instance_uid,
                            row.last_error
                                .map(|e| format!("\n      last error: {e}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ResultsCommand::Requeue { keys, failed } => {
            if keys.is_empty() && !failed {
                anyhow::bail!("name the messages to requeue, or --failed for all failed ones");
            }
            let store = config.open_worklist(false)?;
            let who = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "operator".into());
            let mut all_done = true;
            // (interface, key) to requeue.
            let mut todo: Vec<(usize, String)> = Vec::new();
            if *failed {
                for (i, (_, outbox)) in outboxes.iter().enumerate() {
                    for row in outbox.list(Some("failed"), u32::MAX)? {
                        todo.push((i, row.key));
                    }
                }
            } else {
                for key in keys {
                    let mut found = None;
                    for (i, (_, outbox)) in outboxes.iter().enumerate() {
                        if outbox.contains(key)? {
                            found = Some(i);
                        }
                    }
                    match found {
                        Some(i) => todo.push((i, key.clone())),
                        None => {
                            println!("{key}: no such message");
                            all_done = false;
                        }
                    }
                }
            }
            for (i, key) in todo {
                let (name, outbox) = &outboxes[i];
                let outcome = outbox.requeue(&key, cxr_worklist::now_ms())?;
                let said = match &outcome {
                    Requeued::Yes => "requeued".to_string(),
                    Requeued::Unknown => {
                        all_done = false;
                        "no such message".to_string()
                    }
                    Requeued::NotFailed(state) => format!("not failed ({state})"),
                    Requeued::Superseded(later) => {
                        // With --failed, an older version is left as it is.
                        all_done &= *failed;
                        format!("superseded by {later}; requeue that one")
                    }
                };
                println!("{name} {key}: {said}");
                if outcome == Requeued::Yes {
                    store.audit(&cxr_worklist::AuditEntry {
                        at_ms: cxr_worklist::now_ms(),
                        who: who.clone(),
                        roles: "admin".into(),
                        method: "cli".into(),
                        action: format!("RequeueResult:{name}"),
                        object: format!("message:{key}"),
                        address: "local".into(),
                        outcome: "ok".into(),
                    })?;
                }
            }
            Ok(if all_done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
