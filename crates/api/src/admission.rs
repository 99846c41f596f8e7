//! Authentication and admission before any request body is read. Every
//! call first presents its credentials (bearer token or client
//! certificate, [`cxr_auth`]) and must hold the role its method needs —
//! refused with UNAUTHENTICATED or PERMISSION_DENIED otherwise, before its
//! body is read; the caller's [`Identity`] rides in the request's
//! extensions to the handler. Then `Analyze` and `AnalyzeStream`
//! take one of the pipeline's analysis slots as soon as their headers
//! arrive; when every slot is taken the call is refused at once with
//! RESOURCE_EXHAUSTED (and a `retry-after-ms` hint) without reading the
//! upload. So at most `limits.max_concurrent_analyses` uploads are held in
//! memory at any time, each no larger than its size limit, however many
//! clients send at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;

use cxr_auth::{Authenticator, Credentials, Identity, Role};
use cxr_pipeline::{Admission, Pipeline};

/// The roles that may call a method of the Triage service (an admin may
/// call every one). Unknown methods need admin.
pub(crate) fn required_roles(path: &str) -> &'static [Role] {
    match path.rsplit('/').next().unwrap_or_default() {
        "Analyze" | "AnalyzeStream" => &[Role::Uploader],
        "ListWorklist" | "GetStudy" | "WatchWorklist" | "UpdateStatus" | "GetHeatmap" => {
            &[Role::Reader]
        }
        "ListModels" => &[Role::Reader, Role::Uploader],
        _ => &[Role::Admin],
    }
}

/// The analysis methods that carry a file.
const GATED: [&str; 2] = [
    "/cxr_triage.v1.Triage/Analyze",
    "/cxr_triage.v1.Triage/AnalyzeStream",
];

/// The slot taken for a request, handed to its handler in the request's
/// extensions.
#[derive(Clone)]
pub(crate) struct AdmissionSlot(Arc<Mutex<Option<Admission>>>);

impl AdmissionSlot {
    /// The slot, once.
    pub(crate) fn take(&self) -> Option<Admission> {
        self.0.lock().ok().and_then(|mut a| a.take())
    }
}

/// Wraps the Triage service with admission (see the module docs).
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
    auth: Arc<Authenticator>,
    reads: Arc<tokio::sync::Semaphore>,
    upload_idle: std::time::Duration,
    per_peer: Arc<PeerSlots>,
}

/// Analysis slots held per client address, capped.
#[derive(Debug)]
struct PeerSlots {
    limit: usize,
    held: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One of a client address's analysis slots, given back on drop.
struct PeerSlot {
    peer: std::net::IpAddr,
    slots: Arc<PeerSlots>,
}

impl PeerSlots {
    fn take(self: &Arc<Self>, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(peer).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peer,
            slots: Arc::clone(self),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// Analyses one client address may have in flight unless configured.
pub const DEFAULT_MAX_ANALYSES_PER_PEER: usize = 8;

/// The address a request came from (plain or TLS connection).
fn remote_addr(request: &http::Request<Body>) -> Option<std::net::SocketAddr> {
    request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|c| c.remote_addr())
        .or_else(|| {
            request
                .extensions()
                .get::<tonic::transport::server::TlsConnectInfo<
                    tonic::transport::server::TcpConnectInfo,
                >>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

/// An upload's body that fails when no data arrives for `idle`: a client
/// that trickles bytes cannot hold an analysis slot for the whole request
/// timeout.
struct IdleTimeout {
    inner: Body,
    idle: std::time::Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(inner: Body, idle: std::time::Duration) -> IdleTimeout {
        IdleTimeout {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl http_body::Body for IdleTimeout {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "upload stalled: no data for {} s",
                    this.idle.as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a refused call (`cxr_requests_failed_total{code}`) and answers it.
fn refused(status: tonic::Status) -> Result<http::Response<Body>, Infallible> {
    metrics::counter!("cxr_requests_failed_total", "code" => format!("{:?}", status.code()))
        .increment(1);
    Ok(status.into_http())
}

/// The Triage service as this layer wraps it (tonic's generated server).
pub trait TriageService:
    tower_service::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> TriageService for S where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Seconds an upload may go without data unless configured.
pub const DEFAULT_UPLOAD_IDLE_S: u64 = 15;

/// Largest request message of the methods that carry no file: their
/// messages are a few UIDs and filters, never near this.
pub const MAX_SMALL_MESSAGE: usize = 64 << 10;

/// How long such a small message may take to arrive.
const SMALL_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl<S> Admitted<S> {
    /// `inner` behind `auth` and admission to `pipeline`'s analysis slots.
    pub fn new(inner: S, pipeline: Arc<Pipeline>, auth: Arc<Authenticator>) -> Admitted<S> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Admitted {
            inner,
            pipeline,
            auth,
            // Reads that render or load (heatmaps, studies, pages): a few per
            // core at once; more are refused rather than queued.
            reads: Arc::new(tokio::sync::Semaphore::new(4 * cores)),
            upload_idle: std::time::Duration::from_secs(DEFAULT_UPLOAD_IDLE_S),
            per_peer: Arc::new(PeerSlots {
                limit: DEFAULT_MAX_ANALYSES_PER_PEER,
                held: Mutex::default(),
            }),
        }
    }

    /// One client address may hold at most `limit` analysis slots at once;
    /// beyond that its uploads are refused (`RESOURCE_EXHAUSTED`) while
    /// other clients still get slots.
    pub fn with_peer_limit(mut self, limit: usize) -> Admitted<S> {
        self.per_peer = Arc::new(PeerSlots {
            limit: limit.max(1),
            held: Mutex::default(),
        });
        self
    }

    /// An upload that sends no data for `idle` fails and frees its slot.
    pub fn with_upload_idle(mut self, idle: std::time::Duration) -> Admitted<S> {
        self.upload_idle = idle.max(std::time::Duration::from_millis(100));
        self
    }
}

/// The caller's identity, or the status that refuses the call (with the
/// identity when the caller is known but lacks the role).
#[allow(clippy::result_large_err)]
fn authorize(
    auth: &Authenticator,
    request: &http::Request<Body>,
) -> Result<Identity, (tonic::Status, Option<Identity>)> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let certificates: Option<Vec<Vec<u8>>> = request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|tls| tls.peer_certs())
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect());
    let identity = auth
        .authenticate(&Credentials {
            authorization,
            peer_certificates: certificates.as_deref(),
        })
        .map_err(|e| (tonic::Status::unauthenticated(e.to_string()), None))?;
    let needed = required_roles(request.uri().path());
    if !identity.may_any(needed) {
        let names: Vec<&str> = needed.iter().map(|r| r.as_str()).collect();
        let status = tonic::Status::permission_denied(format!(
            "this call needs the {} role",
            names.join(" or ")
        ));
        return Err((status, Some(identity)));
    }
    Ok(identity)
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: TriageService> tower_service::Service<http::Request<Body>> for Admitted<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match authorize(&self.auth, &request) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
            }
            Err((status, known)) => {
                // A refused attempt is audited too: who it claimed to be is
                // unknown, where it came from and what it wanted are not.
                let address = remote_addr(&request)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let entry = cxr_worklist::AuditEntry {
                    at_ms: cxr_worklist::now_ms(),
                    who: known
                        .as_ref()
                        .map_or_else(|| "unauthenticated".into(), |i| i.subject.clone()),
                    roles: known.as_ref().map(Identity::roles_text).unwrap_or_default(),
                    method: String::new(),
                    action: request
                        .uri()
                        .path()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(64)
                        .collect(),
                    object: String::new(),
                    address,
                    outcome: super::code_name(status.code()),
                };
                let store = Arc::clone(self.pipeline.store());
                return Box::pin(async move {
                    let _ = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
                    refused(status)
                });
            }
        }
        if !GATED.contains(&request.uri().path()) {
            return self.call_small(request);
        }
        let peer_slot = match remote_addr(&request) {
            Some(addr) => match self.per_peer.take(addr.ip()) {
                Some(slot) => Some(slot),
                None => {
                    metrics::counter!("cxr_requests_refused_total", "reason" => "peer_limit")
                        .increment(1);
                    let status = super::status_of(cxr_pipeline::PipelineError::Overloaded {
                        reason: format!(
                            "this address already has {} analyses in flight",
                            self.per_peer.limit
                        ),
                        // One of this address's own analyses ends soonest.
                        retry_after_ms: self.pipeline.retry_after_ms(self.per_peer.limit),
                    });
                    return Box::pin(async move { refused(status) });
                }
            },
            None => None,
        };
        match self.pipeline.admit() {
            Ok(admission) => {
                request
                    .extensions_mut()
                    .insert(AdmissionSlot(Arc::new(Mutex::new(Some(admission)))));
                let idle = self.upload_idle;
                request = request.map(|body| Body::new(IdleTimeout::new(body, idle)));
            }
            Err(e) => {
                let status = super::status_of(e);
                return Box::pin(async move { refused(status) });
            }
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(peer_slot);
            response
        })
    }
}

impl<S: TriageService> Admitted<S> {
    /// A method without a file: its message is read whole first, bounded in
    /// size ([`MAX_SMALL_MESSAGE`]) and time, and reads that load or render
    /// take one of a few slots per core (WatchWorklist has its own cap).
    fn call_small(
        &mut self,
        request: http::Request<Body>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>> {
        use http_body_util::BodyExt;
        let slot = if request.uri().path().ends_with("/WatchWorklist") {
            None
        } else {
            match Arc::clone(&self.reads).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return Box::pin(async move {
                        refused(tonic::Status::resource_exhausted(
                            "too many requests in progress; retry shortly",
                        ))
                    })
                }
            }
        };
        // The clone that is ready is the one to call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        Box::pin(async move {
            let _slot = slot;
            let limited = http_body_util::Limited::new(body, MAX_SMALL_MESSAGE + 5).collect();
            let bytes = match tokio::time::timeout(SMALL_MESSAGE_TIMEOUT, limited).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(_)) => {
                    return refused(tonic::Status::resource_exhausted(format!(
                        "request message larger than {} KiB",
                        MAX_SMALL_MESSAGE >> 10
                    )))
                }
                Err(_) => {
                    return refused(tonic::Status::deadline_exceeded(
                        "request message not received in time",
                    ))
                }
            };
            let request =
                http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
            inner.call(request).await
        })
    }
}
