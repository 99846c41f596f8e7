//! The DICOM listener: Verification (C-ECHO) and Storage (C-STORE) as SCP
//! over dicom-rs's async upper layer.
//!
//! An association is accepted only when it calls this node's AE title and,
//! if a list is configured, comes from an allowed calling AE title; beyond
//! `max_associations` at once a caller is rejected as transient ("local
//! limit exceeded") so that it retries. Presentation contexts are accepted
//! for Verification and the radiography storage classes
//! ([`uids::STORAGE_SOP_CLASSES`]) in every transfer syntax ingest decodes;
//! others are refused per context. A C-STORE is answered with success only
//! once [`Intake::receive`] has the object durably in the spool. An
//! association that is aborted or drops mid-object leaves nothing behind:
//! the partial object was never acknowledged, and the sender sends it again.

use std::sync::Arc;
use std::time::Duration;

use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::association::{Association, AsyncServerAssociation};
use dicom_ul::pdu::{
    AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PDataValue, PDataValueType, PresentationContextNegotiated,
    PresentationContextResultReason, UserIdentity,
};
use dicom_ul::Pdu;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::config::DicomConfig;
use super::dimse::{self, command_field, status, Command};
use super::intake::{Intake, Object, Received};
use super::spool::Partial;
use super::uids;

/// Who may associate: the called AE title must be ours; the calling AE
/// title must be listed, unless the list is empty.
#[derive(Debug, Clone)]
struct CallerPolicy {
    allowed: Vec<String>,
}

impl AccessControl for CallerPolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let calling = calling_ae_title.trim();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.trim() == calling) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

type Options = ServerAssociationOptions<
    'static,
    CallerPolicy,
    dicom_ul::association::server::DefaultNegotiation,
>;

fn association_options(config: &DicomConfig) -> Options {
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(CallerPolicy {
            allowed: config.allowed_calling_aes.clone(),
        })
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.max_pdu)
        .read_timeout(Duration::from_secs(config.timeout_s))
        .write_timeout(Duration::from_secs(config.timeout_s))
        .with_abstract_syntax(uids::VERIFICATION);
    for (uid, _) in uids::STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(uid);
    }
    for (uid, _) in uids::ACCEPTED_TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(uid);
    }
    options
}

/// The listener's shared state.
pub struct Listener {
    options: Options,
    config: Arc<DicomConfig>,
    intake: Arc<Intake>,
    slots: Arc<Semaphore>,
    per_peer: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One peer address's share of the association slots, given back on drop.
struct PeerSlot {
    peer: std::net::IpAddr,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = match self.counts.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(n) = counts.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

impl Listener {
    /// A listener for `config` feeding `intake`.
    pub fn new(config: Arc<DicomConfig>, intake: Arc<Intake>) -> Listener {
        Listener {
            options: association_options(&config),
            slots: Arc::new(Semaphore::new(config.max_associations)),
            per_peer: Arc::default(),
            config,
            intake,
        }
    }

    /// Takes one of `peer`'s association slots, unless it holds its share.
    fn peer_slot(&self, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut counts = match self.per_peer.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = counts.entry(peer).or_insert(0);
        if *n >= self.config.max_associations_per_peer {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peer,
            counts: Arc::clone(&self.per_peer),
        })
    }

    /// Accepts associations on `listener` until `stop` turns true; then
    /// waits up to `timeout_s` for those in progress and drops the rest
    /// (their unanswered objects are resent by their senders).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let this = Arc::clone(&self);
                        let Some(peer_slot) = self.peer_slot(peer.ip()) else {
                            running.spawn(async move { this.reject_busy(socket, peer, true).await });
                            continue;
                        };
                        match Arc::clone(&self.slots).try_acquire_owned() {
                            Ok(slot) => {
                                running.spawn(async move {
                                    this.association(socket, peer).await;
                                    drop(slot);
                                    drop(peer_slot);
                                });
                            }
                            Err(_) => {
                                drop(peer_slot);
                                running.spawn(async move { this.reject_busy(socket, peer, false).await });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "DICOM accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        let grace = Duration::from_secs(self.config.timeout_s.min(10));
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                associations = running.len(),
                "DICOM associations still open at shutdown: dropped (senders will resend)"
            );
            running.abort_all();
        }
    }

    /// Rejects a caller beyond `max_associations`: reads its A-ASSOCIATE-RQ
    /// (bounded) and answers A-ASSOCIATE-RJ, transient, local limit exceeded.
    /// `per_peer`: the caller's address holds its share
    /// (`max_associations_per_peer`), not the whole listener.
    async fn reject_busy(&self, mut socket: TcpStream, peer: std::net::SocketAddr, per_peer: bool) {
        if per_peer {
            metrics::counter!("cxr_dicom_associations_total", "result" => "rejected_peer_busy")
                .increment(1);
            tracing::warn!(%peer, max = self.config.max_associations_per_peer, "DICOM association rejected: too many at once from this address");
        } else {
            metrics::counter!("cxr_dicom_associations_total", "result" => "rejected_busy")
                .increment(1);
            tracing::warn!(%peer, max = self.config.max_associations, "DICOM association rejected: too many at once");
        }
        let read = async {
            let mut header = [0u8; 6];
            socket.read_exact(&mut header).await?;
            let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as u64;
            let mut body = (&mut socket).take(len.min(1 << 20));
            tokio::io::copy(&mut body, &mut tokio::io::sink()).await?;
            Ok::<u8, std::io::Error>(header[0])
        };
        let Ok(Ok(0x01)) =
            tokio::time::timeout(Duration::from_secs(self.config.setup_timeout_s), read).await
        else {
            return;
        };
        let rj = Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        });
        let mut out = Vec::new();
        if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
            let _ = socket.write_all(&out).await;
        }
        let _ = socket.shutdown().await;
    }

    /// Negotiates and serves one association.
    async fn association(&self, socket: TcpStream, peer: std::net::SocketAddr) {
        let setup = Duration::from_secs(self.config.setup_timeout_s);
        let established = tokio::time::timeout(setup, self.options.establish_async(socket)).await;
        let Ok(established) = established else {
            metrics::counter!("cxr_dicom_associations_total", "result" => "setup_timeout")
                .increment(1);
            tracing::warn!(%peer, seconds = self.config.setup_timeout_s, "DICOM connection closed: no association set up in time");
            return;
        };
        let mut association = match established {
            Ok(a) => a,
            Err(e) => {
                let (result, why) = match &e {
                    dicom_ul::association::Error::Rejected { association_rj, .. } => {
                        let result = match &association_rj.source {
                            AssociationRJSource::ServiceUser(
                                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                            ) => "rejected_calling_ae",
                            AssociationRJSource::ServiceUser(
                                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
                            ) => "rejected_called_ae",
                            _ => "rejected",
                        };
                        (result, association_rj.source.to_string())
                    }
                    other => ("failed", other.to_string()),
                };
                metrics::counter!("cxr_dicom_associations_total", "result" => result).increment(1);
                tracing::warn!(%peer, reason = %why, "DICOM association not established");
                return;
            }
        };
        metrics::counter!("cxr_dicom_associations_total", "result" => "accepted").increment(1);
        let calling = association.peer_ae_title().trim().to_string();
        for pc in association.presentation_contexts() {
            if pc.reason != PresentationContextResultReason::Acceptance {
                tracing::debug!(
                    %peer,
                    context = pc.id,
                    abstract_syntax = %trim_uid(&pc.abstract_syntax),
                    reason = %pc.reason,
                    "presentation context refused"
                );
            }
        }
        let accepted = association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .count();
        tracing::info!(%peer, calling_ae = %calling, contexts = accepted, "DICOM association accepted");
        let mut session = Session {
            listener: self,
            calling,
            peer,
            stored: 0,
            failed: 0,
        };
        let end = session.run(&mut association).await;
        tracing::info!(
            %peer,
            calling_ae = %session.calling,
            stored = session.stored,
            failed = session.failed,
            end = end.describe(),
            "DICOM association ended"
        );
        match end {
            End::Released => {
                let _ = association.send(&Pdu::ReleaseRP).await;
            }
            End::ProtocolError(_) => {
                metrics::counter!("cxr_dicom_associations_total", "result" => "aborted_by_us")
                    .increment(1);
                let _ = association.abort().await;
            }
            End::PeerAborted | End::Closed(_) => {
                metrics::counter!("cxr_dicom_associations_total", "result" => "aborted_by_peer")
                    .increment(1);
            }
        }
    }
}

/// How an association ended.
enum End {
    /// A-RELEASE.
    Released,
    /// The peer sent A-ABORT.
    PeerAborted,
    /// The connection dropped or timed out.
    Closed(String),
    /// The peer broke the protocol; we abort.
    ProtocolError(String),
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Released => "released".into(),
            End::PeerAborted => "aborted by peer".into(),
            End::Closed(why) => format!("connection lost: {why}"),
            End::ProtocolError(why) => format!("aborted: {why}"),
        }
    }
}

/// A DIMSE message being assembled from P-DATA fragments.
struct Message {
    context: u8,
    command: Vec<u8>,
    parsed: Option<Command>,
    /// For C-STORE: the spool file being written, file header then data
    /// set as received.
    incoming: Option<Incoming>,
    /// The data set exceeded the limit: the rest is read and dropped.
    oversized: bool,
    /// The object is refused before its data set arrives (status, reason);
    /// the data set is read and dropped.
    refusal: Option<(u16, String)>,
}

/// A C-STORE's object going to disk as its fragments arrive, so that an
/// association holds a write buffer, not the object.
struct Incoming {
    partial: Partial,
    writer: BufWriter<tokio::fs::File>,
    written: u64,
}

/// The write buffer between P-DATA fragments and the spool file.
const SPOOL_WRITE_BUFFER: usize = 256 << 10;

impl Incoming {
    async fn start(intake: &Intake, header: &[u8]) -> std::io::Result<Incoming> {
        let (partial, file) = intake.partial()?;
        let mut writer =
            BufWriter::with_capacity(SPOOL_WRITE_BUFFER, tokio::fs::File::from_std(file));
        writer.write_all(header).await?;
        Ok(Incoming {
            partial,
            writer,
            written: header.len() as u64,
        })
    }

    async fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(data).await?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Flushes and closes the file; returns it for the intake.
    async fn finish(mut self) -> std::io::Result<Partial> {
        self.writer.flush().await?;
        let mut file = self.writer.into_inner();
        file.flush().await?;
        drop(file);
        Ok(self.partial)
    }
}

struct Session<'a> {
    listener: &'a Listener,
    calling: String,
    peer: std::net::SocketAddr,
    stored: u64,
    failed: u64,
}

impl Session<'_> {
    async fn run(&mut self, association: &mut AsyncServerAssociation<TcpStream>) -> End {
        let contexts: Vec<PresentationContextNegotiated> = association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .cloned()
            .collect();
        let peer_max = association.peer_max_pdu_length();
        let max_object = self.listener.config.max_object_mib << 20;
        let mut message: Option<Message> = None;
        loop {
            let pdu = match association.receive().await {
                Ok(pdu) => pdu,
                Err(e) => return End::Closed(e.to_string()),
            };
            let values = match pdu {
                Pdu::PData { data } => data,
                Pdu::ReleaseRQ => {
                    return if message.is_some() {
                        End::ProtocolError("release requested mid-message".into())
                    } else {
                        End::Released
                    };
                }
                Pdu::AbortRQ { source } => {
                    if let AbortRQSource::ServiceProvider(r) = source {
                        tracing::debug!(reason = %r, "peer provider abort");
                    }
                    return End::PeerAborted;
                }
                other => {
                    return End::ProtocolError(format!("unexpected PDU {}", pdu_name(&other)));
                }
            };
            for PDataValue {
                presentation_context_id,
                value_type,
                is_last,
                data,
            } in values
            {
                let Some(pc) = contexts.iter().find(|pc| pc.id == presentation_context_id) else {
                    return End::ProtocolError(format!(
                        "P-DATA on presentation context {presentation_context_id}, which was not accepted"
                    ));
                };
                let m = message.get_or_insert_with(|| Message {
                    context: presentation_context_id,
                    command: Vec::new(),
                    parsed: None,
                    incoming: None,
                    oversized: false,
                    refusal: None,
                });
                if m.context != presentation_context_id {
                    return End::ProtocolError(
                        "message fragments on two presentation contexts".into(),
                    );
                }
                match value_type {
                    PDataValueType::Command => {
                        if m.parsed.is_some() {
                            return End::ProtocolError(
                                "command fragment after a complete command".into(),
                            );
                        }
                        m.command.extend_from_slice(&data);
                        if m.command.len() > 1 << 16 {
                            return End::ProtocolError("command set larger than 64 KiB".into());
                        }
                        if !is_last {
                            continue;
                        }
                        let command = match Command::parse(&m.command) {
                            Ok(c) => c,
                            Err(e) => return End::ProtocolError(e.to_string()),
                        };
                        let expects_data = command.has_data_set();
                        m.parsed = Some(command);
                        if expects_data {
                            match self.begin_store(m, pc).await {
                                Ok(()) => continue,
                                Err(end) => return end,
                            }
                        }
                    }
                    PDataValueType::Data => {
                        if m.parsed.is_none() {
                            return End::ProtocolError("data fragment before its command".into());
                        }
                        if let Some(incoming) = m.incoming.as_mut() {
                            if incoming.written + data.len() as u64 > max_object {
                                // Dropping it removes what was written.
                                m.oversized = true;
                                m.incoming = None;
                            } else if let Err(e) = incoming.append(&data).await {
                                tracing::error!(error = %e, "DICOM spool write failed");
                                m.refusal = Some((
                                    status::OUT_OF_RESOURCES,
                                    format!("spool write failed: {}", e.kind()),
                                ));
                                m.incoming = None;
                            }
                        }
                        if !is_last {
                            continue;
                        }
                    }
                }
                // The message is complete.
                let Some(done) = message.take() else { continue };
                let reply = match self.respond(done).await {
                    Ok(reply) => reply,
                    Err(end) => return end,
                };
                if let Err(e) = send_command(association, pc.id, reply, peer_max).await {
                    return End::Closed(e);
                }
            }
        }
    }

    /// Checks a C-STORE-RQ before its data set arrives and starts its spool
    /// file (header first, the data set is appended as it arrives).
    async fn begin_store(
        &self,
        m: &mut Message,
        pc: &PresentationContextNegotiated,
    ) -> Result<(), End> {
        let command = m
            .parsed
            .as_ref()
            .ok_or_else(|| End::ProtocolError("no command".into()))?;
        let field = command
            .command_field()
            .map_err(|e| End::ProtocolError(e.to_string()))?;
        if field != command_field::C_STORE_RQ {
            return Err(End::ProtocolError(format!(
                "DIMSE command 0x{field:04X} is not supported (C-ECHO and C-STORE only)"
            )));
        }
        let (class, instance) = match (
            command.affected_sop_class(),
            command.affected_sop_instance(),
        ) {
            (Ok(c), Ok(i)) => (c, i),
            (Err(e), _) | (_, Err(e)) => {
                m.refusal = Some((status::CANNOT_UNDERSTAND, e.to_string()));
                return Ok(());
            }
        };
        if !uids::is_accepted_storage(&class) || class != trim_uid(&pc.abstract_syntax) {
            m.refusal = Some((
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class not accepted on this presentation context".into(),
            ));
            return Ok(());
        }
        match super::spool::file_header(
            &pc.transfer_syntax,
            &class,
            &instance,
            &self.calling,
            &self.listener.config.ae_title,
        ) {
            Ok(header) => match Incoming::start(&self.listener.intake, &header).await {
                Ok(incoming) => m.incoming = Some(incoming),
                Err(e) => {
                    tracing::error!(error = %e, "DICOM spool write failed");
                    m.refusal = Some((
                        status::OUT_OF_RESOURCES,
                        format!("spool write failed: {}", e.kind()),
                    ));
                }
            },
            Err(e) => m.refusal = Some((status::CANNOT_UNDERSTAND, e)),
        }
        Ok(())
    }

    /// Handles a complete message; returns the response command set.
    async fn respond(&mut self, m: Message) -> Result<Vec<u8>, End> {
        let command = m
            .parsed
            .ok_or_else(|| End::ProtocolError("no command".into()))?;
        let field = command
            .command_field()
            .map_err(|e| End::ProtocolError(e.to_string()))?;
        let id = command
            .message_id()
            .map_err(|e| End::ProtocolError(e.to_string()))?;
        match field {
            command_field::C_ECHO_RQ => {
                metrics::counter!("cxr_dicom_echo_total").increment(1);
                Ok(dimse::echo_response(id, uids::VERIFICATION))
            }
            command_field::C_STORE_RQ => {
                let class = command.affected_sop_class().unwrap_or_default();
                let instance = command.affected_sop_instance().unwrap_or_default();
                let (code, comment) = if let Some((code, why)) = m.refusal {
                    (code, Some(why))
                } else if !command.has_data_set() {
                    (status::CANNOT_UNDERSTAND, Some("no data set".to_string()))
                } else if m.oversized {
                    (
                        status::OUT_OF_RESOURCES,
                        Some(format!(
                            "object larger than {} MiB",
                            self.listener.config.max_object_mib
                        )),
                    )
                } else {
                    match m.incoming {
                        None => (status::CANNOT_UNDERSTAND, Some("no data set".to_string())),
                        Some(incoming) => match incoming.finish().await {
                            Err(e) => {
                                tracing::error!(error = %e, "DICOM spool write failed");
                                (
                                    status::OUT_OF_RESOURCES,
                                    Some(format!("spool write failed: {}", e.kind())),
                                )
                            }
                            Ok(partial) => match self
                                .listener
                                .intake
                                .receive(Received {
                                    file: Object::Spooled(partial),
                                    calling_ae: self.calling.clone(),
                                    via: "C-STORE",
                                    address: self.peer.to_string(),
                                })
                                .await
                            {
                                Ok(()) => (status::SUCCESS, None),
                                Err(refusal) => (refusal.status, Some(refusal.comment)),
                            },
                        },
                    }
                };
                let outcome = if code == status::SUCCESS {
                    self.stored += 1;
                    "stored"
                } else {
                    self.failed += 1;
                    tracing::warn!(
                        calling_ae = %self.calling,
                        status = format!("0x{code:04X}"),
                        reason = comment.as_deref().unwrap_or(""),
                        "C-STORE refused"
                    );
                    "refused"
                };
                metrics::counter!("cxr_dicom_stores_total", "result" => outcome).increment(1);
                Ok(dimse::store_response(
                    id,
                    &class,
                    &instance,
                    code,
                    comment.as_deref(),
                ))
            }
            other => Err(End::ProtocolError(format!(
                "DIMSE command 0x{other:04X} is not supported (C-ECHO and C-STORE only)"
            ))),
        }
    }
}

/// Sends a command set in P-DATA (split if the peer's PDU limit needs it).
async fn send_command(
    association: &mut AsyncServerAssociation<TcpStream>,
    context: u8,
    command: Vec<u8>,
    peer_max_pdu: u32,
) -> Result<(), String> {
    send_fragments(
        association,
        context,
        PDataValueType::Command,
        &command,
        peer_max_pdu,
    )
    .await
}

/// Sends `bytes` as P-DATA fragments of one message part, each PDU within
/// the peer's maximum length.
pub(crate) async fn send_fragments<A>(
    association: &mut A,
    context: u8,
    value_type: PDataValueType,
    bytes: &[u8],
    peer_max_pdu: u32,
) -> Result<(), String>
where
    A: dicom_ul::association::AsyncAssociation<TcpStream> + Send,
{
    // A PDU carries one PDV item: 4 bytes of item length, context ID and
    // message control header.
    let room = (peer_max_pdu.max(4096) as usize).saturating_sub(6).max(1);
    let mut chunks = bytes.chunks(room).peekable();
    if chunks.peek().is_none() {
        return Err("empty message".into());
    }
    while let Some(chunk) = chunks.next() {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type: value_type.clone(),
                is_last: chunks.peek().is_none(),
                data: chunk.to_vec(),
            }],
        };
        dicom_ul::association::AsyncAssociation::send(association, &pdu)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::Unknown { .. } => "unknown",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}
