//! Export of the audit trail as RFC 5424 syslog messages, the transport IHE
//! ATNA uses, to a hospital's audit record repository or SIEM.
//!
//! A task follows the audit table (it never sits in a request's path):
//! every second it sends the records after the last one sent, in order, and
//! remembers the last sequence in `<data_dir>/audit-syslog.seq`, so that a
//! restart or an unreachable collector resends from there rather than
//! losing records. Each message carries the whole entry as structured data
//! (`[cxr-audit@32473 seq=… hash=… who=… …]`; 32473 is the private
//! enterprise number RFC 5612 reserves for documentation), facility 13 (log
//! audit), severity informational for `ok` and warning for refusals. UDP
//! (RFC 5426, one datagram each) or TCP with octet counting (RFC 6587).
//! Audit entries hold identities, roles, actions, UIDs and addresses; no
//! patient names or IDs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use cxr_worklist::{AuditRecord, WorklistStore};

/// Where the messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One datagram per message.
    Udp(SocketAddr),
    /// A stream, messages framed by their length.
    Tcp(SocketAddr),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("`{s}`: expected udp://HOST:PORT or tcp://HOST:PORT"))?;
        let addr = std::net::ToSocketAddrs::to_socket_addrs(rest)
            .map_err(|e| format!("`{s}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{s}`: no address"))?;
        match scheme {
            "udp" => Ok(Target::Udp(addr)),
            "tcp" => Ok(Target::Tcp(addr)),
            other => Err(format!("`{s}`: unknown transport `{other}` (udp or tcp)")),
        }
    }
}

/// RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` are escaped; control
/// characters (none are expected) become spaces.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One record as an RFC 5424 message (without transport framing).
pub fn format(record: &AuditRecord, hostname: &str, pid: u32) -> String {
    let e = &record.entry;
    // Facility 13 (log audit); severity 6 (informational) or 4 (warning).
    let severity = if e.outcome.eq_ignore_ascii_case("ok") {
        6
    } else {
        4
    };
    let timestamp = chrono::DateTime::from_timestamp_millis(e.at_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".into());
    let host = if hostname.is_empty() { "-" } else { hostname };
    format!(
        "<{}>1 {timestamp} {host} cxr-triage {pid} cxr-audit [cxr-audit@32473 seq=\"{}\" hash=\"{}\" \
         who=\"{}\" roles=\"{}\" method=\"{}\" action=\"{}\" object=\"{}\" address=\"{}\" outcome=\"{}\"] \
         {} {} {}: {}",
        13 * 8 + severity,
        record.sequence,
        record.hash,
        escape(&e.who),
        escape(&e.roles),
        escape(&e.method),
        escape(&e.action),
        escape(&e.object),
        escape(&e.address),
        escape(&e.outcome),
        e.who,
        e.action,
        e.object,
        e.outcome
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

/// Follows the audit trail of `store` and sends it to `target` until the
/// process ends; `state` holds the last sequence sent.
pub async fn export(store: Arc<dyn WorklistStore>, target: Target, state: PathBuf) {
    let host = hostname();
    let pid = std::process::id();
    let mut last: u64 = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut tcp: Option<tokio::net::TcpStream> = None;
    let mut udp: Option<tokio::net::UdpSocket> = None;
    let mut failing = false;
    loop {
        let from = last;
        let store_ = Arc::clone(&store);
        let records = tokio::task::spawn_blocking(move || store_.audit_after(from, 500)).await;
        let records = match records {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "audit export: reading the audit trail failed");
                Vec::new()
            }
            Err(_) => return,
        };
        let mut sent_any = false;
        for record in &records {
            let message = format(record, &host, pid);
            let sent = send(target, &message, &mut tcp, &mut udp).await;
            if let Err(e) = sent {
                if !failing {
                    tracing::warn!(error = %e, ?target, "audit export: cannot reach the syslog collector; will resend");
                }
                failing = true;
                tcp = None;
                break;
            }
            if failing {
                tracing::info!(?target, "audit export: syslog collector reachable again");
                failing = false;
            }
            last = record.sequence;
            sent_any = true;
        }
        if sent_any {
            metrics::gauge!("cxr_audit_exported_sequence").set(last as f64);
            if let Err(e) = std::fs::write(&state, format!("{last}\n")) {
                tracing::warn!(error = %e, "audit export: cannot record progress");
            }
        }
        if records.len() < 500 || failing {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn send(
    target: Target,
    message: &str,
    tcp: &mut Option<tokio::net::TcpStream>,
    udp: &mut Option<tokio::net::UdpSocket>,
) -> anyhow::Result<()> {
    match target {
        Target::Udp(addr) => {
            if udp.is_none() {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse()?
                } else {
                    "[::]:0".parse()?
                };
                *udp = Some(tokio::net::UdpSocket::bind(local).await?);
            }
            let socket = udp.as_ref().context("UDP socket")?;
            socket.send_to(message.as_bytes(), addr).await?;
        }
        Target::Tcp(addr) => {
            if tcp.is_none() {
                *tcp = Some(
                    tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    .context("connect timed out")??,
                );
            }
            let stream = tcp.as_mut().context("TCP stream")?;
            let framed = format!("{} {message}", message.len());
            tokio::time::timeout(Duration::from_secs(5), stream.write_all(framed.as_bytes()))
                .await
                .context("send timed out")??;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxr_worklist::AuditEntry;

    #[test]
    fn messages_follow_rfc_5424_and_escape_parameter_values() {
        let record = AuditRecord {
            sequence: 7,
            entry: AuditEntry {
                at_ms: 1_764_806_400_123,
                who: "dr \"nguyen\" ]x".into(),
                roles: "reader".into(),
                method: "token".into(),
                action: "GetStudy".into(),
                object: "study:1.2.3".into(),
                address: "10.0.0.9:5123".into(),
                outcome: "PERMISSION_DENIED".into(),
            },
            prev_hash: "0".repeat(64),
            hash: "ab".repeat(32),
        };
        let m = format(&record, "ward-3", 42);
        assert!(
            m.starts_with("<108>1 2025-12-04T00:00:00.123Z ward-3 cxr-triage 42 cxr-audit [cxr-audit@32473 seq=\"7\" "),
            "{m}"
        );
        assert!(m.contains(r#"who="dr \"nguyen\" \]x""#), "{m}");
        assert!(m.contains("outcome=\"PERMISSION_DENIED\"]"), "{m}");
        let ok = AuditRecord {
            entry: AuditEntry {
                outcome: "ok".into(),
                ..record.entry.clone()
            },
            ..record
        };
        assert!(format(&ok, "", 1).starts_with("<110>1 "));
        assert!(format(&ok, "", 1).contains(" - cxr-triage 1 "));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "udp://127.0.0.1:514".parse::<Target>(),
            Ok(Target::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert!(matches!(
            "tcp://127.0.0.1:601".parse::<Target>(),
            Ok(Target::Tcp(_))
        ));
        assert!("syslog.example".parse::<Target>().is_err());
        assert!("ftp://127.0.0.1:21".parse::<Target>().is_err());
    }
}
