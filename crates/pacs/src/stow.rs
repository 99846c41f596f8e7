//! DICOMweb STOW-RS receive (PS3.18 10.5): `POST /studies` (or
//! `/studies/{StudyInstanceUID}`) with a `multipart/related;
//! type="application/dicom"` body, one DICOM Part 10 file per part.
//!
//! Each part goes through the same [`Intake::receive`] as a C-STORE: it is
//! durably in the spool before the response reports it stored, then it
//! flows through the pipeline onto the worklist, and its results go back to
//! PACS like any other image. The response is the DICOM JSON Store
//! Instances Response: 200 when every instance was stored, 202 when some
//! failed, 409 when none was stored, 400/413/415 for a request that cannot
//! be read at all. The body is bounded (`max_object_mib` per part, 2 parts'
//! worth in all) and read before anything is spooled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::dimse::status;
use super::intake::{Intake, Object, Received, Refusal};
use super::uids;
use cxr_ingest::RadiographMeta;

/// How long a connection may take to send a request's head (and how long
/// an idle kept-alive connection is kept).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Parts' worth of `max_object_mib` one request may carry.
const MAX_PARTS_IN_BODY: u64 = 2;

/// What one part became.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartOutcome {
    Stored {
        class: String,
        instance: String,
    },
    Failed {
        class: String,
        instance: String,
        reason: u16,
    },
}

/// Serves STOW-RS on `listener` until `stop`.
/// At most `max_connections` connections are served at once (others wait
/// in the listen backlog), and a request body must arrive within `timeout`.
/// With `tls`, connections are HTTPS (the handshake must complete within
/// the header timeout, or the connection is closed).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    intake: Arc<Intake>,
    auth: Arc<cxr_auth::Authenticator>,
    max_object_mib: u64,
    max_connections: usize,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let limit = usize::try_from(
        max_object_mib
            .saturating_mul(MAX_PARTS_IN_BODY)
            .saturating_mul(1 << 20),
    )
    .unwrap_or(usize::MAX);
    let part_limit = usize::try_from(max_object_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    // Bodies are held in memory while their parts are checked and spooled:
    // all requests together may hold one largest body's worth, whatever
    // the number of connections (the rest wait, then get 503).
    let budget = Arc::new(Semaphore::new(mib_ceil(limit as u64) as usize));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "STOW-RS accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let intake = Arc::clone(&intake);
        let auth = Arc::clone(&auth);
        let budget = Arc::clone(&budget);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let socket = match tls {
                None => Connection::Plain(socket),
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => Connection::Tls(Box::new(stream)),
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "STOW-RS TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "STOW-RS TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let intake = Arc::clone(&intake);
                let auth = Arc::clone(&auth);
                let budget = Arc::clone(&budget);
                async move {
                    let limits = Limits {
                        body: limit,
                        part: part_limit,
                        budget,
                    };
                    Ok::<_, std::convert::Infallible>(
                        handle(req, &intake, &auth, limits, timeout, peer).await,
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(socket);
            // A connection that sends no complete request head within the
            // timeout is closed, freeing its slot (hyper needs a timer for
            // that; without one idle connections held slots forever).
            // Half-close: a client that sends its request and then shuts
            // its side (or hangs up) does not cancel the request; its
            // objects are still stored and analysed.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Some(HEADER_TIMEOUT))
                .half_close(true)
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%peer, error = %e, "STOW-RS connection ended");
            }
        });
    }
}

/// Whole MiB needed to hold `bytes` (at least one).
fn mib_ceil(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX)
}

/// The size limits of a request.
struct Limits {
    /// Largest body, bytes.
    body: usize,
    /// Largest part, bytes.
    part: usize,
    /// MiB of bodies all requests may hold in memory at once.
    budget: Arc<Semaphore>,
}

/// Why a body was not read.
enum BodyError {
    TooLarge,
    NotReceived,
}

/// Reads a body into one buffer (sized from the declared length, so there
/// is no second copy), failing once it passes `limit`.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    declared: Option<u64>,
) -> Result<Vec<u8>, BodyError> {
    let hint = declared.unwrap_or(0).min(limit as u64);
    let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::NotReceived)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// A STOW-RS connection, plain or TLS.
enum Connection {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The files of a TLS server identity (PEM), as the service's `[tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: std::path::PathBuf,
    /// Private key.
    pub key: std::path::PathBuf,
    /// CA that client certificates must chain to (clients must then present
    /// one).
    pub client_ca: Option<std::path::PathBuf>,
}

/// A TLS acceptor for `files` (rustls, ring; TLS 1.2 and 1.3).
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    acceptor(files, false)
}

/// A TLS acceptor for `files` where a client certificate, when
/// `client_ca` is set, is verified if presented but not required (the web
/// worklist: browsers with a smart-card certificate are known by it,
/// others sign in).
pub fn tls_acceptor_optional_client(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    acceptor(files, true)
}

fn acceptor(files: &TlsFiles, optional_client: bool) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("TLS cert {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS cert {}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("TLS key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("TLS client CA {}", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("TLS client CA {}", ca.display()))?)
                    .with_context(|| format!("TLS client CA {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if optional_client {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .context("TLS client verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn reply(code: StatusCode, content_type: &'static str, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn problem(code: StatusCode, why: &str) -> Response<Full<Bytes>> {
    tracing::warn!(
        status = code.as_u16(),
        reason = why,
        "STOW-RS request refused"
    );
    reply(code, "application/json", json!({ "error": why }))
}

async fn handle(
    req: Request<Incoming>,
    intake: &Arc<Intake>,
    auth: &cxr_auth::Authenticator,
    limits: Limits,
    timeout: Duration,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let study_in_path = match path.strip_prefix("/studies") {
        Some("") => None,
        Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => {
            Some(rest[1..].to_string())
        }
        _ => return problem(StatusCode::NOT_FOUND, "STOW-RS is POST /studies"),
    };
    if req.method() != Method::POST {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "STOW-RS is POST /studies");
    }
    // Who is sending, before the body is read: 401 without valid
    // credentials, 403 without the uploader role.
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let sender = match auth.authenticate(&cxr_auth::Credentials {
        authorization,
        peer_certificates: None,
    }) {
        Err(e) => {
            let mut r = problem(StatusCode::UNAUTHORIZED, &e.to_string());
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        Ok(who) if !who.may(cxr_auth::Role::Uploader) => {
            return problem(StatusCode::FORBIDDEN, "STOW-RS needs the uploader role");
        }
        Ok(who) => Sender {
            subject: who.subject,
            address: peer,
        },
    };
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let boundary = match multipart_boundary(&content_type) {
        Ok(b) => b,
        Err(why) => return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, &why),
    };
    let limit = limits.body;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over {} MiB", limit >> 20),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    // The body's share of the memory budget (a body of unknown length
    // takes the largest one's), held until its parts are spooled.
    let need = mib_ceil(declared.unwrap_or(limit as u64));
    let _held =
        match tokio::time::timeout(timeout, Arc::clone(&limits.budget).acquire_many_owned(need))
            .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many uploads in progress; retry later",
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("5"),
                );
                return r;
            }
        };
    let body =
        match tokio::time::timeout(timeout, read_body(req.into_body(), limit, declared)).await {
            Err(_) => return problem(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
            Ok(Ok(b)) => Bytes::from(b),
            Ok(Err(BodyError::TooLarge)) => return too_large(),
            Ok(Err(BodyError::NotReceived)) => {
                return problem(StatusCode::BAD_REQUEST, "request body not received")
            }
        };
    let parts = match split_multipart(&body, &boundary) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return problem(StatusCode::BAD_REQUEST, "no parts in the multipart body"),
        Err(why) => return problem(StatusCode::BAD_REQUEST, &why),
    };
    let mut outcomes = Vec::with_capacity(parts.len());
    for part in parts {
        // One object may be no larger than C-STORE accepts; it fails alone,
        // unspooled, and the others are still stored.
        if part.len() > limits.part {
            outcomes.push(PartOutcome::Failed {
                class: String::new(),
                instance: String::new(),
                reason: status::OUT_OF_RESOURCES,
            });
            continue;
        }
        let part = body.slice_ref(part);
        outcomes.push(store_part(intake, part, study_in_path.as_deref(), &sender).await);
    }
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, PartOutcome::Stored { .. }))
        .count();
    tracing::info!(%peer, parts = outcomes.len(), stored, "STOW-RS request");
    let code = if stored == outcomes.len() {
        StatusCode::OK
    } else if stored > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CONFLICT
    };
    reply(code, "application/dicom+json", store_response(&outcomes))
}

/// The boundary of a `multipart/related; type="application/dicom"` body.
fn multipart_boundary(content_type: &str) -> Result<String, String> {
    let mut fields = content_type.split(';').map(str::trim);
    let media = fields.next().unwrap_or("").to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(format!(
            "Content-Type must be multipart/related; type=\"application/dicom\" (got `{media}`)"
        ));
    }
    let mut boundary = None;
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "boundary" => boundary = Some(value.to_string()),
            "type" if !value.eq_ignore_ascii_case("application/dicom") => {
                return Err(format!(
                    "only type=\"application/dicom\" parts are accepted (got `{value}`)"
                ))
            }
            _ => {}
        }
    }
    match boundary {
        Some(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err("multipart/related without a valid boundary".into()),
    }
}

/// The bodies of the parts of a multipart body (RFC 2046), each with its
/// headers checked: a part's Content-Type, when given, must be
/// `application/dicom`.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, String> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    // Inside the body a delimiter is always CRLF + `--boundary`, so binary
    // content that happens to hold `--boundary` elsewhere is not cut.
    let inner = format!("\r\n--{boundary}");
    let find_inner = |from: usize| -> Option<usize> {
        body.get(from..)?
            .windows(inner.len())
            .position(|w| w == inner.as_bytes())
            .map(|p| p + from)
    };
    let mut at = if body.starts_with(d) {
        0
    } else {
        find_inner(0).ok_or("the body has no boundary delimiter")? + 2
    };
    let mut parts = Vec::new();
    loop {
        let after = at + d.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        // The rest of the delimiter line.
        let line_end = body[after..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a delimiter line without CRLF")?
            + after
            + 2;
        // A part may have no headers at all (CRLF right away).
        let (headers, content_start) = if body[line_end..].starts_with(b"\r\n") {
            (&body[line_end..line_end], line_end + 2)
        } else {
            let h = body[line_end..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or("a part without a header/body separator")?
                + line_end;
            (&body[line_end..h], h + 4)
        };
        let headers = String::from_utf8_lossy(headers);
        for header in headers.split("\r\n") {
            if let Some((k, v)) = header.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-type")
                    && !v
                        .trim()
                        .to_ascii_lowercase()
                        .starts_with("application/dicom")
                {
                    return Err(format!(
                        "a part of type `{}`: only application/dicom",
                        v.trim()
                    ));
                }
            }
        }
        // The CRLF before a delimiter belongs to the delimiter.
        let content_end = find_inner(content_start.saturating_sub(2))
            .ok_or("the body ends without a closing delimiter")?;
        parts.push(&body[content_start..content_end.max(content_start)]);
        at = content_end + 2;
    }
}

/// Who sent a STOW-RS request, for the audit trail.
struct Sender {
    subject: String,
    address: SocketAddr,
}

/// Spools and queues one part. The work runs in a task of its own, so that
/// a client that disconnects mid-request cannot leave an object spooled
/// but never queued: once started, spooling and queueing finish together.
async fn store_part(
    intake: &Arc<Intake>,
    part: Bytes,
    study_in_path: Option<&str>,
    sender: &Sender,
) -> PartOutcome {
    let study_in_path = study_in_path.map(str::to_string);
    let check = move |meta: &RadiographMeta| {
        if !uids::is_accepted_storage(&meta.sop_class_uid) {
            return Err(refusal(
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class not accepted",
            ));
        }
        // PS3.18: an instance of another study than the one in the path
        // fails (A900, "data set does not match SOP class", is the closest).
        if study_in_path.is_some_and(|s| s != meta.study_instance_uid) {
            return Err(refusal(
                status::DATA_SET_MISMATCH,
                "an instance of another study",
            ));
        }
        Ok(())
    };
    let received = Received {
        file: Object::Bytes(part),
        calling_ae: sender.subject.clone(),
        via: "STOW-RS",
        address: sender.address.to_string(),
    };
    let intake = Arc::clone(intake);
    let (meta, outcome) =
        tokio::spawn(async move { intake.receive_checked(received, check).await })
            .await
            .unwrap_or_else(|_| {
                (
                    None,
                    Err(refusal(status::OUT_OF_RESOURCES, "shutting down")),
                )
            });
    let (class, instance) = meta
        .map(|m| (m.sop_class_uid, m.sop_instance_uid))
        .unwrap_or_default();
    match outcome {
        Ok(()) => PartOutcome::Stored { class, instance },
        Err(refusal) => PartOutcome::Failed {
            class,
            instance,
            reason: refusal.status,
        },
    }
}

fn refusal(status: u16, comment: &str) -> Refusal {
    Refusal {
        status,
        comment: comment.into(),
    }
}

/// The Store Instances Response Module in DICOM JSON.
fn store_response(outcomes: &[PartOutcome]) -> Value {
    let uid = |v: &str| json!({ "vr": "UI", "Value": [v] });
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for o in outcomes {
        match o {
            PartOutcome::Stored { class, instance } => referenced.push(json!({
                "00081150": uid(class),
                "00081155": uid(instance),
            })),
            PartOutcome::Failed {
                class,
                instance,
                reason,
            } => {
                let mut item = json!({ "00081197": { "vr": "US", "Value": [reason] } });
                if !class.is_empty() {
                    item["00081150"] = uid(class);
                }
                if !instance.is_empty() {
                    item["00081155"] = uid(instance);
                }
                failed.push(item);
            }
        }
    }
    let mut response = json!({});
    if !referenced.is_empty() {
        response["00081199"] = json!({ "vr": "SQ", "Value": referenced });
    }
    if !failed.is_empty() {
        response["00081198"] = json!({ "vr": "SQ", "Value": failed });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_checked() {
        assert_eq!(
            multipart_boundary("multipart/related; type=\"application/dicom\"; boundary=XyZ")
                .unwrap(),
            "XyZ"
        );
        assert_eq!(
            multipart_boundary("Multipart/Related;boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert!(multipart_boundary("application/dicom").is_err());
        assert!(multipart_boundary(
            "multipart/related; type=\"application/dicom+json\"; boundary=x"
        )
        .is_err());
        assert!(multipart_boundary("multipart/related; type=\"application/dicom\"").is_err());
    }

    #[test]
    fn parts_are_split_exactly() {
        let body = b"preamble\r\n--B\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B\r\n\r\nTW\r\nO\r\n--B--\r\n";
        let parts = split_multipart(body, "B").unwrap();
        assert_eq!(parts, vec![&b"ONE"[..], &b"TW\r\nO"[..]]);
        assert!(
            split_multipart(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--", "B").is_err()
        );
        assert!(split_multipart(b"--B\r\n\r\nunterminated", "B").is_err());
        assert!(split_multipart(b"no delimiter", "B").is_err());
        assert_eq!(split_multipart(b"--B--\r\n", "B").unwrap().len(), 0);
    }

    #[test]
    fn the_response_lists_stored_and_failed_instances() {
        let r = store_response(&[
            PartOutcome::Stored {
                class: "1.2.3".into(),
                instance: "4.5".into(),
            },
            PartOutcome::Failed {
                class: String::new(),
                instance: String::new(),
                reason: 0xC000,
            },
        ]);
        assert_eq!(r["00081199"]["Value"][0]["00081155"]["Value"][0], "4.5");
        assert_eq!(r["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
        assert!(r["00081198"]["Value"][0].get("00081155").is_none());
    }
}
