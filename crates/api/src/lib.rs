//! # cxr-api: the gRPC front
//!
//! The `cxr_triage.v1.Triage` service generated from the repository's
//! `proto/` ([`pb`]), and its tonic handlers ([`TriageApi`], behind
//! [`Admitted`], which refuses an upload before its body is read when the
//! service is full). It only translates between protobuf messages and the
//! [`Pipeline`]; it never touches ONNX Runtime or SQLite directly, and it
//! does not start anything: the `cxr-triage` binary wires the store, the
//! engine, PACS and this service together (`serve`).

mod admission;
mod convert;

pub use admission::{
    Admitted, TriageService, DEFAULT_MAX_ANALYSES_PER_PEER, DEFAULT_UPLOAD_IDLE_S,
    MAX_SMALL_MESSAGE,
};

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use cxr_findings::{overlay, Heatmap};
use cxr_pipeline::{Pipeline, PipelineError};
use cxr_worklist::{now_ms, AuditEntry, EventKind, ListQuery, StoreError, WorklistStore};

/// Generated protobuf types and gRPC stubs of `cxr_triage.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("cxr_triage.v1");

    /// Encoded file descriptors, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/cxr_triage_descriptor.bin"));
}

pub use pb::triage_server::TriageServer;

/// Numbers requests in logs.
static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `WatchWorklist` streams open at once unless configured.
pub const DEFAULT_MAX_WATCHERS: usize = 64;

/// Default longest side of overlays in responses.
const OVERLAY_DEFAULT: u32 = 512;

/// The Triage service.
pub struct TriageApi {
    pipeline: Arc<Pipeline>,
    max_stream_bytes: usize,
    watchers: Arc<tokio::sync::Semaphore>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    feed: Arc<std::sync::OnceLock<tokio::sync::broadcast::Sender<Arc<pb::WorklistEvent>>>>,
}

/// Events a slow watcher may fall behind the shared feed before it catches
/// up from the store instead.
const FEED_CAPACITY: usize = 1024;

/// Reads the change log after `from` (at most 1,000 events) with each
/// event's study, from the store.
async fn events_with_studies(store: Arc<dyn WorklistStore>, from: u64) -> Vec<pb::WorklistEvent> {
    tokio::task::spawn_blocking(move || {
        let events = store.events_after(from, 1000)?;
        Ok::<_, StoreError>(
            events
                .into_iter()
                .map(|e| {
                    let study = store.get_study(&e.study_instance_uid).ok().map(|(s, _)| s);
                    convert::event(&e, study.as_ref())
                })
                .collect::<Vec<_>>(),
        )
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default()
}

impl TriageApi {
    /// A service over `pipeline`; `AnalyzeStream` accepts files up to
    /// `max_stream_bytes`.
    pub fn new(pipeline: Arc<Pipeline>, max_stream_bytes: usize) -> TriageApi {
        TriageApi {
            pipeline,
            max_stream_bytes,
            watchers: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_WATCHERS)),
            shutdown: tokio::sync::watch::channel(false).1,
            feed: Arc::default(),
        }
    }

    /// The shared feed of committed worklist events, started on first use:
    /// one task reads each new event and its study from the store once and
    /// hands it to every watcher (a watcher no longer costs a database read
    /// per event).
    async fn feed(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<Arc<pb::WorklistEvent>>, Status> {
        if let Some(tx) = self.feed.get() {
            return Ok(tx.subscribe());
        }
        let store = Arc::clone(self.pipeline.store());
        let start = {
            let s = Arc::clone(&store);
            blocking(move || s.last_sequence()).await?
        };
        let mut started = false;
        let tx = self.feed.get_or_init(|| {
            started = true;
            tokio::sync::broadcast::channel(FEED_CAPACITY).0
        });
        let rx = tx.subscribe();
        if started {
            let tx = tx.clone();
            let mut live = self.pipeline.subscribe();
            let mut shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let mut last = start;
                loop {
                    loop {
                        let batch = events_with_studies(Arc::clone(&store), last).await;
                        if batch.is_empty() {
                            break;
                        }
                        for event in batch {
                            last = event.sequence;
                            // No watcher at the moment is fine.
                            let _ = tx.send(Arc::new(event));
                        }
                    }
                    tokio::select! {
                        next = live.recv() => match next {
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        _ = shutdown.wait_for(|stopping| *stopping) => return,
                    }
                }
            });
        }
        Ok(rx)
    }

    /// At most `max` `WatchWorklist` streams open at once (more are refused
    /// with RESOURCE_EXHAUSTED), and every one ends when `shutdown` turns
    /// true.
    pub fn with_watch_limits(
        mut self,
        max: usize,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> TriageApi {
        self.watchers = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
        self.shutdown = shutdown;
        self
    }

    /// Writes one audit record; a call whose access cannot be recorded does
    /// not hand out patient data.
    async fn audit(
        &self,
        caller: &Caller,
        action: impl Into<String>,
        object: String,
        outcome: String,
    ) -> Result<(), Status> {
        let entry = audit_entry(caller, action.into(), object, outcome);
        let store = Arc::clone(self.pipeline.store());
        blocking(move || store.audit(&entry)).await.map_err(|e| {
            tracing::error!(error = %e, "audit trail write failed");
            Status::unavailable("the audit trail cannot be written; retry later")
        })?;
        Ok(())
    }

    /// Runs `call` and records it in the audit trail with its outcome; the
    /// object it concerns comes from the request (or, for uploads, from the
    /// result).
    async fn audited<T>(
        &self,
        caller: &Caller,
        action: impl Into<String>,
        object: impl FnOnce(&Result<T, Status>) -> String,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let outcome = outcome_of(&result);
        let object = object(&result);
        self.audit(caller, action, object, outcome).await?;
        result
    }

    async fn analyze_bytes(
        &self,
        admission: Option<cxr_pipeline::Admission>,
        caller: &Caller,
        bytes: bytes::Bytes,
        options: Option<pb::AnalyzeOptions>,
    ) -> Result<Response<pb::AnalyzeResponse>, Status> {
        // Results are filed as the caller's: another uploader cannot
        // replace them (an administrator can).
        let source = match &caller.identity {
            Some(i) => cxr_pipeline::Source {
                name: format!("user:{}", i.subject),
                may_replace_others: i.roles.contains(&cxr_auth::Role::Admin),
            },
            None => cxr_pipeline::Source::named("user:unknown"),
        };
        use tracing::Instrument as _;
        let options = options.unwrap_or_default();
        // A per-process request number: requests are traced without any
        // identifier from the file (no patient, study or instance IDs).
        let request = NEXT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let span = tracing::info_span!("analyze", request, bytes = bytes.len());
        let result = async {
            match admission {
                Some(a) => self.pipeline.analyze_admitted(a, bytes, source).await,
                None => self.pipeline.analyze(bytes, source).await,
            }
        }
        .instrument(span.clone())
        .await;
        let filed = match result {
            Ok(o) => o,
            Err(e) => {
                let status = status_of(e);
                span.in_scope(|| tracing::info!(code = ?status.code(), "analysis refused"));
                metrics::counter!("cxr_requests_failed_total", "code" => format!("{:?}", status.code())).increment(1);
                return Err(status);
            }
        };
        let outcome = &filed.outcome;
        span.in_scope(|| {
            tracing::info!(
                analyzable = outcome.analyzable(),
                priority = outcome.image_priority.priority.as_str(),
                decode_ms = outcome.timings.decode_ms,
                preprocess_ms = outcome.timings.engine.preprocess_ms,
                queue_ms = outcome.timings.engine.queue_ms,
                inference_ms = outcome.timings.engine.inference_ms,
                total_ms = outcome.timings.total_ms,
                "analysis committed"
            )
        });
        metrics::counter!("cxr_analyses_total", "outcome" => if outcome.analyzable() { "analyzed" } else { "not_analyzed" }).increment(1);
        let overlay_side = if options.overlay_max_side == 0 {
            OVERLAY_DEFAULT
        } else {
            options.overlay_max_side.min(4096)
        };
        Ok(Response::new(convert::analyze_response(
            &filed,
            options.include_heatmaps,
            overlay_side,
        )))
    }
}

/// The analysis slot taken for this request by [`Admitted`], if any.
fn admission_of<T>(request: &Request<T>) -> Option<cxr_pipeline::Admission> {
    request
        .extensions()
        .get::<admission::AdmissionSlot>()
        .and_then(|slot| slot.take())
}

/// Maps pipeline failures to gRPC codes.
/// Who is calling and from where, taken from a request before its body is
/// consumed (for the audit trail).
struct Caller {
    identity: Option<cxr_auth::Identity>,
    address: String,
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Caller {
        Caller {
            identity: request.extensions().get::<cxr_auth::Identity>().cloned(),
            address: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }
}

/// The audit entry of a call.
fn audit_entry(caller: &Caller, action: String, object: String, outcome: String) -> AuditEntry {
    let (who, roles, method) = match &caller.identity {
        Some(i) => (
            i.subject.clone(),
            i.roles_text(),
            match i.method {
                cxr_auth::Method::Token => "token",
                cxr_auth::Method::Certificate => "certificate",
                cxr_auth::Method::Open => "open",
            },
        ),
        None => ("anonymous".into(), String::new(), "open"),
    };
    AuditEntry {
        at_ms: now_ms(),
        who,
        roles,
        method: method.into(),
        action,
        object,
        address: caller.address.clone(),
        outcome,
    }
}

/// The image an upload concerns (from its result), for the audit trail.
fn analyzed_object(result: &Result<Response<pb::AnalyzeResponse>, Status>) -> String {
    match result {
        Ok(r) => r
            .get_ref()
            .identity
            .as_ref()
            .map(|i| {
                format!(
                    "study:{} image:{}",
                    i.study_instance_uid, i.sop_instance_uid
                )
            })
            .unwrap_or_default(),
        Err(_) => "upload".into(),
    }
}

/// `OK`, or the refusal's code, for the audit trail.
fn outcome_of<T>(result: &Result<T, Status>) -> String {
    match result {
        Ok(_) => "OK".into(),
        Err(s) => code_name(s.code()),
    }
}

/// A gRPC status code as the specification names it (`PERMISSION_DENIED`).
pub(crate) fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Longest `by` (a user name) accepted in UpdateStatus.
const MAX_BY: usize = 128;

/// A DICOM UID argument (PS3.5 §9.1: 1–64 characters, digits and dots).
/// The value is never echoed back: it came from outside.
fn uid_arg(field: &str, uid: String) -> Result<String, Status> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..");
    if ok {
        Ok(uid)
    } else {
        Err(Status::invalid_argument(format!(
            "{field} is not a DICOM UID (1-64 digits and dots)"
        )))
    }
}

/// A study on the worklist: a UID, or the study the service made for an
/// image that had none (`no-study:` + its SOP Instance UID).
fn study_uid_arg(uid: String) -> Result<String, Status> {
    match uid.strip_prefix("no-study:") {
        Some(sop) => uid_arg("study_instance_uid", sop.to_string()).map(|_| uid),
        None => uid_arg("study_instance_uid", uid),
    }
}

/// A short free-text argument: bounded, no control characters.
fn text_arg(field: &str, text: String, max: usize) -> Result<String, Status> {
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} must be at most {max} characters, without control characters"
        )));
    }
    Ok(text)
}

/// A timestamp argument that fits in milliseconds.
fn time_arg(t: &prost_types::Timestamp) -> Result<i64, Status> {
    convert::ms_of(t).ok_or_else(|| Status::invalid_argument("timestamp out of range"))
}

fn status_of(e: PipelineError) -> Status {
    match e {
        PipelineError::NotDicom(m) => Status::invalid_argument(m),
        PipelineError::Overloaded {
            reason,
            retry_after_ms,
        } => {
            let mut s = Status::resource_exhausted(format!("{reason}; retry later"));
            // A hint for clients and proxies that honour it.
            s.metadata_mut()
                .insert("retry-after-ms", retry_after_ms.into());
            s
        }
        PipelineError::WarmingUp => Status::unavailable("models are warming up; retry shortly"),
        PipelineError::Store(e) => store_status(e),
        PipelineError::ShutDown => Status::unavailable("shutting down"),
    }
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(m) => Status::not_found(m),
        StoreError::Invalid(m) => Status::invalid_argument(m),
        StoreError::Database(m) => Status::internal(m),
        StoreError::Conflict(m) => Status::already_exists(m),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::unavailable("shutting down"))?
        .map_err(store_status)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WorklistEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::triage_server::Triage for TriageApi {
    async fn analyze(
        &self,
        request: Request<pb::AnalyzeRequest>,
    ) -> Result<Response<pb::AnalyzeResponse>, Status> {
        let admission = admission_of(&request);
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let result = self
            .analyze_bytes(admission, &caller, request.dicom, request.options)
            .await;
        self.audited(&caller, "Analyze", analyzed_object, result)
            .await
    }

    async fn analyze_stream(
        &self,
        request: Request<Streaming<pb::AnalyzeChunk>>,
    ) -> Result<Response<pb::AnalyzeResponse>, Status> {
        let admission = admission_of(&request);
        let caller = Caller::of(&request);
        let mut stream = request.into_inner();
        let mut bytes = bytes::BytesMut::new();
        let mut options = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if options.is_none() {
                options = Some(chunk.options.unwrap_or_default());
            }
            if bytes.len() + chunk.data.len() > self.max_stream_bytes {
                return Err(Status::resource_exhausted(format!(
                    "file larger than the configured maximum of {} MiB",
                    self.max_stream_bytes >> 20
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if bytes.is_empty() {
            return Err(Status::invalid_argument("no data"));
        }
        let result = self
            .analyze_bytes(admission, &caller, bytes.freeze(), options)
            .await;
        self.audited(&caller, "AnalyzeStream", analyzed_object, result)
            .await
    }

    async fn list_worklist(
        &self,
        request: Request<pb::ListWorklistRequest>,
    ) -> Result<Response<pb::ListWorklistResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let query = ListQuery {
            priorities: r
                .priorities()
                .filter_map(convert::priority_from_pb)
                .collect(),
            statuses: r.statuses().filter_map(convert::status_from_pb).collect(),
            received_after_ms: r.received_after.map(|t| time_arg(&t)).transpose()?,
            received_before_ms: r.received_before.map(|t| time_arg(&t)).transpose()?,
            modality: Some(r.modality)
                .filter(|m| !m.is_empty())
                .map(|m| text_arg("modality", m, 16))
                .transpose()?,
            page_size: r.page_size,
            page_token: Some(r.page_token).filter(|t| !t.is_empty()),
        };
        let store = Arc::clone(self.pipeline.store());
        let page = blocking(move || store.list(&query)).await;
        let listed = |r: &Result<cxr_worklist::Page, Status>| match r {
            Ok(p) => format!("worklist: {} studies", p.studies.len()),
            Err(_) => "worklist".into(),
        };
        let page = self.audited(&caller, "ListWorklist", listed, page).await?;
        Ok(Response::new(pb::ListWorklistResponse {
            studies: page
                .studies
                .iter()
                .map(|s| convert::study(s, Vec::new()))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            total: page.total,
        }))
    }

    async fn get_study(
        &self,
        request: Request<pb::GetStudyRequest>,
    ) -> Result<Response<pb::Study>, Status> {
        let caller = Caller::of(&request);
        let uid = study_uid_arg(request.into_inner().study_instance_uid)?;
        let store = Arc::clone(self.pipeline.store());
        let object = format!("study:{uid}");
        let found = blocking(move || store.get_study(&uid)).await;
        let (study, images) = self.audited(&caller, "GetStudy", |_| object, found).await?;
        let images = images.iter().map(convert::stored_image).collect();
        Ok(Response::new(convert::study(&study, images)))
    }

    type WatchWorklistStream = EventStream;

    async fn watch_worklist(
        &self,
        request: Request<pb::WatchWorklistRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = Caller::of(&request);
        let after = request.into_inner().after_sequence;
        self.audit(
            &caller,
            "WatchWorklist",
            "worklist: watch".into(),
            "OK".into(),
        )
        .await?;
        if after > i64::MAX as u64 {
            return Err(Status::invalid_argument(
                "after_sequence is beyond any sequence number",
            ));
        }
        // A bounded number of watchers; each holds its permit while open.
        let permit = Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| {
                let mut s =
                    Status::resource_exhausted("too many open worklist watches; retry later");
                s.metadata_mut()
                    .insert("retry-after-ms", "5000".parse().expect("ascii"));
                s
            })?;
        let mut shutdown = self.shutdown.clone();
        // Subscribe to the shared feed first, then read where the log ends:
        // nothing falls in between, and a new watcher never loads the whole
        // log.
        let mut feed = self.feed().await?;
        let store = Arc::clone(self.pipeline.store());
        let start = if after == 0 {
            let s = Arc::clone(&store);
            blocking(move || s.last_sequence()).await?
        } else {
            after
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let _permit = permit;
            let mut last = start;
            // Catches up from the store after `last` (the backlog, a gap, or
            // after falling behind the feed); false when the client left.
            let catch_up = |from: u64| {
                let store = Arc::clone(&store);
                let tx = tx.clone();
                async move {
                    let mut at = from;
                    loop {
                        let batch = events_with_studies(Arc::clone(&store), at).await;
                        if batch.is_empty() {
                            return (at, true);
                        }
                        for event in batch {
                            at = event.sequence;
                            if tx.send(Ok(event)).await.is_err() {
                                return (at, false);
                            }
                        }
                    }
                }
            };
            let (at, open) = catch_up(last).await;
            last = at;
            if !open {
                return;
            }
            loop {
                // No await in the arms: the shutdown arm's guard must not
                // live across one.
                let next = tokio::select! {
                    next = feed.recv() => next,
                    // End with the service, so as not to hold the shutdown up.
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    // The client left.
                    () = tx.closed() => return,
                };
                match next {
                    Ok(event) if event.sequence <= last => {}
                    Ok(event) if event.sequence == last + 1 => {
                        last = event.sequence;
                        if tx.send(Ok((*event).clone())).await.is_err() {
                            return;
                        }
                    }
                    // A gap (this watcher started behind the feed) or fell
                    // behind it: the store has everything.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let (at, open) = catch_up(last).await;
                        last = at;
                        if !open {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn update_status(
        &self,
        request: Request<pb::UpdateStatusRequest>,
    ) -> Result<Response<pb::Study>, Status> {
        let identity = request.extensions().get::<cxr_auth::Identity>().cloned();
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let status = pb::StudyStatus::try_from(r.status)
            .ok()
            .and_then(convert::status_from_pb)
            .ok_or_else(|| {
                Status::invalid_argument("status must be NEW, CLAIMED, READING, READ or DISMISSED")
            })?;
        // Who changes the status is the authenticated caller; only with
        // authentication off does the request say it.
        let by = match identity {
            Some(who) if who.method != cxr_auth::Method::Open => who.subject,
            _ => {
                if r.by.trim().is_empty() {
                    return Err(Status::invalid_argument(
                        "`by` (who changes the status) is required",
                    ));
                }
                text_arg("by", r.by, MAX_BY)?
            }
        };
        let uid = study_uid_arg(r.study_instance_uid)?;
        let store = Arc::clone(self.pipeline.store());
        let at = now_ms();
        let object = format!("study:{uid}");
        let changed = blocking(move || store.update_status(&uid, status, &by, at)).await;
        let action = format!("UpdateStatus:{}", status.as_str());
        let (study, sequence) = self.audited(&caller, action, |_| object, changed).await?;
        self.pipeline.publish(cxr_worklist::Event {
            sequence,
            kind: EventKind::StatusChanged,
            study_instance_uid: study.study_instance_uid.clone(),
            sop_instance_uid: String::new(),
            at_ms: at,
        });
        Ok(Response::new(convert::study(&study, Vec::new())))
    }

    async fn get_heatmap(
        &self,
        request: Request<pb::GetHeatmapRequest>,
    ) -> Result<Response<pb::HeatmapImage>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let Some(finding) = convert::finding_of_request(&r.finding_id, r.finding) else {
            return Err(Status::invalid_argument(
                "set finding_id (e.g. \"tuberculosis\") or finding",
            ));
        };
        let max_side = if r.max_side == 0 {
            OVERLAY_DEFAULT
        } else {
            r.max_side.min(4096)
        };
        let store = Arc::clone(self.pipeline.store());
        let sop = uid_arg("sop_instance_uid", r.sop_instance_uid.clone())?;
        let object = format!("image:{sop}");
        let fetched = blocking(move || {
            let h = store.heatmap(&sop, &finding)?;
            let p = store.preview(&sop).ok();
            Ok((h, p))
        })
        .await;
        let (stored, preview) = self
            .audited(&caller, "GetHeatmap", |_| object, fetched)
            .await?;
        let heatmap = Heatmap {
            grid_width: stored.grid_width as usize,
            grid_height: stored.grid_height as usize,
            values: stored.values.clone(),
            geometry: stored.geometry,
            source: stored.source,
        };
        let preview = preview.as_deref().and_then(overlay::decode_preview);
        let (png, width, height) =
            tokio::task::spawn_blocking(move || match (r.heatmap_only, preview) {
                (false, Some(p)) => overlay::overlay_png(&p, &heatmap, max_side),
                _ => overlay::heatmap_png(&heatmap, max_side),
            })
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        Ok(Response::new(pb::HeatmapImage {
            png,
            width,
            height,
            heatmap: Some(convert::stored_heatmap(&stored)),
        }))
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let engine = self
            .pipeline
            .engine()
            .ok_or_else(|| Status::unavailable("models are warming up"))?;
        Ok(Response::new(pb::ListModelsResponse {
            models: engine.models().map(convert::model_info).collect(),
        }))
    }
}
