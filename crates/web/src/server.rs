//! The HTTP side: routes, sign-in, the JSON API the pages use, and the
//! live event stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use cxr_auth::{Authenticator, Credentials, Method, Role};
use cxr_findings::priority::Priority;
use cxr_model::FindingId;
use cxr_pipeline::Pipeline;
use cxr_worklist::{
    now_ms, AuditEntry, AuditRecord, ListQuery, StoreError, StoredImage, StudyStatus, StudySummary,
    WorklistStore,
};

use crate::auth::{Sessions, Throttle};
use crate::oidc::{Oidc, OidcError};
use crate::WebConfig;

type Body = BoxBody<Bytes, Infallible>;
/// An image with its size (from its heatmaps) and whether it has a preview.
type ImageView = (StoredImage, Option<(u32, u32)>, bool);

const COOKIE: &str = "cxr_session";
/// A request head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest request body (sign-in forms, status changes).
const MAX_BODY: usize = 16 * 1024;
/// Longest side of heatmap grids sent to the browser.
const HEATMAP_SIDE: u32 = 160;

const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   form-action 'self'; base-uri 'none'";

/// Embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/i18n.js"),
    ),
    (
        "worklist.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/worklist.js"),
    ),
    (
        "study.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/study.js"),
    ),
    (
        "campaigns.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/campaigns.js"),
    ),
    (
        "audit.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/audit.js"),
    ),
];
/// Every page's frame (header, language switch, the AI banner).
const SHELL: &str = include_str!("../assets/shell.html");

/// A page: its title's dictionary key and English text, body class and
/// main part.
struct Page {
    title_key: &'static str,
    title: &'static str,
    class: &'static str,
    main: &'static str,
}

const WORKLIST_PAGE: Page = Page {
    title_key: "worklist_title",
    title: "Reading worklist",
    class: "page-worklist",
    main: include_str!("../assets/worklist.main.html"),
};
const STUDY_PAGE: Page = Page {
    title_key: "study_title",
    title: "Study",
    class: "page-study",
    main: include_str!("../assets/study.main.html"),
};
const LOGIN_PAGE: Page = Page {
    title_key: "login_title",
    title: "Sign in",
    class: "page-login",
    main: include_str!("../assets/login.main.html"),
};
const CAMPAIGNS_PAGE: Page = Page {
    title_key: "campaigns_title",
    title: "Screening campaigns",
    class: "page-campaigns",
    main: include_str!("../assets/campaigns.main.html"),
};
const AUDIT_PAGE: Page = Page {
    title_key: "audit_title",
    title: "Audit trail",
    class: "page-audit",
    main: include_str!("../assets/audit.main.html"),
};

/// Failed password sign-ins allowed per user name, and per address, in
/// [`THROTTLE_WINDOW`].
const THROTTLE_PER_USER: u32 = 5;
const THROTTLE_PER_ADDRESS: u32 = 20;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The cookie that binds an OpenID sign-in to the browser that began it.
const OIDC_COOKIE: &str = "cxr_oidc";

/// The web worklist's state.
pub struct Web {
    pipeline: Arc<Pipeline>,
    auth: Arc<Authenticator>,
    config: WebConfig,
    sessions: Sessions,
    streams: Arc<Semaphore>,
    oidc: Option<Oidc>,
    throttle_users: Throttle,
    throttle_addresses: Throttle,
}

impl Web {
    /// The web worklist over `pipeline`'s store and events, with the
    /// service's authenticator; an OpenID sign-in that cannot work (a
    /// missing secret file, no `[auth.tokens]` to verify its tokens) is an
    /// error now.
    pub fn new(
        pipeline: Arc<Pipeline>,
        auth: Arc<Authenticator>,
        config: WebConfig,
    ) -> Result<Web, OidcError> {
        let lifetime = Duration::from_secs(u64::from(config.session_hours.max(1)) * 3600);
        let streams = Arc::new(Semaphore::new(config.max_streams.max(1)));
        let oidc = config.oidc.clone().map(Oidc::new).transpose()?;
        Ok(Web {
            pipeline,
            auth,
            config,
            sessions: Sessions::new(lifetime),
            streams,
            oidc,
            throttle_users: Throttle::new(THROTTLE_PER_USER, THROTTLE_WINDOW),
            throttle_addresses: Throttle::new(THROTTLE_PER_ADDRESS, THROTTLE_WINDOW),
        })
    }

    fn store(&self) -> Arc<dyn WorklistStore> {
        Arc::clone(self.pipeline.store())
    }

    /// Open: no authentication configured and no local users (the
    /// loopback default, as on the gRPC port).
    fn open(&self) -> bool {
        !self.auth.enabled() && self.config.users.is_empty() && self.oidc.is_none()
    }
}

/// Serves the web worklist on `listener` until `stop` turns true (live
/// streams end then too); HTTPS with `tls` (the service's identity).
pub async fn serve(
    listener: TcpListener,
    web: Arc<Web>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "web accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let web = Arc::clone(&web);
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(socket, web, peer, None, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            // A client certificate that verified against
                            // [tls] client_ca: who the browser is.
                            let certs =
                                stream.get_ref().1.peer_certificates().map(|c| {
                                    Arc::new(c.iter().map(|d| d.as_ref().to_vec()).collect())
                                });
                            connection(stream, web, peer, certs, stop).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "web TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// The verified client certificate chain of a connection (DER, leaf first).
type PeerCerts = Option<Arc<Vec<Vec<u8>>>>;

async fn connection<S>(
    socket: S,
    web: Arc<Web>,
    peer: SocketAddr,
    certs: PeerCerts,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let web = Arc::clone(&web);
        let stop = stop.clone();
        let certs = certs.clone();
        async move {
            let from = Peer {
                address: peer,
                certs: certs.as_deref().map(Vec::as_slice),
            };
            Ok::<_, Infallible>(secure(handle(req, &web, from, stop).await))
        }
    });
    let io = hyper_util::rt::TokioIo::new(socket);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Some(HEADER_TIMEOUT))
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(%peer, error = %e, "web connection ended");
    }
}

/// Where a request comes from: the address, and the client certificate
/// when mutual TLS verified one.
#[derive(Clone, Copy)]
struct Peer<'a> {
    address: SocketAddr,
    certs: Option<&'a [Vec<u8>]>,
}

/// Who is asking.
#[derive(Debug, Clone)]
struct Who {
    name: String,
    roles: Vec<Role>,
    method: &'static str,
}

impl Who {
    fn may_read(&self) -> bool {
        self.roles
            .iter()
            .any(|r| matches!(r, Role::Reader | Role::Admin))
    }

    fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn identify(req: &Request<Incoming>, web: &Web, certs: Option<&[Vec<u8>]>) -> Option<Who> {
    if web.open() {
        return Some(Who {
            name: "anonymous".into(),
            roles: vec![Role::Uploader, Role::Reader, Role::Admin],
            method: "open",
        });
    }
    if let Some(session) = cookie(req, COOKIE).and_then(|t| web.sessions.get(t)) {
        return Some(Who {
            name: session.user,
            roles: session.roles,
            method: session.method,
        });
    }
    // With [auth] off the authenticator lets anyone in: here, with local
    // users or OpenID sign-in configured, only a session does.
    if !web.auth.enabled() {
        return None;
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization.is_none() && certs.is_none() {
        return None;
    }
    let identity = web
        .auth
        .authenticate(&Credentials {
            authorization,
            peer_certificates: certs,
        })
        .ok()?;
    Some(Who {
        name: identity.subject.clone(),
        roles: identity.roles.iter().copied().collect(),
        method: match identity.method {
            Method::Token => "token",
            Method::Certificate => "certificate",
            Method::Open => "open",
        },
    })
}

/// `en` or `vi`: the `cxr_lang` cookie, else the browser's preference.
fn language(req: &Request<Incoming>) -> &'static str {
    match cookie(req, "cxr_lang") {
        Some("vi") => return "vi",
        Some("en") => return "en",
        _ => {}
    }
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let tag = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if tag.starts_with("vi") {
            return "vi";
        }
        if tag.starts_with("en") {
            return "en";
        }
    }
    "en"
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn json_reply(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = respond(status, "application/json", value.to_string());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_reply(status, &json!({ "error": message }))
}

fn redirect(to: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(full(""))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// Headers every answer carries.
fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    for (k, v) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(k, header::HeaderValue::from_static(v));
    }
    r
}

fn page(p: &Page, lang: &str) -> Response<Body> {
    page_with(p, lang, &[])
}

/// A page with `{{NAME}}` placeholders of its main part filled in.
fn page_with(p: &Page, lang: &str, fill: &[(&str, &str)]) -> Response<Body> {
    let mut main = p.main.to_string();
    for (k, v) in fill {
        main = main.replace(&format!("{{{{{k}}}}}"), v);
    }
    let html = SHELL
        .replace("{{TITLE_KEY}}", p.title_key)
        .replace("{{TITLE}}", p.title)
        .replace("{{BODY_CLASS}}", p.class)
        .replace("{{LANG}}", lang)
        .replace("{{MAIN}}", &main);
    let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Percent-decoding of a URL path segment or form value.
fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A path segment that must be a DICOM UID (digits and dots, at most 64).
fn uid(segment: &str) -> Option<String> {
    let u = decode(segment);
    (!u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .then_some(u)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response<Body>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::NotFound(_))) => Err(error(StatusCode::NOT_FOUND, "not found")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "web: worklist store failed");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the worklist is unavailable",
            ))
        }
        Err(_) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")),
    }
}

/// Records an access in the audit trail; a request whose access cannot
/// be recorded is not answered.
async fn audit(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    action: &str,
    object: String,
) -> Result<(), Response<Body>> {
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: who.name.clone(),
        roles: who
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
        method: format!("web/{}", who.method),
        action: action.to_string(),
        object,
        address: peer.ip().to_string(),
        outcome: "OK".into(),
    };
    let store = web.store();
    blocking(move || store.audit(&entry)).await.map(|_| ())
}

async fn handle(
    req: Request<Incoming>,
    web: &Web,
    from: Peer<'_>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let peer = from.address;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let lang = language(&req);
    let method = req.method().clone();

    if method == http::Method::GET {
        if let Some(name) = path.strip_prefix("/assets/") {
            return match ASSETS.iter().find(|(n, _, _)| *n == name) {
                Some((_, content_type, body)) => {
                    let mut r = respond(StatusCode::OK, content_type, *body);
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("no-cache"),
                    );
                    r
                }
                None => error(StatusCode::NOT_FOUND, "no such asset"),
            };
        }
        if path == "/login" {
            let hidden = |on: bool| if on { "" } else { "hidden" };
            let button = web
                .oidc
                .as_ref()
                .and_then(|o| o.config().button.clone())
                .map(|b| esc(&b))
                .unwrap_or_default();
            return page_with(
                &LOGIN_PAGE,
                lang,
                &[
                    ("OIDC_HIDDEN", hidden(web.oidc.is_some())),
                    ("PASSWORD_HIDDEN", hidden(!web.config.users.is_empty())),
                    ("OIDC_BUTTON", &button),
                ],
            );
        }
        if path == "/oidc/start" {
            return oidc_start(web, &query);
        }
        if path == "/oidc/callback" {
            return oidc_callback(&req, web, peer, &query).await;
        }
    }
    if method == http::Method::POST && path == "/login" {
        return login(req, web, peer).await;
    }
    if method == http::Method::POST && path == "/logout" {
        if let Some(token) = cookie(&req, COOKIE) {
            web.sessions.end(token);
        }
        let mut r = redirect("/login");
        if let Ok(v) = header::HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }

    let api = path.starts_with("/api/");
    let Some(who) = identify(&req, web, from.certs) else {
        return if api {
            error(StatusCode::UNAUTHORIZED, "sign in first")
        } else {
            redirect(&format!("/login?next={}", encode(&path)))
        };
    };
    if !who.may_read() {
        return if api {
            error(StatusCode::FORBIDDEN, "the reader role is needed")
        } else {
            respond(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                "The reader role is needed for the worklist.",
            )
        };
    }

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&http::Method::GET, [""]) => page(&WORKLIST_PAGE, lang),
        (&http::Method::GET, ["study", id]) => match uid(id) {
            Some(_) => page(&STUDY_PAGE, lang),
            None => error(StatusCode::NOT_FOUND, "not a study"),
        },
        (&http::Method::GET, ["campaigns"]) => page(&CAMPAIGNS_PAGE, lang),
        (&http::Method::GET, ["api", "campaigns"]) => {
            campaign_list(web, &who, peer).await.unwrap_or_else(|e| e)
        }
        (&http::Method::GET, ["api", "campaigns", name]) => campaign(web, &who, peer, decode(name))
            .await
            .unwrap_or_else(|e| e),
        (&http::Method::GET, ["admin"]) if who.is_admin() => page(&AUDIT_PAGE, lang),
        (&http::Method::GET, ["api", "audit"]) if who.is_admin() => {
            audit_trail(web, &who, peer, &query)
                .await
                .unwrap_or_else(|e| e)
        }
        (&http::Method::GET, ["admin"]) => respond(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "The admin role is needed for the audit trail.",
        ),
        (&http::Method::GET, ["api", "audit"]) => {
            error(StatusCode::FORBIDDEN, "the admin role is needed")
        }
        (&http::Method::GET, ["api", "me"]) => json_reply(
            StatusCode::OK,
            &json!({
                "user": who.name,
                "roles": who.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "lang": lang,
                "signed_in": matches!(who.method, "password" | "oidc"),
                "method": who.method,
            }),
        ),
        (&http::Method::GET, ["api", "worklist"]) => worklist(web, &who, peer, &query)
            .await
            .unwrap_or_else(|e| e),
        (&http::Method::GET, ["api", "studies", id]) => match uid(id) {
            Some(id) => study(web, &who, peer, id).await.unwrap_or_else(|e| e),
            None => error(StatusCode::BAD_REQUEST, "not a Study Instance UID"),
        },
        (&http::Method::POST, ["api", "studies", id, "status"]) => match uid(id) {
            Some(id) => set_status(req, web, &who, peer, id)
                .await
                .unwrap_or_else(|e| e),
            None => error(StatusCode::BAD_REQUEST, "not a Study Instance UID"),
        },
        (&http::Method::GET, ["api", "images", sop, "preview"]) => match uid(sop) {
            Some(sop) => preview(web, &who, peer, sop).await.unwrap_or_else(|e| e),
            None => error(StatusCode::BAD_REQUEST, "not a SOP Instance UID"),
        },
        (&http::Method::GET, ["api", "images", sop, "heatmap", finding]) => {
            match (uid(sop), FindingId::new(&decode(finding))) {
                (Some(sop), Ok(finding)) => heatmap(web, &who, peer, sop, finding)
                    .await
                    .unwrap_or_else(|e| e),
                _ => error(StatusCode::BAD_REQUEST, "not an image and finding"),
            }
        }
        (&http::Method::GET, ["api", "events"]) => events(&req, web, &query, stop).await,
        _ => error(StatusCode::NOT_FOUND, "no such page"),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Records a sign-in (or a refused one) in the audit trail; a failure to
/// record is logged (the answer does not wait on it).
async fn audit_sign_in(
    web: &Web,
    name: &str,
    roles: &[Role],
    method: &str,
    address: SocketAddr,
    outcome: &str,
) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: name.chars().filter(|c| !c.is_control()).take(128).collect(),
        roles: roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
        method: format!("web/{method}"),
        action: "WebSignIn".into(),
        object: "session".into(),
        address: address.ip().to_string(),
        outcome: outcome.into(),
    };
    let store = web.store();
    if blocking(move || store.audit(&entry)).await.is_err() {
        tracing::error!("web: a sign-in could not be recorded in the audit trail");
    }
}

/// A session cookie for `token`.
fn with_session(mut r: Response<Body>, web: &Web, token: &str) -> Response<Body> {
    let max_age = u64::from(web.config.session_hours.max(1)) * 3600;
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Only a path of this site: never an address elsewhere.
fn local_path(next: String) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/".into()
    }
}

fn oidc_start(web: &Web, query: &str) -> Response<Body> {
    let Some(oidc) = &web.oidc else {
        return error(StatusCode::NOT_FOUND, "OpenID sign-in is not configured");
    };
    let next = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let browser = crate::oidc::base64url(&rand::random::<[u8; 24]>());
    let mut r = redirect(&oidc.begin(&local_path(next), &browser));
    // Lax: the provider's redirect back is a top-level GET from its site.
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}={browser}; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age=600"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn oidc_callback(
    req: &Request<Incoming>,
    web: &Web,
    peer: SocketAddr,
    query: &str,
) -> Response<Body> {
    let Some(oidc) = &web.oidc else {
        return error(StatusCode::NOT_FOUND, "OpenID sign-in is not configured");
    };
    let pairs = query_pairs(query);
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let browser = cookie(req, OIDC_COOKIE).unwrap_or("").to_string();
    let result = if !field("error").is_empty() {
        Err(OidcError::Provider(field("error")))
    } else {
        let auth = Arc::clone(&web.auth);
        oidc.complete(
            &field("state"),
            &field("code"),
            &browser,
            move |token, client, nonce| {
                auth.id_token_identity(token, client, nonce)
                    .map_err(|e| e.to_string())
            },
        )
        .await
    };
    match result {
        Ok((identity, next)) => {
            let roles: Vec<Role> = identity.roles.iter().copied().collect();
            audit_sign_in(web, &identity.subject, &roles, "oidc", peer, "OK").await;
            let token = web.sessions.start(&identity.subject, &roles, "oidc");
            let mut r = with_session(redirect(&next), web, &token);
            if let Ok(v) = header::HeaderValue::from_str(&format!(
                "{OIDC_COOKIE}=; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age=0"
            )) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "web OpenID sign-in failed");
            audit_sign_in(web, "", &[], "oidc", peer, "REFUSED").await;
            redirect("/login?error=oidc")
        }
    }
}

async fn login(req: Request<Incoming>, web: &Web, peer: SocketAddr) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
    };
    let form = query_pairs(&String::from_utf8_lossy(&body));
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (name, password, next) = (field("user"), field("password"), field("next"));
    let next = local_path(next);
    // Guessing passwords: a user name, or an address, that failed too
    // often waits (before the hash is even computed).
    let (user_key, address_key) = (format!("user:{name}"), format!("ip:{}", peer.ip()));
    if let Some(wait) = web
        .throttle_users
        .blocked(&user_key)
        .or_else(|| web.throttle_addresses.blocked(&address_key))
    {
        tracing::warn!(wait_s = wait, "web sign-in throttled");
        audit_sign_in(web, &name, &[], "password", peer, "THROTTLED").await;
        let mut r = redirect(&format!("/login?error=throttled&next={}", encode(&next)));
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let user = web.config.users.iter().find(|u| u.name == name).cloned();
    let ok = match &user {
        Some(u) => {
            let (stored, password) = (u.password.clone(), password.clone());
            tokio::task::spawn_blocking(move || crate::auth::verify_password(&stored, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    let Some(user) = user.filter(|_| ok) else {
        tracing::warn!("web sign-in refused");
        web.throttle_users.failed(&user_key);
        web.throttle_addresses.failed(&address_key);
        audit_sign_in(web, &name, &[], "password", peer, "REFUSED").await;
        return redirect(&format!("/login?error=1&next={}", encode(&next)));
    };
    web.throttle_users.succeeded(&user_key);
    audit_sign_in(web, &user.name, &user.roles, "password", peer, "OK").await;
    let token = web.sessions.start(&user.name, &user.roles, "password");
    with_session(redirect(&next), web, &token)
}

fn summary_json(s: &StudySummary) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    let top = s
        .assessment
        .reasons
        .iter()
        .find(|r| r.finding.is_some())
        .map(|r| {
            let id = r.finding.as_ref().map(|f| f.as_str().to_string());
            json!({ "finding": id, "display_name": id, "score": r.score })
        });
    if let Some(obj) = v.as_object_mut() {
        obj.insert("top_finding".into(), top.unwrap_or(Value::Null));
    }
    v
}

fn date_ms(s: &str, end: bool) -> Option<i64> {
    // YYYY-MM-DD → ms at the start (or end) of that UTC day.
    let mut it = s.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days + i64::from(end)) * 86_400_000)
}

async fn worklist(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    query: &str,
) -> Result<Response<Body>, Response<Body>> {
    let mut q = ListQuery {
        page_size: 200,
        ..Default::default()
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "priority" => {
                for p in v.split(',').filter(|p| !p.is_empty()) {
                    let p: Priority = serde_json::from_value(Value::String(p.to_string()))
                        .map_err(|_| error(StatusCode::BAD_REQUEST, "unknown priority"))?;
                    q.priorities.push(p);
                }
            }
            "status" => {
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    q.statuses.push(
                        StudyStatus::parse(s)
                            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "unknown status"))?,
                    );
                }
            }
            "modality" if !v.trim().is_empty() => q.modality = Some(v.trim().to_uppercase()),
            "from" if !v.is_empty() => {
                q.received_after_ms = Some(
                    date_ms(&v, false).ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad date"))?,
                )
            }
            "to" if !v.is_empty() => {
                q.received_before_ms = Some(
                    date_ms(&v, true).ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad date"))?,
                )
            }
            "page_token" if !v.is_empty() => q.page_token = Some(v),
            _ => {}
        }
    }
    audit(web, who, peer, "WebListWorklist", "worklist".into()).await?;
    let store = web.store();
    let page = blocking(move || store.list(&q)).await?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "studies": page.studies.iter().map(summary_json).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token.unwrap_or_default(),
            "total": page.total,
        }),
    ))
}

fn image_json(image: &StoredImage, dims: Option<(u32, u32)>, has_preview: bool) -> Value {
    let findings: Vec<Value> = image
        .result
        .findings
        .iter()
        .map(|f| {
            json!({
                "finding": f.finding.as_str(),
                "display_name": f.display_name,
                "score": f.score,
                "operating_point": f.operating_point,
                "threshold": f.threshold,
                "positive": f.positive,
                "operating_points": f.operating_points,
                "regions": f.regions.iter().map(|r| json!({
                    "x": r.bbox[0], "y": r.bbox[1],
                    "width": r.bbox[2].saturating_sub(r.bbox[0]),
                    "height": r.bbox[3].saturating_sub(r.bbox[1]),
                    "score": r.peak.value,
                })).collect::<Vec<_>>(),
                "peak": f.peak,
            })
        })
        .collect();
    json!({
        "sop_instance_uid": image.identity.sop_instance_uid,
        "view_position": image.identity.view_position,
        "modality": image.identity.modality,
        "analyzable": image.analyzable,
        "reason": image.reason.as_ref().map(|r| json!({"code": r.code, "message": r.message})),
        "assessment": image.assessment,
        "findings": findings,
        "provenance": image.result.provenance.iter().map(|p| json!({
            "model_id": p.model_id, "model_version": p.model_version, "provider": p.provider,
        })).collect::<Vec<_>>(),
        "width": dims.map(|d| d.0),
        "height": dims.map(|d| d.1),
        "has_preview": has_preview,
        "heatmaps": image.result.findings.iter()
            .filter(|f| f.peak.is_some())
            .map(|f| f.finding.as_str().to_string())
            .collect::<Vec<_>>(),
    })
}

async fn study(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    study_uid: String,
) -> Result<Response<Body>, Response<Body>> {
    audit(web, who, peer, "WebGetStudy", format!("study:{study_uid}")).await?;
    let store = web.store();
    let (summary, images) = blocking(move || {
        let (summary, images) = store.get_study(&study_uid)?;
        let images: Vec<ImageView> = images
            .into_iter()
            .map(|image| {
                let sop = image.identity.sop_instance_uid.clone();
                let dims = image.result.findings.iter().find_map(|f| {
                    store
                        .heatmap(&sop, &f.finding)
                        .ok()
                        .map(|h| (h.geometry.image_width, h.geometry.image_height))
                });
                let has_preview = store.preview(&sop).is_ok();
                (image, dims, has_preview)
            })
            .collect();
        Ok((summary, images))
    })
    .await?;
    let viewer = web.config.viewer_url.as_ref().map(|t| {
        t.replace(
            "{study_instance_uid}",
            &encode(&summary.study_instance_uid).replace('/', "%2F"),
        )
    });
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "study": summary_json(&summary),
            "images": images.iter().map(|(i, d, p)| image_json(i, *d, *p)).collect::<Vec<_>>(),
            "viewer_url": viewer,
        }),
    ))
}

async fn set_status(
    req: Request<Incoming>,
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    study_uid: String,
) -> Result<Response<Body>, Response<Body>> {
    // JSON only: a cross-site form cannot send it without the browser
    // asking first (and the cookie is SameSite=Strict besides).
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send JSON"));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))?
        .to_bytes();
    let status = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("status")
                .and_then(Value::as_str)
                .and_then(StudyStatus::parse)
        })
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "status: NEW, CLAIMED, READING, READ or DISMISSED",
            )
        })?;
    audit(
        web,
        who,
        peer,
        &format!("WebUpdateStatus:{}", status.as_str()),
        format!("study:{study_uid}"),
    )
    .await?;
    let store = web.store();
    let by = who.name.clone();
    let uid = study_uid.clone();
    let (summary, sequence) =
        blocking(move || store.update_status(&uid, status, &by, now_ms())).await?;
    web.pipeline.publish(cxr_worklist::Event {
        sequence,
        kind: cxr_worklist::EventKind::StatusChanged,
        study_instance_uid: study_uid,
        sop_instance_uid: String::new(),
        at_ms: now_ms(),
    });
    Ok(json_reply(StatusCode::OK, &summary_json(&summary)))
}

async fn preview(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    sop: String,
) -> Result<Response<Body>, Response<Body>> {
    audit(web, who, peer, "WebGetPreview", format!("image:{sop}")).await?;
    let store = web.store();
    let png = blocking(move || store.preview(&sop)).await?;
    let mut r = respond(StatusCode::OK, "image/png", png);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(r)
}

async fn heatmap(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    sop: String,
    finding: FindingId,
) -> Result<Response<Body>, Response<Body>> {
    audit(web, who, peer, "WebGetHeatmap", format!("image:{sop}")).await?;
    let store = web.store();
    let stored = blocking(move || store.heatmap(&sop, &finding)).await?;
    let heatmap = cxr_findings::Heatmap {
        grid_width: stored.grid_width as usize,
        grid_height: stored.grid_height as usize,
        values: stored.values,
        geometry: stored.geometry,
        source: stored.source,
    };
    // Rendered over the whole image (the grid is in model-input space), at
    // a size the browser scales smoothly.
    let (iw, ih) = (
        heatmap.geometry.image_width.max(1),
        heatmap.geometry.image_height.max(1),
    );
    let scale = f64::from(HEATMAP_SIDE) / f64::from(iw.max(ih));
    let (w, h) = (
        ((f64::from(iw) * scale).round() as u32).max(1),
        ((f64::from(ih) * scale).round() as u32).max(1),
    );
    let values = tokio::task::spawn_blocking(move || heatmap.render(w, h))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let values: Vec<f64> = values
        .iter()
        .map(|v| (f64::from(v.clamp(0.0, 1.0)) * 1000.0).round() / 1000.0)
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({ "grid_width": w, "grid_height": h, "values": values }),
    ))
}

/// Server-sent events: every change to the worklist after `Last-Event-ID`
/// (or `?after=`; else from now), then each new one as it is committed —
/// on this replica or, with a shared worklist, any other.
async fn events(
    req: &Request<Incoming>,
    web: &Web,
    query: &str,
    mut stop: watch::Receiver<bool>,
) -> Response<Body> {
    let Ok(permit) = Arc::clone(&web.streams).try_acquire_owned() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many live streams");
    };
    let resume = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "after")
                .and_then(|(_, v)| v.parse().ok())
        });
    let store = web.store();
    let start = match resume {
        Some(s) => s,
        None => {
            let s = Arc::clone(&store);
            match blocking(move || s.last_sequence()).await {
                Ok(s) => s,
                Err(e) => return e,
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let mut live = web.pipeline.subscribe();
    tokio::spawn(async move {
        let _permit = permit;
        let mut last = start;
        // Tell the browser to come back quickly after a drop.
        if tx
            .send(Ok(Frame::data(Bytes::from_static(b"retry: 1000\n\n"))))
            .await
            .is_err()
        {
            return;
        }
        loop {
            loop {
                let s = Arc::clone(&store);
                let after = last;
                let batch = tokio::task::spawn_blocking(move || {
                    let events = s.events_after(after, 200)?;
                    Ok::<_, StoreError>(
                        events
                            .into_iter()
                            .map(|e| {
                                let study = s.get_study(&e.study_instance_uid).ok().map(|(s, _)| s);
                                (e, study)
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .await;
                let Ok(Ok(batch)) = batch else {
                    break;
                };
                let n = batch.len();
                for (e, study) in batch {
                    last = e.sequence;
                    let data = json!({
                        "sequence": e.sequence,
                        "kind": e.kind,
                        "study_instance_uid": e.study_instance_uid,
                        "study": study.as_ref().map(summary_json),
                    });
                    let frame = format!("id: {}\nevent: change\ndata: {data}\n\n", e.sequence);
                    if tx.send(Ok(Frame::data(Bytes::from(frame)))).await.is_err() {
                        return;
                    }
                }
                if n < 200 {
                    break;
                }
            }
            tokio::select! {
                next = live.recv() => {
                    if matches!(next, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n")))).await.is_err() {
                        return;
                    }
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                () = tx.closed() => return,
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(full("")))
}

/// HTML-escapes text put into a page.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn campaign_list(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
) -> Result<Response<Body>, Response<Body>> {
    audit(web, who, peer, "WebListCampaigns", "campaigns".into()).await?;
    let Some(dir) = web.config.campaigns.clone() else {
        return Ok(json_reply(
            StatusCode::OK,
            &json!({ "campaigns": [], "folder": Value::Null }),
        ));
    };
    let listing = tokio::task::spawn_blocking(move || crate::campaigns::summaries(&dir))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    Ok(json_reply(StatusCode::OK, &listing))
}

async fn campaign(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    name: String,
) -> Result<Response<Body>, Response<Body>> {
    let Some(dir) = web.config.campaigns.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no campaign folder configured",
        ));
    };
    audit(web, who, peer, "WebGetCampaign", format!("campaign:{name}")).await?;
    let detail = tokio::task::spawn_blocking(move || crate::campaigns::detail(&dir, &name))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    match detail {
        None => Err(error(StatusCode::NOT_FOUND, "no such campaign")),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "web: a campaign's results do not read");
            Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the campaign's results cannot be read",
            ))
        }
        Some(Ok(v)) => Ok(json_reply(StatusCode::OK, &v)),
    }
}

/// The audit trail, a page at a time: `after=N` (records after sequence
/// N), or `latest=1` (the last page); `limit` at most 500.
async fn audit_trail(
    web: &Web,
    who: &Who,
    peer: SocketAddr,
    query: &str,
) -> Result<Response<Body>, Response<Body>> {
    let mut after: Option<u64> = None;
    let mut limit: u32 = 100;
    let mut latest = false;
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "after" => {
                after = Some(
                    v.parse()
                        .map_err(|_| error(StatusCode::BAD_REQUEST, "after: not a number"))?,
                )
            }
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .map_err(|_| error(StatusCode::BAD_REQUEST, "limit: not a number"))?
                    .clamp(1, 500)
            }
            "latest" => latest = v == "1" || v == "true",
            _ => {}
        }
    }
    audit(web, who, peer, "WebReadAudit", "audit".into()).await?;
    let store = web.store();
    let (records, last) = blocking(move || {
        // The newest sequence, by galloping then bisecting over
        // audit_after (a handful of indexed reads).
        let exists = |seq: u64| store.audit_after(seq - 1, 1).map(|r| !r.is_empty());
        let mut hi = 1u64;
        while exists(hi)? {
            hi = hi.saturating_mul(2);
        }
        let mut lo = hi / 2; // exists(lo) or lo == 0
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let last = lo;
        let from = if latest {
            last.saturating_sub(u64::from(limit))
        } else {
            after.unwrap_or(0)
        };
        Ok((store.audit_after(from, limit)?, last))
    })
    .await?;
    // Whether each record's hash follows from its predecessor's (within
    // this page).
    let chained = records
        .windows(2)
        .all(|w| w[1].prev_hash == w[0].hash && w[1].sequence == w[0].sequence + 1)
        && records
            .iter()
            .all(|r| AuditRecord::chain_hash(&r.prev_hash, r.sequence, &r.entry) == r.hash);
    Ok(json_reply(
        StatusCode::OK,
        &json!({ "records": records, "last_sequence": last, "chain_intact": chained }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_uids_and_paths_are_read_strictly() {
        assert_eq!(date_ms("1970-01-02", false), Some(86_400_000));
        assert_eq!(date_ms("2026-12-05", true), date_ms("2026-12-06", false));
        assert_eq!(date_ms("2026-13-01", false), None);
        assert_eq!(uid("1.2.840.113619.2"), Some("1.2.840.113619.2".into()));
        assert_eq!(uid("1.2%2E3"), Some("1.2.3".into()));
        assert_eq!(uid("../etc/passwd"), None);
        assert_eq!(uid(""), None);
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(encode("/study/1.2?x"), "/study/1.2%3Fx");
    }
}
