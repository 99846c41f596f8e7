//! Outbound HTTP(S) requests to the hospital's own servers (the OpenID
//! provider's token endpoint, a FHIR server): one HTTP/1.1 request per
//! connection, TLS verified against the site's CA file (or the system's
//! roots), a credential in `Authorization`, the answer read up to a
//! bound. Nothing here follows redirects.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};

/// Outbound request errors.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL or the TLS set-up cannot work; retrying will not help.
    #[error("{0}")]
    Config(String),
    /// Connecting, TLS, writing or reading failed.
    #[error("{0}")]
    Transport(String),
}

/// An answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (at most the bound asked for).
    pub body: Bytes,
}

/// A client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl HttpClient {
    /// A client; with `tls`, `https://` URLs are verified against
    /// `ca_file` (PEM), or the system's roots when it is `None`.
    pub fn new(tls: bool, ca_file: Option<&Path>) -> Result<HttpClient, OutboundError> {
        Ok(HttpClient {
            tls: if tls { Some(connector(ca_file)?) } else { None },
        })
    }

    /// POSTs `body` to `url`; the answer, its body read up to `max_answer`
    /// bytes.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        accept: &str,
        authorization: Option<&str>,
        body: Bytes,
        max_answer: usize,
    ) -> Result<Answer, OutboundError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| OutboundError::Config(format!("`{url}` is not a URL")))?;
        let host = uri.host().unwrap_or_default().to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(OutboundError::Config(format!("`{url}` is not http(s)"))),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_matches(['[', ']']).to_string();
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| OutboundError::Transport(format!("connecting to {host}:{port}: {e}")))?;
        let mut request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or("", |a| a.as_str()))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, accept);
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| OutboundError::Config(e.to_string()))?;
        match (https, &self.tls) {
            (false, _) => send(tcp, request, max_answer).await,
            (true, Some(tls)) => {
                let name = rustls_pki_types::ServerName::try_from(bare)
                    .map_err(|_| OutboundError::Config(format!("`{host}` is not a host name")))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| OutboundError::Transport(format!("TLS with {host}: {e}")))?;
                send(stream, request, max_answer).await
            }
            (true, None) => Err(OutboundError::Config(
                "an https URL, but TLS was not set up".into(),
            )),
        }
    }
}

/// A TLS client for other protocols (MLLP): the server's certificate is
/// verified against a CA file (or the system's roots), and a client
/// certificate is presented when one is given (mutual TLS).
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
}

impl TlsClient {
    /// A client trusting `ca_file` (PEM; `None`: the system's roots),
    /// presenting `identity` (certificate chain PEM, private key PEM) when
    /// given.
    pub fn new(
        ca_file: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsClient, OutboundError> {
        Ok(TlsClient {
            connector: connector_with(ca_file, identity)?,
        })
    }

    /// TLS over `stream` with `server_name` (checked against the server's
    /// certificate).
    pub async fn connect<S>(
        &self,
        server_name: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, OutboundError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let bare = server_name.trim_matches(['[', ']']).to_string();
        let name = rustls_pki_types::ServerName::try_from(bare)
            .map_err(|_| OutboundError::Config(format!("`{server_name}` is not a host name")))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| OutboundError::Transport(format!("TLS with {server_name}: {e}")))
    }
}

fn connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, OutboundError> {
    connector_with(ca_file, None)
}

fn connector_with(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<tokio_rustls::TlsConnector, OutboundError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let path = ca_file.unwrap_or(Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| OutboundError::Config(format!("CA file {}: {e}", path.display())))?;
    for cert in certs.flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(OutboundError::Config(format!(
            "CA file {}: no certificate",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        None => config.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| {
                    OutboundError::Config(format!("certificate {}: {e}", cert_file.display()))
                })?
                .flatten()
                .collect();
            if chain.is_empty() {
                return Err(OutboundError::Config(format!(
                    "certificate {}: no certificate",
                    cert_file.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                OutboundError::Config(format!("private key {}: {e}", key_file.display()))
            })?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| OutboundError::Config(format!("client certificate: {e}")))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    max_answer: usize,
) -> Result<Answer, OutboundError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| OutboundError::Transport(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| OutboundError::Transport(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = Limited::new(response.into_body(), max_answer)
        .collect()
        .await
        .map_err(|_| OutboundError::Transport("the answer is too large or broken".into()))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Standard base64 with padding (RFC 4648 §4), for `Basic` credentials.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[tokio::test]
    async fn a_url_that_cannot_work_is_a_configuration_error() {
        let c = HttpClient::new(false, None).unwrap();
        let r = c
            .post("ftp://x/", "a/b", "a/b", None, Bytes::new(), 10)
            .await;
        assert!(matches!(r, Err(OutboundError::Config(_))));
        let r = c
            .post("https://127.0.0.1:1/", "a/b", "a/b", None, Bytes::new(), 10)
            .await;
        assert!(matches!(r, Err(OutboundError::Transport(_))), "{r:?}");
    }
}
