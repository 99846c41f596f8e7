//! # cxr-auth: who is calling, and what they may do
//!
//! Every surface that hands out or changes patient data (gRPC, STOW-RS, and
//! the web worklist to come) asks the same [`Authenticator`] for the
//! caller's [`Identity`] and checks its [`Role`]s:
//!
//! - **Bearer tokens** (`Authorization: Bearer …`): JWTs as a hospital's
//!   OpenID Connect provider (Keycloak, Azure AD, …) issues them, verified
//!   offline against the provider's public keys (a JWKS file or PEM keys):
//!   signature (RS256/384/512, ES256/384, PS256), issuer, audience, expiry
//!   and not-before with a small leeway. The subject and the roles come
//!   from configurable claims (Keycloak puts realm roles in
//!   `realm_access.roles`); a provider's role names map onto ours.
//! - **Client certificates** (mutual TLS, verified by the TLS layer against
//!   the configured client CA): the certificate's subject common name names
//!   the client, and the configuration gives its roles (modalities and PACS
//!   gateways usually authenticate this way).
//!
//! Roles: [`Role::Uploader`] sends images (Analyze, STOW-RS),
//! [`Role::Reader`] reads and works the worklist, [`Role::Admin`] may do
//! everything. With authentication off (the embedded default, which listens
//! on loopback only) every caller is an anonymous admin.
//!
//! ```
//! use cxr_auth::{AuthConfig, Authenticator, Credentials, Role};
//! let open = Authenticator::new(&AuthConfig::default()).unwrap();
//! let who = open.authenticate(&Credentials::default()).unwrap();
//! assert!(who.may(Role::Reader) && who.may(Role::Uploader));
//! ```

pub mod outbound;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends images for analysis (modalities, PACS gateways).
    Uploader,
    /// Reads the worklist, studies and heatmaps, and changes study status
    /// (radiologists).
    Reader,
    /// Everything, including administration.
    Admin,
}

impl Role {
    /// `uploader`, `reader` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Uploader => "uploader",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "uploader" => Some(Role::Uploader),
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A verified bearer token.
    Token,
    /// A client certificate (mutual TLS).
    Certificate,
    /// Authentication is off: anonymous, every role.
    Open,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who: the token's subject claim, the certificate's common name, or
    /// `anonymous`.
    pub subject: String,
    /// What they may do.
    pub roles: BTreeSet<Role>,
    /// How they were identified.
    pub method: Method,
}

impl Identity {
    /// Whether the caller holds `role` (an admin holds every role).
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// Whether the caller holds any of `roles`.
    pub fn may_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.may(*r))
    }

    /// The caller's roles, comma-separated (for the audit trail).
    pub fn roles_text(&self) -> String {
        let names: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        names.join(",")
    }
}

/// The `[auth]` section of the service configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require every caller to authenticate. Off by default: the embedded
    /// configuration serves one workstation on loopback.
    pub enabled: bool,
    /// Bearer tokens from an OpenID Connect provider.
    pub tokens: Option<TokenConfig>,
    /// Client certificates: subject common name → roles, e.g.
    /// `"pacs-gateway" = ["uploader"]`.
    pub clients: BTreeMap<String, Vec<Role>>,
    /// Allow listening on a non-loopback address without TLS or without
    /// authentication (a warning is logged). Off: such a configuration is
    /// refused at start-up.
    pub insecure: bool,
}

/// How bearer tokens are verified (offline: nothing is fetched).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// The provider's issuer (`iss`), e.g.
    /// `https://keycloak.hospital.vn/realms/radiology`.
    pub issuer: String,
    /// The audience (`aud`) tokens must name, e.g. `cxr-triage`; not
    /// checked when empty.
    pub audience: String,
    /// The provider's JSON Web Key Set, saved as a file (its
    /// `jwks_uri`).
    pub jwks_file: Option<PathBuf>,
    /// Public keys as PEM files (RSA or EC), instead of or beside the JWKS.
    pub public_keys: Vec<PathBuf>,
    /// The claim that names the caller (default `preferred_username`,
    /// falling back to `sub`).
    pub subject_claim: String,
    /// The claim that lists the caller's roles; dots walk into objects
    /// (default `realm_access.roles`, Keycloak's realm roles; `roles` for
    /// Azure AD app roles).
    pub roles_claim: String,
    /// The provider's role names that mean ours, e.g.
    /// `"radiologist" = "reader"`; `uploader`, `reader` and `admin` are
    /// always understood.
    pub role_map: BTreeMap<String, Role>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_s: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: None,
            public_keys: Vec::new(),
            subject_claim: "preferred_username".into(),
            roles_claim: "realm_access.roles".into(),
            role_map: BTreeMap::new(),
            leeway_s: 30,
        }
    }
}

/// What a request presents.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
    /// The client's certificate chain (DER), leaf first, when mutual TLS
    /// verified one.
    pub peer_certificates: Option<&'a [Vec<u8>]>,
}

/// Why a caller is not who they say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that do not verify: the caller is
    /// unknown (gRPC UNAUTHENTICATED, HTTP 401). The text never repeats the
    /// credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// The configuration cannot work (a key file that does not load, …).
    #[error("auth configuration: {0}")]
    Config(String),
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Verifies credentials into an [`Identity`].
pub struct Authenticator {
    config: AuthConfig,
    keys: Vec<Key>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.config.enabled)
            .field("keys", &self.keys.len())
            .field("clients", &self.config.clients.len())
            .finish()
    }
}

impl Authenticator {
    /// Loads the keys the configuration names; a key that does not load is
    /// an error now, not at the first request.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let mut keys = Vec::new();
        if let Some(tokens) = &config.tokens {
            if tokens.issuer.is_empty() {
                return Err(AuthError::Config("auth.tokens.issuer is required".into()));
            }
            for path in &tokens.public_keys {
                keys.push(pem_key(path)?);
            }
            if let Some(path) = &tokens.jwks_file {
                keys.extend(jwks_keys(path)?);
            }
            if keys.is_empty() {
                return Err(AuthError::Config(
                    "auth.tokens needs jwks_file or public_keys".into(),
                ));
            }
        }
        if config.enabled && config.tokens.is_none() && config.clients.is_empty() {
            return Err(AuthError::Config(
                "auth is enabled but neither [auth.tokens] nor [auth.clients] is configured: nobody could call".into(),
            ));
        }
        Ok(Authenticator {
            config: config.clone(),
            keys,
        })
    }

    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The caller's identity: from the bearer token when there is one (a
    /// bad token is refused even if a certificate would do), else from the
    /// client certificate, else refused; with authentication off, an
    /// anonymous admin.
    pub fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        if !self.config.enabled {
            return Ok(Identity {
                subject: "anonymous".into(),
                roles: [Role::Uploader, Role::Reader, Role::Admin].into(),
                method: Method::Open,
            });
        }
        if let Some(header) = credentials.authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "the Authorization header is not a bearer token".into(),
                    )
                })?;
            return self.token_identity(token.trim());
        }
        if let Some(leaf) = credentials.peer_certificates.and_then(|c| c.first()) {
            return self.certificate_identity(leaf);
        }
        Err(AuthError::Unauthenticated(
            "no credentials: send a bearer token or a client certificate".into(),
        ))
    }

    fn token_identity(&self, token: &str) -> Result<Identity, AuthError> {
        let audience = self.config.tokens.as_ref().map(|t| t.audience.clone());
        self.verify_token(token, audience.as_deref().unwrap_or(""))
            .map(|(identity, _)| identity)
    }

    /// The identity in an OpenID Connect ID token that the web worklist's
    /// browser sign-in received from the provider's token endpoint: signed
    /// by the provider's keys, from its issuer, for `client_id` (`aud`),
    /// unexpired, and carrying the `nonce` the sign-in sent (so a token
    /// from another sign-in cannot be replayed). Roles come from the same
    /// claim as for bearer tokens.
    pub fn id_token_identity(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Identity, AuthError> {
        if client_id.is_empty() {
            return Err(AuthError::Config("the OpenID client id is empty".into()));
        }
        let (identity, claims) = self.verify_token(token, client_id)?;
        let sent = claims.get("nonce").and_then(|n| n.as_str());
        if nonce.is_empty() || sent != Some(nonce) {
            return Err(AuthError::Unauthenticated(
                "ID token refused: the nonce does not match this sign-in".into(),
            ));
        }
        Ok(identity)
    }

    /// Verifies a JWT from the provider (`audience` empty: not checked);
    /// its identity and claims.
    fn verify_token(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<(Identity, serde_json::Value), AuthError> {
        let Some(config) = &self.config.tokens else {
            return Err(AuthError::Unauthenticated(
                "bearer tokens are not accepted here".into(),
            ));
        };
        let bad = |why: &str| AuthError::Unauthenticated(format!("bearer token refused: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&header.alg)
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[config.issuer.as_str()]);
        if audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[audience]);
        }
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_s;
        let mut last = bad("no key of the provider signed it");
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation) {
                Ok(data) => {
                    let identity = self.claims_identity(config, &data.claims);
                    return Ok((identity, data.claims));
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => bad("expired"),
                        ErrorKind::ImmatureSignature => bad("not valid yet"),
                        ErrorKind::InvalidIssuer => bad("wrong issuer"),
                        ErrorKind::InvalidAudience => bad("wrong audience"),
                        ErrorKind::InvalidSignature => bad("signature does not verify"),
                        ErrorKind::MissingRequiredClaim(_) => bad("a required claim is missing"),
                        _ => bad("invalid"),
                    };
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn claims_identity(&self, config: &TokenConfig, claims: &serde_json::Value) -> Identity {
        let subject = claims
            .get(&config.subject_claim)
            .or_else(|| claims.get("sub"))
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect();
        let mut value = Some(claims);
        for part in config.roles_claim.split('.') {
            value = value.and_then(|v| v.get(part));
        }
        let roles = value
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .filter_map(|r| config.role_map.get(r).copied().or_else(|| Role::parse(r)))
            .collect();
        Identity {
            subject,
            roles,
            method: Method::Token,
        }
    }

    fn certificate_identity(&self, der: &[u8]) -> Result<Identity, AuthError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| {
            AuthError::Unauthenticated("the client certificate does not parse".into())
        })?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| {
                AuthError::Unauthenticated("the client certificate has no common name".into())
            })?
            .to_string();
        let roles = self
            .config
            .clients
            .get(&cn)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        Ok(Identity {
            subject: cn,
            roles,
            method: Method::Certificate,
        })
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))
}

/// A PEM public key: RSA (RS*/PS*) or EC (ES256/ES384).
fn pem_key(path: &PathBuf) -> Result<Key, AuthError> {
    let pem = read(path)?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(Key {
            kid: None,
            key,
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok(Key {
            kid: None,
            key,
            algorithms: vec![Algorithm::ES256, Algorithm::ES384],
        });
    }
    Err(AuthError::Config(format!(
        "{}: not an RSA or EC public key in PEM",
        path.display()
    )))
}

/// The signing keys of a JWKS file.
fn jwks_keys(path: &PathBuf) -> Result<Vec<Key>, AuthError> {
    let text = read(path)?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&text)
        .map_err(|e| AuthError::Config(format!("{}: not a JWKS: {e}", path.display())))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let algorithms = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => {
                vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                ]
            }
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                vec![Algorithm::ES256, Algorithm::ES384]
            }
            _ => continue,
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        });
    }
    if keys.is_empty() {
        return Err(AuthError::Config(format!(
            "{}: no RSA or EC signing key",
            path.display()
        )));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mode_is_an_anonymous_admin_and_enabled_mode_needs_credentials() {
        let open = Authenticator::new(&AuthConfig::default()).unwrap();
        let who = open.authenticate(&Credentials::default()).unwrap();
        assert_eq!(who.method, Method::Open);
        assert!(who.may(Role::Admin));

        let config = AuthConfig {
            enabled: true,
            clients: [("pacs-gateway".to_string(), vec![Role::Uploader])].into(),
            ..AuthConfig::default()
        };
        let closed = Authenticator::new(&config).unwrap();
        assert!(matches!(
            closed.authenticate(&Credentials::default()),
            Err(AuthError::Unauthenticated(_))
        ));
        let err = closed
            .authenticate(&Credentials {
                authorization: Some("Basic dXNlcjpwYXNz"),
                peer_certificates: None,
            })
            .unwrap_err();
        assert!(!err.to_string().contains("dXNlcjpwYXNz"), "{err}");
        // Tokens were not configured: a bearer token is refused, not
        // ignored.
        assert!(closed
            .authenticate(&Credentials {
                authorization: Some("Bearer abc.def.ghi"),
                peer_certificates: None,
            })
            .is_err());
    }

    #[test]
    fn enabled_without_any_way_in_is_a_configuration_error() {
        let err = Authenticator::new(&AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)));
        let err = Authenticator::new(&AuthConfig {
            tokens: Some(TokenConfig {
                issuer: "https://idp".into(),
                public_keys: vec!["/nonexistent/key.pem".into()],
                ..TokenConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    }

    #[test]
    fn roles_map_from_nested_claims_and_provider_names() {
        let config = TokenConfig {
            issuer: "i".into(),
            role_map: [("radiologist".to_string(), Role::Reader)].into(),
            ..TokenConfig::default()
        };
        let auth = Authenticator {
            config: AuthConfig::default(),
            keys: Vec::new(),
        };
        let claims = serde_json::json!({
            "sub": "f3a1", "preferred_username": "dr.lan",
            "realm_access": {"roles": ["radiologist", "uploader", "offline_access"]}
        });
        let who = auth.claims_identity(&config, &claims);
        assert_eq!(who.subject, "dr.lan");
        assert_eq!(who.roles, [Role::Reader, Role::Uploader].into());
        assert!(!who.may(Role::Admin));
    }
}
