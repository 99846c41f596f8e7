//! # cxr-ris: results to the hospital's RIS and EHR
//!
//! Every analysed study's AI result goes to the RIS as an HL7 v2.5.1
//! ORU^R01 ([`hl7`]) over MLLP, and/or to a FHIR R4 server as a
//! transaction Bundle ([`fhir`]: DiagnosticReport, one Observation per
//! finding), so that the worklists the radiologists already use can put
//! the urgent films first. One message per version of a study's result: a
//! later image of the same study sends an update (HL7: OBR-25 `C` with its
//! own control ID; FHIR: the same resources replaced).
//!
//! Each message is made and queued in a durable outbox ([`outbox`]) right
//! after the result is committed to the worklist, before the caller is
//! answered; a sender task per interface delivers its queue in order,
//! marks a message sent once the peer accepts it (AA; 2xx), retries
//! transport failures and errors worth retrying (AE; 5xx, 429, timeouts)
//! with backoff, and keeps rejected (AR; other 4xx) or given-up messages,
//! visible in the metrics (`cxr_results_out_outbox`) and in the
//! outbox file (`hl7.sqlite`, `fhir.sqlite`, table `outbox`). Logs carry keys and
//! study UIDs, never patient names or IDs.
//!
//! ```toml
//! [hl7]
//! destination = "ris.example:2575"
//! receiving_application = "RIS"
//! receiving_facility = "HOSPITAL"
//!
//! [fhir]
//! base_url = "https://ehr.example/fhir"
//! token_file = "/etc/cxr-triage/fhir-token"
//! patient_id_system = "urn:oid:1.2.840.99999.1"
//! ```
//!
//! Not yet: TLS on MLLP (use a TLS tunnel), an order (ORM/OMI) listener,
//! a shared (PostgreSQL) outbox for replicas (each replica sends what it
//! analysed).

pub mod fhir;
pub mod hl7;
pub mod outbox;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cxr_auth::outbound::{HttpClient, OutboundError};

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

    fn retry(&self) -> Retry {
        Retry {
            initial_s: self.retry_initial_s,
            max_s: self.retry_max_s,
            give_up_after_h: self.give_up_after_h,
        }
    }
}

/// `[fhir]`: results to a FHIR R4 server as a transaction Bundle. Off
/// unless `base_url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FhirConfig {
    /// The server's base URL (`https://…/fhir`); unset: no FHIR.
    pub base_url: Option<String>,
    /// A file holding the bearer token (re-read for each request, so a
    /// rotated token is used at once); unset: no `Authorization`.
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the server's certificate is checked against;
    /// unset: the system's.
    pub ca_file: Option<PathBuf>,
    /// Identifier system of the DICOM Patient IDs.
    pub patient_id_system: String,
    /// Identifier system of accession numbers.
    pub accession_system: String,
    /// Seconds for one request.
    pub timeout_s: u64,
    /// First wait after a failure, seconds; doubled each time.
    pub retry_initial_s: u64,
    /// Longest wait between attempts, seconds.
    pub retry_max_s: u64,
    /// A result not accepted this many hours after it was queued is given
    /// up (kept as failed).
    pub give_up_after_h: u64,
}

impl Default for FhirConfig {
    fn default() -> Self {
        FhirConfig {
            base_url: None,
            token_file: None,
            ca_file: None,
            patient_id_system: "urn:cxr-triage:dicom-patient-id".into(),
            accession_system: "urn:cxr-triage:accession".into(),
            timeout_s: 30,
            retry_initial_s: 5,
            retry_max_s: 300,
            give_up_after_h: 72,
        }
    }
}

/// How a sender retries.
#[derive(Debug, Clone, Copy)]
struct Retry {
    initial_s: u64,
    max_s: u64,
    give_up_after_h: u64,
}

impl Retry {
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(20);
        let s = self.initial_s.max(1).saturating_mul(1u64 << exp);
        (s.min(self.max_s.max(1)) * 1000) as i64
    }
}

/// The file of an interface's outbox (`hl7`, `fhir`) in a data directory.
pub fn outbox_path(data_dir: &Path, interface: &str) -> PathBuf {
    data_dir.join(format!("{interface}.sqlite"))
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

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The peer has it.
    Accepted,
    /// Try again later (why).
    Retry(String),
    /// The peer refused it; sending it again will not help (why).
    Rejected(String),
}

/// An interface: how a result becomes a message, and how a message is
/// delivered.
trait Interface: Send + Sync + 'static {
    /// `hl7`, `fhir`: metric label, outbox file.
    const NAME: &'static str;
    /// The message of a result version.
    fn message(&self, result: &StudyResult) -> String;
    /// One delivery attempt.
    fn deliver(&self, key: &str, message: &str) -> impl Future<Output = Delivery> + Send;
}

struct Mllp {
    destination: String,
    parties: Parties,
    timeout: Duration,
}

impl Interface for Mllp {
    const NAME: &'static str = "hl7";

    fn message(&self, result: &StudyResult) -> String {
        hl7::oru_r01(result, &self.parties)
    }

    async fn deliver(&self, key: &str, message: &str) -> Delivery {
        match send_mllp(&self.destination, message, self.timeout).await {
            Ok(ack) if ack.control_id != key => Delivery::Retry(format!(
                "acknowledgement of {} instead of {key}",
                ack.control_id
            )),
            Ok(ack) => match ack.verdict() {
                AckVerdict::Accepted => Delivery::Accepted,
                AckVerdict::Rejected => Delivery::Rejected(format!("{}: {}", ack.code, ack.text)),
                AckVerdict::Error => Delivery::Retry(format!("{}: {}", ack.code, ack.text)),
            },
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

struct Fhir {
    url: String,
    token_file: Option<PathBuf>,
    systems: fhir::Systems,
    client: HttpClient,
    timeout: Duration,
}

/// Longest FHIR answer read (an OperationOutcome, a transaction-response).
const MAX_FHIR_ANSWER: usize = 1 << 20;

impl Interface for Fhir {
    const NAME: &'static str = "fhir";

    fn message(&self, result: &StudyResult) -> String {
        fhir::bundle(result, &self.systems).to_string()
    }

    async fn deliver(&self, _key: &str, message: &str) -> Delivery {
        let token = match &self.token_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => Some(format!("Bearer {}", t.trim())),
                Err(e) => return Delivery::Retry(format!("token file {}: {e}", path.display())),
            },
            None => None,
        };
        let post = self.client.post(
            &self.url,
            "application/fhir+json; charset=utf-8",
            "application/fhir+json",
            token.as_deref(),
            Bytes::from(message.to_string()),
            MAX_FHIR_ANSWER,
        );
        match tokio::time::timeout(self.timeout, post).await {
            Err(_) => Delivery::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(OutboundError::Transport(e))) => Delivery::Retry(e),
            Ok(Err(OutboundError::Config(e))) => Delivery::Rejected(e),
            Ok(Ok(answer)) => {
                let status = answer.status;
                let what = || {
                    let text = String::from_utf8_lossy(&answer.body);
                    format!(
                        "HTTP {status}: {}",
                        text.chars().take(400).collect::<String>()
                    )
                };
                if status.is_success() {
                    Delivery::Accepted
                } else if status.is_server_error()
                    || status.as_u16() == 429
                    || status.as_u16() == 408
                    || status.as_u16() == 401
                {
                    // 401: a token being rotated; kept trying until given up.
                    Delivery::Retry(what())
                } else {
                    Delivery::Rejected(what())
                }
            }
        }
    }
}

/// The pipeline's [`ResultSink`] that queues a message per filed result.
struct Sink<I: Interface> {
    interface: Arc<I>,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
}

impl<I: Interface> ResultSink for Sink<I> {
    fn filed(&self, store: &dyn WorklistStore, filed: &Filed) {
        let name = I::NAME;
        let Some(result) = study_result(store, filed) else {
            metrics::counter!("cxr_results_out_total", "interface" => name, "outcome" => "not_made")
                .increment(1);
            return;
        };
        let message = self.interface.message(&result);
        let key = result.control_id();
        match self
            .outbox
            .add(&key, &result.study_instance_uid, &message, now_ms())
        {
            Ok(_) => {
                metrics::counter!("cxr_results_out_total", "interface" => name, "outcome" => "queued")
                    .increment(1);
                self.wake.notify_one();
            }
            Err(e) => {
                metrics::counter!("cxr_results_out_total", "interface" => name, "outcome" => "not_queued")
                    .increment(1);
                tracing::error!(interface = name, error = %e, key = %key, "a result could not be queued");
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
        let start = buf
            .iter()
            .position(|&b| b == hl7::START)
            .map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&buf[start..]).into_owned();
        Ack::parse(&text).ok_or_else(|| SendError::Answer("no MSA segment".into()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SendError::Transport(format!("no acknowledgement within {timeout:?}")))?
}

/// The results interfaces that are configured: sinks to add to the
/// pipeline, their outboxes, their senders running.
#[derive(Default)]
pub struct ResultsOut {
    /// Add each to the pipeline ([`cxr_pipeline::Pipeline::add_sink`]).
    pub sinks: Vec<Arc<dyn ResultSink>>,
    /// (interface, outbox) of each.
    pub outboxes: Vec<(&'static str, Arc<Outbox>)>,
}

/// Errors setting the interfaces up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
}

impl ResultsOut {
    /// Opens the outboxes in `data_dir` and starts a sender for each
    /// configured interface (none when neither `[hl7]` nor `[fhir]` is
    /// set). The senders stop when `stopping` turns true or is dropped.
    pub fn start(
        hl7: &Hl7Config,
        fhir: &FhirConfig,
        data_dir: &Path,
        stopping: watch::Receiver<bool>,
    ) -> Result<ResultsOut, SetupError> {
        let mut out = ResultsOut::default();
        if let Some(destination) = hl7.destination.clone() {
            let interface = Mllp {
                destination,
                parties: hl7.parties(),
                timeout: Duration::from_secs(hl7.timeout_s.max(1)),
            };
            out.add(interface, hl7.retry(), data_dir, stopping.clone())?;
        }
        if let Some(base) = fhir.base_url.clone() {
            let uri: http::Uri = base
                .parse()
                .map_err(|_| SetupError::Config(format!("fhir.base_url `{base}` is not a URL")))?;
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => {
                    return Err(SetupError::Config(format!(
                        "fhir.base_url `{base}` is not http(s)"
                    )))
                }
            };
            let client = HttpClient::new(https, fhir.ca_file.as_deref())
                .map_err(|e| SetupError::Config(format!("fhir: {e}")))?;
            let interface = Fhir {
                // A transaction is POSTed to the base itself.
                url: base.trim_end_matches('/').to_string(),
                token_file: fhir.token_file.clone(),
                systems: fhir::Systems {
                    base_url: base.trim_end_matches('/').to_string(),
                    patient_id_system: fhir.patient_id_system.clone(),
                    accession_system: fhir.accession_system.clone(),
                },
                client,
                timeout: Duration::from_secs(fhir.timeout_s.max(1)),
            };
            let retry = Retry {
                initial_s: fhir.retry_initial_s,
                max_s: fhir.retry_max_s,
                give_up_after_h: fhir.give_up_after_h,
            };
            out.add(interface, retry, data_dir, stopping)?;
        }
        Ok(out)
    }

    fn add<I: Interface>(
        &mut self,
        interface: I,
        retry: Retry,
        data_dir: &Path,
        stopping: watch::Receiver<bool>,
    ) -> Result<(), SetupError> {
        let outbox = Arc::new(Outbox::open(&outbox_path(data_dir, I::NAME))?);
        let wake = Arc::new(Notify::new());
        let interface = Arc::new(interface);
        self.sinks.push(Arc::new(Sink {
            interface: Arc::clone(&interface),
            outbox: Arc::clone(&outbox),
            wake: Arc::clone(&wake),
        }));
        gauges(I::NAME, &outbox);
        tokio::spawn(deliver(
            interface,
            retry,
            Arc::clone(&outbox),
            wake,
            stopping,
        ));
        self.outboxes.push((I::NAME, outbox));
        Ok(())
    }
}

fn gauges(name: &'static str, outbox: &Outbox) {
    if let Ok(t) = outbox.tally() {
        for (state, n) in [("ready", t.ready), ("sent", t.sent), ("failed", t.failed)] {
            metrics::gauge!("cxr_results_out_outbox", "interface" => name, "state" => state)
                .set(n as f64);
        }
    }
}

async fn deliver<I: Interface>(
    interface: Arc<I>,
    retry: Retry,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
) {
    let name = I::NAME;
    let give_up_ms = (retry.give_up_after_h as i64).saturating_mul(3_600_000);
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
                tracing::error!(interface = name, error = %e, "outbox unreadable; retrying");
                None
            }
            Err(_) => return,
        };
        let wait = match &due {
            None => Duration::from_secs(60),
            Some(d) => Duration::from_millis((d.next_attempt_ms - now_ms()).max(0) as u64),
        };
        let due = match due {
            Some(d) if wait.is_zero() => d,
            _ => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    changed = stopping.changed() => if changed.is_err() { return },
                }
                continue;
            }
        };
        let delivery = interface.deliver(&due.key, &due.message).await;
        let now = now_ms();
        let delivery = match delivery {
            Delivery::Retry(e) if now - due.created_ms >= give_up_ms => {
                Delivery::Rejected(format!("given up: {e}"))
            }
            d => d,
        };
        let key = due.key.clone();
        let backoff = retry.backoff_ms(due.attempts + 1);
        let outbox2 = Arc::clone(&outbox);
        let recorded = delivery.clone();
        let written = tokio::task::spawn_blocking(move || match &recorded {
            Delivery::Accepted => outbox2.sent(due.id, now),
            Delivery::Rejected(e) => outbox2.fail(due.id, e),
            Delivery::Retry(e) => outbox2.retry(due.id, e, now + backoff),
        })
        .await;
        let outcome = match &delivery {
            Delivery::Accepted => {
                tracing::info!(interface = name, key = %key, "result accepted");
                "sent"
            }
            Delivery::Rejected(e) => {
                tracing::error!(interface = name, key = %key, error = %e, "result refused or given up; kept in the outbox");
                "failed"
            }
            Delivery::Retry(e) => {
                tracing::warn!(interface = name, key = %key, error = %e, retry_in_ms = backoff, "result not delivered; will retry");
                "retried"
            }
        };
        metrics::counter!("cxr_results_out_total", "interface" => name, "outcome" => outcome)
            .increment(1);
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(
                interface = name,
                "the outbox could not record a delivery; stopping its sender"
            );
            return;
        }
        gauges(name, &outbox);
    }
}
