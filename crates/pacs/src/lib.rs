//! # cxr-pacs: the DICOM transport
//!
//! PACS integration: DICOM in, AI results back to PACS.
//!
//! **In:** a PACS (or modality) auto-forwards chest radiographs by C-STORE
//! to the listener ([`scp`]); each object is durably spooled ([`spool`])
//! before it is acknowledged, then taken through the same pipeline as the
//! gRPC API into the worklist ([`intake`]). C-ECHO answers verification.
//! Optionally, DICOMweb STOW-RS ([`stow`]) takes the same objects over HTTP
//! into the same spool.
//!
//! **Out:** per analysed image, a Secondary Capture with the heatmap and
//! findings burned in ([`sc`]) and a Comprehensive 3D SR, TID 1500, with
//! findings, scores, operating points, regions and the algorithm's
//! identity ([`sr`]) — both filed under the original study ([`derived`]) —
//! wait in a durable outbox ([`outbox`]) until their study is final, and a
//! C-STORE SCU ([`scu`], [`sender`]) delivers them with retries.
//!
//! What it does not do: Query/Retrieve, Modality Worklist, MPPS, storage
//! commitment, TLS on the DICOM port (put the port on a trusted network or
//! behind a TLS tunnel). `docs/dicom-conformance.md` is the conformance
//! statement.
//!
//! ```toml
//! [dicom]
//! enabled = true
//! ae_title = "CXR_TRIAGE"
//! listen = "0.0.0.0:11112"
//! allowed_calling_aes = ["PACS"]
//! destination = { ae_title = "PACS", host = "pacs.example", port = 104 }
//! ```

pub mod config;
pub mod derived;
pub mod dimse;
pub mod font;
pub mod intake;
pub mod outbox;
mod outbox_pg;
pub mod sc;
pub mod scp;
pub mod scu;
pub mod sender;
pub mod spool;
pub mod sr;
pub mod stow;
pub mod uids;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

pub use config::{Destination, DicomConfig, RetryPolicy};
use intake::Intake;
use outbox::Outbox;

use cxr_pipeline::Pipeline;

/// What [`purge`] removed from the DICOM side's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacsPurge {
    /// Outbox rows of objects sent before the cutoff.
    pub sent_rows: usize,
    /// Files in `rejected/` last modified before the cutoff.
    pub rejected_files: usize,
}

/// Retention for the DICOM side's state in `state_dir`
/// ([`DicomConfig::state_dir`]): the outbox's rows of objects sent before
/// `cutoff_ms` (ms since the epoch) and objects set aside in `rejected/`
/// before it. Objects not yet sent, or failed, are kept. Safe beside a
/// running service.
pub fn purge(state_dir: &Path, cutoff_ms: i64) -> anyhow::Result<PacsPurge> {
    let sent_rows = outbox::purge_sent(state_dir, cutoff_ms)
        .with_context(|| format!("outbox in {}", state_dir.display()))?;
    let before = std::time::UNIX_EPOCH + std::time::Duration::from_millis(cutoff_ms.max(0) as u64);
    let rejected_files = spool::Spool::purge_rejected(state_dir, before)
        .with_context(|| format!("rejected/ in {}", state_dir.display()))?;
    Ok(PacsPurge {
        sent_rows,
        rejected_files,
    })
}

/// Retention for the shared outbox in the PostgreSQL database at `url`:
/// rows of objects sent before `cutoff_ms`. Safe beside running replicas.
pub fn purge_shared_outbox(url: &str, cutoff_ms: i64) -> anyhow::Result<usize> {
    let outbox = Outbox::open_shared(url, "purge", RetryPolicy::default())
        .context("the shared DICOM outbox (PostgreSQL)")?;
    Ok(outbox.purge_sent_rows(cutoff_ms)?)
}

/// This replica's name as an owner of shared outbox rows, the same across
/// its restarts: the host name (a StatefulSet pod's is stable) and the
/// state directory.
fn outbox_owner(state_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}:{}", state_dir.display())
}

/// Spool workers: enough to keep the pipeline busy while one waits on disk.
const WORKERS: usize = 2;

/// The running DICOM side of the service.
pub struct Pacs {
    addr: SocketAddr,
    stow_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    intake: Arc<Intake>,
    outbox: Option<Arc<Outbox>>,
}

impl Pacs {
    /// Starts the listener, the spool workers, study grouping and (with a
    /// destination) the sender, when `config.enabled`; `None` otherwise.
    /// State lives under [`DicomConfig::state_dir`] of `data_dir`.
    /// STOW-RS callers authenticate with `auth` and need the uploader role.
    pub async fn start(
        config: &DicomConfig,
        data_dir: &Path,
        pipeline: Arc<Pipeline>,
        auth: Arc<cxr_auth::Authenticator>,
    ) -> anyhow::Result<Option<Pacs>> {
        Self::start_with_tls(config, data_dir, pipeline, auth, None).await
    }

    /// [`Pacs::start`], with STOW-RS served over HTTPS with `tls` (the
    /// service's `[tls]` identity) when given.
    pub async fn start_with_tls(
        config: &DicomConfig,
        data_dir: &Path,
        pipeline: Arc<Pipeline>,
        auth: Arc<cxr_auth::Authenticator>,
        tls: Option<&stow::TlsFiles>,
    ) -> anyhow::Result<Option<Pacs>> {
        Self::start_with_outbox(config, data_dir, pipeline, auth, tls, None).await
    }

    /// [`Pacs::start_with_tls`], with the outbox in the PostgreSQL
    /// database at `shared_outbox` (the worklist's, shared by replicas)
    /// when given, instead of under the state directory.
    pub async fn start_with_outbox(
        config: &DicomConfig,
        data_dir: &Path,
        pipeline: Arc<Pipeline>,
        auth: Arc<cxr_auth::Authenticator>,
        tls: Option<&stow::TlsFiles>,
        shared_outbox: Option<&str>,
    ) -> anyhow::Result<Option<Pacs>> {
        if !config.enabled {
            return Ok(None);
        }
        let stow_tls = match (tls, config.stow_listen) {
            (Some(files), Some(_)) => Some(stow::tls_acceptor(files).context("STOW-RS TLS")?),
            _ => None,
        };
        config.validate()?;
        let config = Arc::new(config.clone());
        let state_dir = config.state_dir(data_dir);
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("DICOM state directory {}", state_dir.display()))?;
        let sending = config.destination.is_some() && (config.send_sc || config.send_sr);
        let outbox = match (sending, shared_outbox) {
            (false, _) => None,
            (true, None) => Some(Arc::new(
                Outbox::open(&state_dir, config.retry.clone())
                    .with_context(|| format!("DICOM outbox in {}", state_dir.display()))?,
            )),
            (true, Some(url)) => {
                let (url, owner) = (url.to_string(), outbox_owner(&state_dir));
                let retry = config.retry.clone();
                let outbox =
                    tokio::task::spawn_blocking(move || Outbox::open_shared(&url, &owner, retry))
                        .await
                        .context("opening the shared DICOM outbox")?
                        .context("the shared DICOM outbox (PostgreSQL)")?;
                tracing::info!("DICOM outbox shared with the other replicas (PostgreSQL)");
                Some(Arc::new(outbox))
            }
        };
        let released = Arc::new(Notify::new());
        let intake = Intake::open(
            &config,
            &state_dir,
            pipeline,
            outbox.clone(),
            Arc::clone(&released),
        )
        .with_context(|| format!("DICOM spool in {}", state_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the DICOM port {}", config.listen))?;
        let addr = listener.local_addr()?;
        let stow = match config.stow_listen {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("binding the STOW-RS port {at}"))?,
            ),
            None => None,
        };
        let stow_addr = stow.as_ref().map(|l| l.local_addr()).transpose()?;
        if config.allowed_calling_aes.is_empty() {
            tracing::warn!(
                "[dicom] allowed_calling_aes is empty: any calling AE title may store images"
            );
        }
        tracing::info!(%addr, ae_title = %config.ae_title, destination = config.destination.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "none".into()), "DICOM listening");

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let scp = Arc::new(scp::Listener::new(Arc::clone(&config), Arc::clone(&intake)));
        tasks.spawn(scp.serve(listener, stop_rx.clone()));
        for _ in 0..WORKERS {
            tasks.spawn(Arc::clone(&intake).work(stop_rx.clone()));
        }
        tasks.spawn(Arc::clone(&intake).group_studies(stop_rx.clone()));
        if let (Some(listener), Some(at)) = (stow, stow_addr) {
            tracing::info!(addr = %at, tls = stow_tls.is_some(), "DICOMweb STOW-RS listening (POST /studies)");
            tasks.spawn(stow::serve(
                listener,
                Arc::clone(&intake),
                auth,
                config.max_object_mib,
                config.max_associations,
                std::time::Duration::from_secs(config.timeout_s * 5),
                stow_tls,
                stop_rx.clone(),
            ));
        }
        if let (Some(outbox), Some(destination)) = (&outbox, &config.destination) {
            let scu = scu::StoreScu {
                calling_ae: config.ae_title.clone(),
                destination: destination.clone(),
                max_pdu: config.max_pdu,
                timeout: Duration::from_secs(config.timeout_s),
            };
            tasks.spawn(sender::run(
                Arc::clone(outbox),
                scu,
                Arc::clone(&released),
                stop_rx.clone(),
            ));
        }
        Ok(Some(Pacs {
            addr,
            stow_addr,
            stop,
            tasks,
            intake,
            outbox,
        }))
    }

    /// The DICOM listen address (the bound port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The STOW-RS listen address, when on.
    pub fn stow_addr(&self) -> Option<SocketAddr> {
        self.stow_addr
    }

    /// Objects spooled and not yet through the pipeline.
    pub fn spool_depth(&self) -> usize {
        self.intake.depth()
    }

    /// The outbox, when results are sent.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// Stops accepting associations, lets those open finish (bounded),
    /// and stops the workers and the sender between objects. What is
    /// spooled or in the outbox stays there for the next start.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("DICOM stopped");
    }
}
