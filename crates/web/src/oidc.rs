//! Browser sign-in against the hospital's OpenID Connect provider: the
//! authorization-code flow with PKCE (S256), a `state` bound to the
//! browser by a cookie, and a `nonce` checked in the ID token.
//!
//! The service never sees a password: the browser goes to the provider's
//! authorization endpoint, comes back to `/oidc/callback` with a one-time
//! code, and the service exchanges that code at the token endpoint (server
//! to server) for an ID token, which it verifies with the same keys,
//! issuer and roles claim as the gRPC API's bearer tokens (`[auth.tokens]`)
//! with the client id as audience. A session cookie follows, as for local
//! users.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cxr_auth::outbound::{self, HttpClient, OutboundError};
use http::Uri;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `[web.oidc]`: browser sign-in with the hospital's OpenID Connect
/// provider (Keycloak, Azure AD / Entra ID, ADFS, …). Tokens are verified
/// with `[auth.tokens]` (issuer, keys, roles claim), so that section is
/// needed too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's authorization endpoint (its discovery document's
    /// `authorization_endpoint`), e.g.
    /// `https://sso.hospital.vn/realms/radiology/protocol/openid-connect/auth`.
    pub authorization_endpoint: String,
    /// The provider's token endpoint (`token_endpoint`).
    pub token_endpoint: String,
    /// This application's client id at the provider (the ID token's `aud`).
    pub client_id: String,
    /// A file holding the client secret (a confidential client: sent by
    /// HTTP Basic authentication); unset: a public client (PKCE only).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back: this listener's
    /// `/oidc/callback` as the browser reaches it, e.g.
    /// `https://cxr.hospital.vn/oidc/callback`; registered at the provider.
    pub redirect_url: String,
    /// Scopes asked for (`openid` is always among them).
    #[serde(default = "default_scopes")]
    pub scopes: String,
    /// CA certificates (PEM) that sign the token endpoint's certificate;
    /// unset: the system's (`/etc/ssl/certs/ca-certificates.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Text of the sign-in button; unset: "Sign in with the hospital
    /// account", translated.
    #[serde(default)]
    pub button: Option<String>,
}

fn default_scopes() -> String {
    "openid profile".into()
}

/// Why the sign-in did not complete (shown to the user as a code; the
/// details go to the log).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The callback's `state` is unknown, expired or not this browser's.
    #[error("the sign-in is unknown or expired; start again")]
    State,
    /// The provider answered with an error.
    #[error("the provider refused the sign-in: {0}")]
    Provider(String),
    /// The token endpoint could not be reached or answered badly.
    #[error("token endpoint: {0}")]
    Token(String),
    /// The ID token did not verify.
    #[error("ID token: {0}")]
    IdToken(String),
    /// The configuration cannot work.
    #[error("web.oidc: {0}")]
    Config(String),
}

/// A sign-in under way: what the callback must match.
struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    browser: String,
    started: Instant,
}

/// The sign-ins under way, bounded in number and age.
pub struct Oidc {
    config: OidcConfig,
    secret: Option<String>,
    client: HttpClient,
    pending: Mutex<HashMap<String, Pending>>,
}

/// A sign-in must come back within this.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// At most this many sign-ins under way (the oldest are dropped first).
const MAX_PENDING: usize = 10_000;
/// The token endpoint must answer within this.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest token response read.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// Base64url without padding (RFC 7636's encoding of the challenge).
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn random_token() -> String {
    base64url(&rand::random::<[u8; 32]>())
}

/// `application/x-www-form-urlencoded` value encoding.
pub(crate) fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Oidc {
    /// Checks the configuration and reads the client secret.
    pub fn new(config: OidcConfig) -> Result<Oidc, OidcError> {
        for (name, url) in [
            ("authorization_endpoint", &config.authorization_endpoint),
            ("token_endpoint", &config.token_endpoint),
            ("redirect_url", &config.redirect_url),
        ] {
            let uri: Uri = url
                .parse()
                .map_err(|_| OidcError::Config(format!("{name} `{url}` is not a URL")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(OidcError::Config(format!(
                    "{name} `{url}` is not an http(s) URL"
                )));
            }
        }
        if config.client_id.trim().is_empty() {
            return Err(OidcError::Config("client_id is empty".into()));
        }
        let secret = match &config.client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| OidcError::Config(format!("{}: {e}", path.display())))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let client = HttpClient::new(
            config.token_endpoint.starts_with("https:"),
            config.ca_file.as_deref(),
        )
        .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(Oidc {
            config,
            secret,
            client,
            pending: Mutex::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Starts a sign-in for the browser holding `browser` (a random value
    /// the caller sets as a cookie): the provider URL to send it to.
    pub fn begin(&self, next: &str, browser: &str) -> String {
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
        while pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => pending.remove(&k),
                None => break,
            };
        }
        pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce: nonce.clone(),
                next: next.to_string(),
                browser: browser.to_string(),
                started: Instant::now(),
            },
        );
        let mut scopes: Vec<&str> = self.config.scopes.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        let sep = if self.config.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            self.config.authorization_endpoint,
            form_encode(&self.config.client_id),
            form_encode(&self.config.redirect_url),
            form_encode(&scopes.join(" ")),
            state,
            nonce,
            challenge
        )
    }

    /// Completes a sign-in: the callback's `state` must be one this
    /// service started for this `browser`, not yet used, not expired; the
    /// code is exchanged for an ID token, which `verify` checks (with the
    /// client id and the nonce). Returns what `verify` made of it and where
    /// the user was going.
    pub async fn complete<T>(
        &self,
        state: &str,
        code: &str,
        browser: &str,
        verify: impl FnOnce(&str, &str, &str) -> Result<T, String>,
    ) -> Result<(T, String), OidcError> {
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(state)
        };
        let Some(pending) = pending else {
            return Err(OidcError::State);
        };
        if pending.started.elapsed() >= PENDING_TTL
            || browser.is_empty()
            || pending.browser.as_bytes() != browser.as_bytes()
        {
            return Err(OidcError::State);
        }
        let id_token = self.exchange(code, &pending.verifier).await?;
        let who = verify(&id_token, &self.config.client_id, &pending.nonce)
            .map_err(OidcError::IdToken)?;
        Ok((who, pending.next))
    }

    /// POSTs the code to the token endpoint; the ID token.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, OidcError> {
        let mut form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            form_encode(code),
            form_encode(&self.config.redirect_url),
            form_encode(verifier)
        );
        let mut basic = None;
        match &self.secret {
            // RFC 6749 §2.3.1: both parts form-encoded, then Basic.
            Some(secret) => {
                basic = Some(format!(
                    "Basic {}",
                    outbound::base64(
                        format!(
                            "{}:{}",
                            form_encode(&self.config.client_id),
                            form_encode(secret)
                        )
                        .as_bytes()
                    )
                ))
            }
            None => form.push_str(&format!(
                "&client_id={}",
                form_encode(&self.config.client_id)
            )),
        }
        let answer = tokio::time::timeout(
            TOKEN_TIMEOUT,
            self.client.post(
                &self.config.token_endpoint,
                "application/x-www-form-urlencoded",
                "application/json",
                basic.as_deref(),
                Bytes::from(form),
                MAX_TOKEN_RESPONSE,
            ),
        )
        .await
        .map_err(|_| OidcError::Token("no answer in time".into()))?
        .map_err(|e| match e {
            OutboundError::Config(e) => OidcError::Config(e),
            OutboundError::Transport(e) => OidcError::Token(e),
        })?;
        let (status, body) = (answer.status, answer.body);
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Token(format!("HTTP {status}, not JSON")))?;
        if !status.is_success() {
            let e = json
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            return Err(OidcError::Token(format!("HTTP {status}: {e}")));
        }
        json.get("id_token")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| OidcError::Token("no id_token in the answer (scope openid?)".into()))
    }
}

/// Standard base64 with padding (HTTP Basic).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_and_the_rfc_7636_challenge() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            base64url(&Sha256::digest(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(outbound::base64(b"ab?>"), "YWI/Pg==");
    }

    #[test]
    fn a_state_is_single_use_and_bound_to_its_browser() {
        let oidc = Oidc::new(OidcConfig {
            authorization_endpoint: "http://127.0.0.1:9/auth".into(),
            token_endpoint: "http://127.0.0.1:9/token".into(),
            client_id: "cxr triage".into(),
            client_secret_file: None,
            redirect_url: "http://127.0.0.1:8080/oidc/callback".into(),
            scopes: "profile".into(),
            ca_file: None,
            button: None,
        })
        .unwrap();
        let url = oidc.begin("/study/1.2", "browser-a");
        assert!(url.starts_with("http://127.0.0.1:9/auth?response_type=code&client_id=cxr%20triage&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Foidc%2Fcallback&scope=openid%20profile&state="), "{url}");
        assert!(url.contains("&code_challenge_method=S256"));
        let state = url
            .split('&')
            .find_map(|p| p.strip_prefix("state="))
            .unwrap()
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Another browser cannot finish it, and that uses it up.
        let r = rt.block_on(oidc.complete(&state, "c", "browser-b", |_, _, _| Ok(())));
        assert!(matches!(r, Err(OidcError::State)), "{r:?}");
        let r = rt.block_on(oidc.complete(&state, "c", "browser-a", |_, _, _| Ok(())));
        assert!(matches!(r, Err(OidcError::State)), "{r:?}");
        // A fresh one reaches the token endpoint (nothing listens on port 9).
        let url = oidc.begin("/", "browser-a");
        let state = url
            .split('&')
            .find_map(|p| p.strip_prefix("state="))
            .unwrap()
            .to_string();
        let r = rt.block_on(oidc.complete(&state, "c", "browser-a", |_, _, _| Ok(())));
        assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
    }
}
