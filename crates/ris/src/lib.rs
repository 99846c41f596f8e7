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
//! MLLP may run over TLS (`tls = true`, with a client certificate for
//! mutual TLS). With `order_listen`, the RIS's orders (ORM^O01, OMI^O23)
//! are taken over MLLP ([`orders`]) and each result goes back under the
//! order's numbers, provider, visit and patient identifier.
//!
//! With a PostgreSQL worklist the outboxes are a table of that database,
//! shared by the replicas ([`outbox`]): any replica queues, one sends.

pub mod fhir;
pub mod hl7;
pub mod orders;
pub mod outbox;
mod outbox_pg;

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cxr_auth::outbound::{HttpClient, OutboundError, TlsClient};

use cxr_pipeline::{Filed, ResultSink};
use cxr_worklist::{now_ms, WorklistStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

pub use hl7::{Ack, AckVerdict, Parties, StudyFinding, StudyResult};
pub use orders::{Order, OrderStore, OrderStoreError};
pub use outbox::{Outbox, OutboxError, Requeued, Tally};

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
    /// MLLP over TLS (the RIS's certificate is verified).
    pub tls: bool,
    /// CA certificates (PEM) the RIS's certificate is checked against;
    /// unset: the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The name the RIS's certificate must carry; unset: the host of
    /// `destination`.
    pub server_name: Option<String>,
    /// Listen for the RIS's orders (ORM^O01, OMI^O23) over MLLP on this
    /// `host:port`; unset: no listener.
    pub order_listen: Option<String>,
    /// Addresses (`10.1.2.3`) or networks (`10.1.2.0/24`) allowed to send
    /// orders; required when `order_listen` is beyond loopback.
    pub order_allow: Vec<String>,
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
            tls: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            order_listen: None,
            order_allow: Vec::new(),
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

/// The interfaces' outboxes: in the shared database at `shared` (the
/// PostgreSQL worklist's URL) when given, else those that exist in the
/// data directory. (interface, outbox).
pub fn existing_outboxes(
    data_dir: &Path,
    shared: Option<&str>,
) -> Result<Vec<(&'static str, Outbox)>, OutboxError> {
    let mut out = Vec::new();
    for name in ["hl7", "fhir"] {
        if let Some(url) = shared {
            out.push((name, Outbox::open_shared(url, name)?));
            continue;
        }
        let path = outbox_path(data_dir, name);
        if path.exists() {
            out.push((name, Outbox::open(&path)?));
        }
    }
    Ok(out)
}

/// What a retention purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages sent before the cutoff.
    pub sent_messages: usize,
    /// Orders received before it.
    pub orders: usize,
}

/// Retention: deletes messages sent, and orders received, before
/// `cutoff_ms` (failed and waiting messages are kept).
/// `shared`: the PostgreSQL worklist's URL, when the outboxes are there.
pub fn purge(data_dir: &Path, shared: Option<&str>, cutoff_ms: i64) -> Result<Purged, SetupError> {
    let mut p = Purged::default();
    for (_, outbox) in existing_outboxes(data_dir, shared)? {
        p.sent_messages += outbox.purge_sent(cutoff_ms)?;
    }
    let orders = data_dir.join("orders.sqlite");
    if orders.exists() {
        p.orders = OrderStore::open(&orders)?.purge(cutoff_ms)?;
    }
    Ok(p)
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
        order: None,
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
    /// TLS and the name the RIS's certificate must carry.
    tls: Option<(TlsClient, String)>,
    parties: Parties,
    timeout: Duration,
}

impl Interface for Mllp {
    const NAME: &'static str = "hl7";

    fn message(&self, result: &StudyResult) -> String {
        hl7::oru_r01(result, &self.parties)
    }

    async fn deliver(&self, key: &str, message: &str) -> Delivery {
        let tls = self.tls.as_ref().map(|(c, name)| (c, name.as_str()));
        match send_mllp(&self.destination, tls, message, self.timeout).await {
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

/// One interface's queue: how a result becomes its message, and the
/// outbox it waits in.
trait Lane: Send + Sync {
    /// `hl7`, `fhir`.
    fn name(&self) -> &'static str;
    /// Makes the result's message and queues it (durable when it returns).
    fn queue(&self, result: &StudyResult);
}

struct Queue<I: Interface> {
    interface: Arc<I>,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
}

impl<I: Interface> Lane for Queue<I> {
    fn name(&self) -> &'static str {
        I::NAME
    }

    fn queue(&self, result: &StudyResult) {
        let name = I::NAME;
        let message = self.interface.message(result);
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

/// The pipeline's [`ResultSink`]: each filed result is read back from the
/// worklist once, matched to its order once, and queued for every
/// interface.
struct Sink {
    lanes: Vec<Arc<dyn Lane>>,
    orders: Option<Arc<OrderStore>>,
}

impl ResultSink for Sink {
    fn filed(&self, store: &dyn WorklistStore, filed: &Filed) {
        let Some(mut result) = study_result(store, filed) else {
            for lane in &self.lanes {
                metrics::counter!("cxr_results_out_total", "interface" => lane.name(), "outcome" => "not_made")
                    .increment(1);
            }
            return;
        };
        if let (Some(orders), false) = (&self.orders, result.accession_number.is_empty()) {
            match orders.get(&result.accession_number) {
                Ok(order) => result.order = order,
                Err(e) => tracing::error!(error = %e, "the RIS's order could not be read"),
            }
        }
        for lane in &self.lanes {
            lane.queue(&result);
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

/// Sends one message over MLLP (over TLS with `tls`: the client and the
/// name the server's certificate must carry) and reads its
/// acknowledgement.
pub async fn send_mllp(
    destination: &str,
    tls: Option<(&TlsClient, &str)>,
    message: &str,
    timeout: Duration,
) -> Result<Ack, SendError> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(destination)
            .await
            .map_err(|e| SendError::Transport(format!("connect {destination}: {e}")))?;
        match tls {
            None => exchange(tcp, message).await,
            Some((client, name)) => {
                let stream = client
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::Transport(e.to_string()))?;
                exchange(stream, message).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SendError::Transport(format!("no acknowledgement within {timeout:?}")))?
}

/// Writes a framed message and reads one framed answer, up to 1 MiB.
async fn exchange<S>(mut stream: S, message: &str) -> Result<Ack, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(&hl7::frame(message))
        .await
        .map_err(|e| SendError::Transport(format!("write: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| SendError::Transport(format!("write: {e}")))?;
    let block = match read_block(&mut stream, &mut Vec::new(), 1 << 20).await {
        Ok(Some(block)) => block,
        Ok(None) => {
            return Err(SendError::Transport(
                "closed without an acknowledgement".into(),
            ))
        }
        Err(BlockError::TooLarge) => {
            return Err(SendError::Answer("acknowledgement over 1 MiB".into()))
        }
        Err(BlockError::Io(e)) => return Err(SendError::Transport(format!("read: {e}"))),
    };
    let text = String::from_utf8_lossy(&block).into_owned();
    Ack::parse(&text).ok_or_else(|| SendError::Answer("no MSA segment".into()))
}

enum BlockError {
    TooLarge,
    Io(std::io::Error),
}

/// Reads one MLLP block (`<VT>…<FS><CR>`; bytes before `<VT>` are
/// skipped); `None` when the peer closed first. `buf` keeps what was read
/// past the block, for the next call.
async fn read_block<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<Vec<u8>>, BlockError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == [hl7::END, b'\r']) {
            let start = buf[..end]
                .iter()
                .position(|&b| b == hl7::START)
                .map_or(0, |i| i + 1);
            let block = buf[start..end].to_vec();
            buf.drain(..end + 2);
            return Ok(Some(block));
        }
        if buf.len() > max {
            return Err(BlockError::TooLarge);
        }
        let n = stream.read(&mut chunk).await.map_err(BlockError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The results interfaces that are configured: sinks to add to the
/// pipeline, their outboxes, their senders running.
#[derive(Default)]
pub struct ResultsOut {
    /// Add each to the pipeline ([`cxr_pipeline::Pipeline::add_sink`]):
    /// one, when any interface is configured.
    pub sinks: Vec<Arc<dyn ResultSink>>,
    /// The configured interfaces' queues.
    lanes: Vec<Arc<dyn Lane>>,
    /// (interface, outbox) of each.
    pub outboxes: Vec<(&'static str, Arc<Outbox>)>,
    /// The RIS's orders, when `[hl7] order_listen` is set.
    pub orders: Option<Arc<OrderStore>>,
    /// Where the order listener listens.
    pub order_address: Option<std::net::SocketAddr>,
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
    /// The order store could not be opened.
    #[error(transparent)]
    Orders(#[from] OrderStoreError),
    /// The order listener could not listen.
    #[error("hl7.order_listen {0}: {1}")]
    Listen(String, std::io::Error),
}

impl ResultsOut {
    /// Opens the outboxes in `data_dir` and starts a sender for each
    /// configured interface (none when neither `[hl7]` nor `[fhir]` is
    /// set), and the order listener when `[hl7] order_listen` is set. With
    /// `shared` (the PostgreSQL worklist's URL), the outboxes are in that
    /// database, shared by the replicas. The tasks stop when `stopping`
    /// turns true or is dropped.
    pub async fn start(
        hl7: &Hl7Config,
        fhir: &FhirConfig,
        data_dir: &Path,
        shared: Option<&str>,
        stopping: watch::Receiver<bool>,
    ) -> Result<ResultsOut, SetupError> {
        let mut out = ResultsOut::default();
        if let Some(listen) = &hl7.order_listen {
            let allow = parse_allow(&hl7.order_allow)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| SetupError::Listen(listen.clone(), e))?;
            let address = listener
                .local_addr()
                .map_err(|e| SetupError::Listen(listen.clone(), e))?;
            if !address.ip().is_loopback() && allow.is_empty() {
                return Err(SetupError::Config(format!(
                    "hl7.order_listen {listen} is beyond loopback: set hl7.order_allow to the RIS's addresses"
                )));
            }
            let store = Arc::new(OrderStore::open(&data_dir.join("orders.sqlite"))?);
            tokio::spawn(listen_orders(
                listener,
                allow,
                Arc::clone(&store),
                hl7.parties(),
                stopping.clone(),
            ));
            out.orders = Some(store);
            out.order_address = Some(address);
        }
        if let Some(destination) = hl7.destination.clone() {
            let tls = if hl7.tls {
                let identity = match (&hl7.cert_file, &hl7.key_file) {
                    (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                    (None, None) => None,
                    _ => {
                        return Err(SetupError::Config(
                            "hl7.cert_file and hl7.key_file go together".into(),
                        ))
                    }
                };
                let client = TlsClient::new(hl7.ca_file.as_deref(), identity)
                    .map_err(|e| SetupError::Config(format!("hl7 TLS: {e}")))?;
                let name = match &hl7.server_name {
                    Some(n) => n.clone(),
                    None => destination
                        .rsplit_once(':')
                        .map_or(destination.as_str(), |(h, _)| h)
                        .to_string(),
                };
                Some((client, name))
            } else {
                None
            };
            let interface = Mllp {
                destination,
                tls,
                parties: hl7.parties(),
                timeout: Duration::from_secs(hl7.timeout_s.max(1)),
            };
            out.add(interface, hl7.retry(), data_dir, shared, stopping.clone())?;
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
            out.add(interface, retry, data_dir, shared, stopping)?;
        }
        if !out.lanes.is_empty() {
            out.sinks.push(Arc::new(Sink {
                lanes: out.lanes.clone(),
                orders: out.orders.clone(),
            }));
        }
        Ok(out)
    }

    fn add<I: Interface>(
        &mut self,
        interface: I,
        retry: Retry,
        data_dir: &Path,
        shared: Option<&str>,
        stopping: watch::Receiver<bool>,
    ) -> Result<(), SetupError> {
        let outbox = Arc::new(match shared {
            Some(url) => Outbox::open_shared(url, I::NAME)?,
            None => Outbox::open(&outbox_path(data_dir, I::NAME))?,
        });
        let wake = Arc::new(Notify::new());
        let interface = Arc::new(interface);
        self.lanes.push(Arc::new(Queue {
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
        // In a shared outbox one replica sends; the others wait their turn.
        let next = {
            let outbox = Arc::clone(&outbox);
            tokio::task::spawn_blocking(move || {
                if outbox.lead()? {
                    outbox.next()
                } else {
                    Ok(None)
                }
            })
            .await
        };
        let due = match next {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!(interface = name, error = %e, "outbox unreadable; retrying");
                None
            }
            Err(_) => return,
        };
        // Idle, the queue is looked at every few seconds: a message an
        // operator requeued (`cxr-triage results requeue`) goes soon.
        let wait = match &due {
            None => Duration::from_secs(5),
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

/// `order_allow` entries: (network, prefix length).
fn parse_allow(entries: &[String]) -> Result<Vec<(IpAddr, u8)>, SetupError> {
    entries
        .iter()
        .map(|e| {
            let (addr, len) = match e.split_once('/') {
                Some((a, l)) => (a, l.parse::<u8>().ok()),
                None => (e.as_str(), None),
            };
            let ip: IpAddr = addr.trim().parse().map_err(|_| {
                SetupError::Config(format!("hl7.order_allow `{e}` is not an address"))
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None if !e.contains('/') => max,
                Some(l) if l <= max => l,
                _ => {
                    return Err(SetupError::Config(format!(
                        "hl7.order_allow `{e}`: bad prefix length"
                    )))
                }
            };
            Ok((ip, len))
        })
        .collect()
}

/// Whether `ip` is in one of the allowed networks (all are, when none is
/// listed).
fn allowed(allow: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (u128::from(u32::from(v4)), 32),
                None => (u128::from(v6), 128),
            },
        }
    }
    if allow.is_empty() {
        return true;
    }
    let (a, width) = bits(ip);
    allow.iter().any(|&(net, len)| {
        let (n, w) = bits(net);
        if w != width {
            return false;
        }
        let shift = u32::from(width - len.min(width));
        len == 0 || (a >> shift) == (n >> shift)
    })
}

/// Longest order message taken.
const MAX_ORDER: usize = 1 << 20;
/// Connections served at once.
const MAX_ORDER_CONNECTIONS: usize = 32;
/// A connection quiet this long is closed.
const ORDER_IDLE: Duration = Duration::from_secs(300);

/// Takes the RIS's orders: each MLLP message is read, stored and
/// acknowledged in turn, on persistent connections.
async fn listen_orders(
    listener: tokio::net::TcpListener,
    allow: Vec<(IpAddr, u8)>,
    store: Arc<OrderStore>,
    parties: Parties,
    mut stopping: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ORDER_CONNECTIONS));
    let parties = Arc::new(parties);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() { return }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "order listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&allow, peer.ip()) {
            tracing::warn!(peer = %peer.ip(), "order listener: address not in hl7.order_allow; closed");
            metrics::counter!("cxr_orders_in_total", "outcome" => "refused_peer").increment(1);
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("order listener: too many connections; closed");
            continue;
        };
        let (store, parties) = (Arc::clone(&store), Arc::clone(&parties));
        tokio::spawn(async move {
            serve_orders(stream, store, parties).await;
            drop(slot);
        });
    }
}

async fn serve_orders(
    mut stream: tokio::net::TcpStream,
    store: Arc<OrderStore>,
    parties: Arc<Parties>,
) {
    let mut buf = Vec::new();
    loop {
        let block =
            match tokio::time::timeout(ORDER_IDLE, read_block(&mut stream, &mut buf, MAX_ORDER))
                .await
            {
                Ok(Ok(Some(block))) => block,
                Ok(Err(BlockError::TooLarge)) => {
                    tracing::warn!("order listener: a message over 1 MiB; connection closed");
                    metrics::counter!("cxr_orders_in_total", "outcome" => "too_large").increment(1);
                    return;
                }
                _ => return,
            };
        // UTF-8 (MSH-18 UNICODE UTF-8, or ASCII); anything else read as
        // ISO 8859-1, which maps every byte.
        let text = match String::from_utf8(block) {
            Ok(t) => t,
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        let now = now_ms();
        let parsed = orders::parse(&text, now);
        let refusal = match parsed {
            Ok(list) => {
                let n = list.len();
                let store = Arc::clone(&store);
                match tokio::task::spawn_blocking(move || store.put(&list)).await {
                    Ok(Ok(())) => {
                        tracing::info!(orders = n, "order message stored");
                        None
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "an order could not be stored");
                        Some(orders::Refusal::Invalid(
                            "the order could not be stored".into(),
                        ))
                    }
                    Err(_) => return,
                }
            }
            Err(r) => {
                tracing::warn!(reason = ?r, "order message refused");
                Some(r)
            }
        };
        let outcome = match &refusal {
            None => "stored",
            Some(orders::Refusal::Unsupported(_)) => "rejected",
            Some(orders::Refusal::Invalid(_)) => "error",
        };
        metrics::counter!("cxr_orders_in_total", "outcome" => outcome).increment(1);
        let ack = orders::ack(
            &text,
            refusal.as_ref(),
            &parties.sending_application,
            &parties.sending_facility,
            now,
        );
        if stream.write_all(&hl7::frame(&ack)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_senders_are_checked_against_the_allowed_networks() {
        let allow = parse_allow(&["10.1.2.0/24".into(), "192.168.0.7".into()]).unwrap();
        assert!(allowed(&allow, "10.1.2.200".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:10.1.2.9".parse().unwrap()));
        assert!(!allowed(&allow, "10.1.3.1".parse().unwrap()));
        assert!(allowed(&allow, "192.168.0.7".parse().unwrap()));
        assert!(!allowed(&allow, "192.168.0.8".parse().unwrap()));
        assert!(allowed(&[], "8.8.8.8".parse().unwrap()));
        assert!(parse_allow(&["10.0.0.0/33".into()]).is_err());
        assert!(parse_allow(&["ris.example".into()]).is_err());
    }

    #[tokio::test]
    async fn mllp_blocks_are_read_one_at_a_time_from_one_connection() {
        let data: &[u8] = b"noise\x0bA\r\x1c\r\x0bB\r\x1c\r\x0bC";
        let mut reader = data;
        let mut buf = Vec::new();
        let a = read_block(&mut reader, &mut buf, 100).await.ok().flatten();
        assert_eq!(a.as_deref(), Some(&b"A\r"[..]));
        let b = read_block(&mut reader, &mut buf, 100).await.ok().flatten();
        assert_eq!(b.as_deref(), Some(&b"B\r"[..]));
        assert!(matches!(
            read_block(&mut reader, &mut buf, 100).await,
            Ok(None)
        ));
    }
}
