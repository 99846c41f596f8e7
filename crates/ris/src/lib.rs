//! # cxr-ris: results to the hospital's RIS
//!
//! Every analysed study's AI result goes to the RIS as an HL7 v2.5.1
//! ORU^R01 ([`hl7`]) over MLLP, so that the reading worklist the
//! radiologists already use can put the urgent films first. One message
//! per version of a study's result: a later image of the same study sends
//! an update (OBR-25 `C`) with its own control ID.
//!
//! The message is made and queued in a durable outbox ([`outbox`]) right
//! after the result is committed to the worklist, before the caller is
//! answered; a sender task delivers the queue in order over MLLP, marks a
//! message sent after the RIS's positive acknowledgement (AA), retries
//! transport failures and application errors (AE) with backoff, and keeps
//! rejected (AR) or given-up messages, visible in the metrics and in
//! `cxr-triage hl7 list`. Logs carry control IDs and study UIDs, never
//! patient names or IDs.
//!
//! ```toml
//! [hl7]
//! destination = "ris.example:2575"
//! receiving_application = "RIS"
//! receiving_facility = "HOSPITAL"
//! ```
//!
//! Not yet: TLS on MLLP (use a TLS tunnel), FHIR R4, an order (ORM/OMI)
//! listener, a shared (PostgreSQL) HL7 outbox for replicas.

pub mod hl7;
pub mod outbox;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cxr_pipeline::{Filed, ResultSink};
use cxr_worklist::{now_ms, WorklistStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

pub use hl7::{Ack, AckVerdict, Parties, StudyFinding, StudyResult};
pub use outbox::{Outbox, OutboxError, Tally};

/// `[hl7]`: results to the RIS as HL7 v2.5.1 ORU^R01 over MLLP. Off
/// unless `destination` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7Config {
    /// The RIS's MLLP listener, `host:port`; unset: no HL7.
    pub destination: Option<String>,
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-17, ISO 3166 alpha-3; empty to leave out.
    pub country: String,
    /// PID-3.4, the authority that assigns the DICOM Patient IDs; empty to
    /// leave out.
    pub patient_id_authority: String,
    /// Seconds to connect, send and wait for the acknowledgement.
    pub timeout_s: u64,
    /// First wait after a failure, seconds; doubled each time.
    pub retry_initial_s: u64,
    /// Longest wait between attempts, seconds.
    pub retry_max_s: u64,
    /// A message not accepted this many hours after it was queued is
    /// given up (kept as failed).
    pub give_up_after_h: u64,
}

impl Default for Hl7Config {
    fn default() -> Self {
        Hl7Config {
            destination: None,
            sending_application: "CXR-TRIAGE".into(),
            sending_facility: "RADIOLOGY".into(),
            receiving_application: "RIS".into(),
            receiving_facility: "HOSPITAL".into(),
            country: String::new(),
            patient_id_authority: String::new(),
            timeout_s: 30,
            retry_initial_s: 5,
            retry_max_s: 300,
            give_up_after_h: 72,
        }
    }
}

impl Hl7Config {
    fn parties(&self) -> Parties {
        Parties {
            sending_application: self.sending_application.clone(),
            sending_facility: self.sending_facility.clone(),
            receiving_application: self.receiving_application.clone(),
            receiving_facility: self.receiving_facility.clone(),
            country: self.country.clone(),
            patient_id_authority: self.patient_id_authority.clone(),
        }
    }

    fn backoff_ms(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(20);
        let s = self.retry_initial_s.max(1).saturating_mul(1u64 << exp);
        (s.min(self.retry_max_s.max(1)) * 1000) as i64
    }
}

/// The file of the HL7 outbox in a data directory.
pub fn outbox_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("hl7.sqlite")
}

/// A study's current result, from the worklist, with the patient of the
/// image just filed.
pub fn study_result(store: &dyn WorklistStore, filed: &Filed) -> Option<StudyResult> {
    let uid = &filed.outcome.identity.study_instance_uid;
    let (study, images) = match store.get_study(uid) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "HL7: the study could not be read back; no message");
            return None;
        }
    };
    let mut findings: Vec<StudyFinding> = Vec::new();
    let mut not_analyzed = Vec::new();
    let mut models: Vec<(String, String)> = Vec::new();
    for image in &images {
        if let Some(reason) = &image.reason {
            not_analyzed.push(format!(
                "{} {}: {}",
                image.identity.modality, image.identity.view_position, reason.message
            ));
            continue;
        }
        for f in &image.result.findings {
            match findings.iter_mut().find(|s| s.id == f.finding.as_str()) {
                Some(s) => {
                    if f.score > s.score {
                        s.score = f.score;
                    }
                    s.positive |= f.positive;
                }
                None => findings.push(StudyFinding {
                    id: f.finding.to_string(),
                    display_name: f.display_name.clone(),
                    score: f.score,
                    positive: f.positive,
                    operating_point: f.operating_point.clone(),
                    threshold: f.threshold,
                }),
            }
        }
        for p in &image.result.provenance {
            let m = (p.model_id.clone(), p.model_version.clone());
            if !models.contains(&m) {
                models.push(m);
            }
        }
    }
    Some(StudyResult {
        study_instance_uid: uid.clone(),
        accession_number: study.accession_number.clone(),
        study_date: study.study_date.clone(),
        patient: filed.outcome.patient.clone().unwrap_or_default(),
        priority: study.assessment.priority.as_str().to_string(),
        findings,
        not_analyzed,
        models,
        version: filed.sequence,
        update: images.len() > 1,
        at_ms: now_ms(),
    })
}

/// The pipeline's [`ResultSink`] that queues an ORU^R01 per filed result.
pub struct Hl7Sink {
    outbox: Arc<Outbox>,
    parties: Parties,
    wake: Arc<Notify>,
}

impl ResultSink for Hl7Sink {
    fn filed(&self, store: &dyn WorklistStore, filed: &Filed) {
        let Some(result) = study_result(store, filed) else {
            metrics::counter!("cxr_hl7_messages_total", "outcome" => "not_made").increment(1);
            return;
        };
        let message = hl7::oru_r01(&result, &self.parties);
        match self.outbox.add(
            &result.control_id(),
            &result.study_instance_uid,
            &message,
            now_ms(),
        ) {
            Ok(_) => {
                metrics::counter!("cxr_hl7_messages_total", "outcome" => "queued").increment(1);
                self.wake.notify_one();
            }
            Err(e) => {
                metrics::counter!("cxr_hl7_messages_total", "outcome" => "not_queued").increment(1);
                tracing::error!(error = %e, control_id = %result.control_id(), "HL7: the message could not be queued");
            }
        }
    }
}

/// HL7 delivery errors (one attempt).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting, writing or reading failed, or timed out.
    #[error("MLLP transport: {0}")]
    Transport(String),
    /// The answer was not an HL7 acknowledgement of this message.
    #[error("MLLP answer: {0}")]
    Answer(String),
}

/// Sends one message over MLLP and reads its acknowledgement.
pub async fn send_mllp(
    destination: &str,
    message: &str,
    timeout: Duration,
) -> Result<Ack, SendError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(destination)
            .await
            .map_err(|e| SendError::Transport(format!("connect {destination}: {e}")))?;
        stream
            .write_all(&hl7::frame(message))
            .await
            .map_err(|e| SendError::Transport(format!("write: {e}")))?;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == [hl7::END, b'\r']) {
                buf.truncate(end);
                break;
            }
            if buf.len() > 1 << 20 {
                return Err(SendError::Answer("acknowledgement over 1 MiB".into()));
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| SendError::Transport(format!("read: {e}")))?;
            if n == 0 {
                return Err(SendError::Transport(
                    "closed without an acknowledgement".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let start = buf.iter().position(|&b| b == hl7::START).map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&buf[start..]).into_owned();
        Ack::parse(&text).ok_or_else(|| SendError::Answer("no MSA segment".into()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SendError::Transport(format!("no acknowledgement within {timeout:?}")))?
}

/// The running HL7 interface: the sink to add to the pipeline and the
/// sender task.
pub struct Hl7 {
    /// Add to the pipeline ([`cxr_pipeline::Pipeline::add_sink`]).
    pub sink: Arc<Hl7Sink>,
    /// The outbox.
    pub outbox: Arc<Outbox>,
}

impl Hl7 {
    /// Opens the outbox in `data_dir` and starts the sender; `None` when
    /// `[hl7]` has no destination. The sender stops when `stopping` turns
    /// true.
    pub fn start(
        config: &Hl7Config,
        data_dir: &Path,
        stopping: watch::Receiver<bool>,
    ) -> Result<Option<Hl7>, OutboxError> {
        let Some(destination) = config.destination.clone() else {
            return Ok(None);
        };
        let outbox = Arc::new(Outbox::open(&outbox_path(data_dir))?);
        let wake = Arc::new(Notify::new());
        let sink = Arc::new(Hl7Sink {
            outbox: Arc::clone(&outbox),
            parties: config.parties(),
            wake: Arc::clone(&wake),
        });
        tokio::spawn(deliver(
            config.clone(),
            destination,
            Arc::clone(&outbox),
            wake,
            stopping,
        ));
        Ok(Some(Hl7 { sink, outbox }))
    }
}

fn gauges(outbox: &Outbox) {
    if let Ok(t) = outbox.tally() {
        metrics::gauge!("cxr_hl7_outbox", "state" => "ready").set(t.ready as f64);
        metrics::gauge!("cxr_hl7_outbox", "state" => "sent").set(t.sent as f64);
        metrics::gauge!("cxr_hl7_outbox", "state" => "failed").set(t.failed as f64);
    }
}

async fn deliver(
    config: Hl7Config,
    destination: String,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
) {
    let timeout = Duration::from_secs(config.timeout_s.max(1));
    let give_up_ms = (config.give_up_after_h as i64).saturating_mul(3_600_000);
    loop {
        if *stopping.borrow() {
            return;
        }
        let next = {
            let outbox = Arc::clone(&outbox);
            tokio::task::spawn_blocking(move || outbox.next()).await
        };
        let due = match next {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "HL7 outbox unreadable; retrying");
                None
            }
            Err(_) => return,
        };
        let wait = match &due {
            None => Duration::from_secs(60),
            Some(d) => Duration::from_millis((d.next_attempt_ms - now_ms()).max(0) as u64),
        };
        if due.is_none() || !wait.is_zero() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                changed = stopping.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let Some(due) = due else { continue };
        let result = send_mllp(&destination, &due.message, timeout).await;
        let now = now_ms();
        let (state, error) = match result {
            Ok(ack) if ack.control_id != due.control_id => (
                "retry",
                format!(
                    "acknowledgement of {} instead of {}",
                    ack.control_id, due.control_id
                ),
            ),
            Ok(ack) => match ack.verdict() {
                AckVerdict::Accepted => ("sent", String::new()),
                AckVerdict::Rejected => ("failed", format!("{}: {}", ack.code, ack.text)),
                AckVerdict::Error => ("retry", format!("{}: {}", ack.code, ack.text)),
            },
            Err(e) => ("retry", e.to_string()),
        };
        let state = if state == "retry" && now - due.created_ms >= give_up_ms {
            "failed"
        } else {
            state
        };
        let control_id = due.control_id.clone();
        let backoff = config.backoff_ms(due.attempts + 1);
        let outbox2 = Arc::clone(&outbox);
        let error2 = error.clone();
        let written = tokio::task::spawn_blocking(move || match state {
            "sent" => outbox2.sent(due.id, now),
            "failed" => outbox2.fail(due.id, &error2),
            _ => outbox2.retry(due.id, &error2, now + backoff),
        })
        .await;
        match state {
            "sent" => {
                tracing::info!(control_id = %control_id, "HL7 result accepted by the RIS");
                metrics::counter!("cxr_hl7_messages_total", "outcome" => "sent").increment(1);
            }
            "failed" => {
                tracing::error!(control_id = %control_id, error = %error, "HL7 result failed; kept in the outbox");
                metrics::counter!("cxr_hl7_messages_total", "outcome" => "failed").increment(1);
            }
            _ => {
                tracing::warn!(control_id = %control_id, error = %error, retry_in_ms = backoff, "HL7 result not delivered; will retry");
                metrics::counter!("cxr_hl7_messages_total", "outcome" => "retried").increment(1);
            }
        }
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!("HL7 outbox could not record a delivery; stopping the sender");
            return;
        }
        gauges(&outbox);
    }
}
