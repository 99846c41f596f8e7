//! The `[dicom]` section of the service configuration: the listener's
//! application entity, who may call it, its limits, the spool, study
//! grouping, and where results go back to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// DICOM networking of `serve`: a C-ECHO / C-STORE listener (off unless
/// `enabled`), and the destination AI results are sent back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomConfig {
    /// Start the DICOM listener with the service.
    pub enabled: bool,
    /// This node's AE title: associations must call it.
    pub ae_title: String,
    /// Listen address (the registered DICOM port is 104; 11112 needs no
    /// privilege).
    pub listen: SocketAddr,
    /// Calling AE titles allowed to associate; empty admits any caller
    /// (a warning is logged at start-up).
    pub allowed_calling_aes: Vec<String>,
    /// Largest PDU this node receives, bytes (offered as Maximum Length).
    pub max_pdu: u32,
    /// Associations served at once; more are rejected (transient, local
    /// limit exceeded), so a sender retries later.
    pub max_associations: usize,
    /// Associations served at once for one peer address; more from it are
    /// rejected like those beyond `max_associations`, so one host (or one
    /// misbehaving modality) cannot take every slot.
    pub max_associations_per_peer: usize,
    /// Seconds a new connection may take to complete association set-up
    /// (its A-ASSOCIATE-RQ read and answered, the ARTIM timer of PS3.8
    /// §9.1.5); a connection that sends nothing is closed and frees its slot.
    pub setup_timeout_s: u64,
    /// Objects from one sender (calling AE, STOW-RS user) that may turn out
    /// unreadable (NOT_ANALYZED for a failure: undecodable, unsupported)
    /// within an hour; beyond that its objects are refused as "out of
    /// resources" (the sender retries later) until the hour has passed, so
    /// a broken modality or a flood of junk cannot fill the worklist with
    /// entries ranked above ROUTINE.
    pub max_unreadable_per_source_per_hour: usize,
    /// Largest data set accepted in one C-STORE, MiB; a larger one is
    /// answered "out of resources" and not kept.
    pub max_object_mib: u64,
    /// Seconds without a PDU from the peer before an association is aborted.
    pub timeout_s: u64,
    /// DICOMweb STOW-RS receive (`POST /studies`, HTTP/1.1) on this
    /// address; off when unset. There is no authentication: bind it to a
    /// trusted network or put it behind a proxy that authenticates.
    pub stow_listen: Option<SocketAddr>,
    /// Spool, outbox and their state; `<data_dir>/pacs` when unset.
    pub spool_dir: Option<PathBuf>,
    /// A study's result is final once no image of it has arrived for this
    /// many seconds (and all of its images are analysed); results go back
    /// then. Images arriving later update the study and are sent after
    /// their own quiet period.
    pub study_quiet_s: u64,
    /// Send a Secondary Capture image with the heatmap and findings burned in.
    pub send_sc: bool,
    /// For an image the AI did not analyse (a lateral, unreadable pixels,
    /// a failed inference), send a Secondary Capture notice saying so and
    /// why, so that PACS users never take "no AI result" for "nothing
    /// found". Needs `send_sc`.
    pub send_not_analyzed: bool,
    /// Send a Comprehensive 3D SR (TID 1500) with findings, scores,
    /// operating points, regions and the algorithm's identity.
    pub send_sr: bool,
    /// Where results are sent (C-STORE); nothing is sent when unset.
    pub destination: Option<Destination>,
    /// Retries of the outbox.
    pub retry: RetryPolicy,
}

/// A remote application entity results are stored to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Its AE title (the called AE title).
    pub ae_title: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Destination {
    /// Parses `AE@host:port`.
    pub fn parse(text: &str) -> Option<Destination> {
        let (ae, addr) = text.split_once('@')?;
        let (host, port) = addr.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Destination {
            ae_title: ae.to_string(),
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
    }
}

/// How the outbox retries a destination that fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// First wait after a failure, seconds; doubled on each further failure.
    pub initial_s: u64,
    /// Longest wait between attempts, seconds.
    pub max_s: u64,
    /// An object not sent this many hours after it was made is marked
    /// failed and no longer tried (it stays listed in the outbox state).
    pub give_up_after_h: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_s: 5,
            max_s: 300,
            give_up_after_h: 72,
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempts + 1`, after `attempts` failures.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(20);
        let s = self.initial_s.max(1).saturating_mul(1u64 << exp);
        (s.min(self.max_s.max(1)) * 1000) as i64
    }
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            enabled: false,
            ae_title: "CXR_TRIAGE".into(),
            listen: "127.0.0.1:11112".parse().expect("literal"),
            allowed_calling_aes: Vec::new(),
            max_pdu: 65_536,
            max_associations: 16,
            max_associations_per_peer: 4,
            setup_timeout_s: 10,
            max_unreadable_per_source_per_hour: 100,
            max_object_mib: 256,
            timeout_s: 60,
            stow_listen: None,
            spool_dir: None,
            study_quiet_s: 30,
            send_sc: true,
            send_sr: true,
            send_not_analyzed: true,
            destination: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("[dicom] {field}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl DicomConfig {
    /// The spool/outbox directory for a service whose data live in `data_dir`.
    pub fn state_dir(&self, data_dir: &Path) -> PathBuf {
        self.spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("pacs"))
    }

    /// Checks AE titles and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if let Err(r) = check_ae_title(&self.ae_title) {
            return err("ae_title", r);
        }
        for ae in &self.allowed_calling_aes {
            if let Err(r) = check_ae_title(ae) {
                return err("allowed_calling_aes", format!("`{ae}`: {r}"));
            }
        }
        if let Some(d) = &self.destination {
            if let Err(r) = check_ae_title(&d.ae_title) {
                return err("destination.ae_title", r);
            }
            if d.host.is_empty() || d.port == 0 {
                return err("destination", "needs a host and a non-zero port".into());
            }
        }
        if !(4096..=16 << 20).contains(&self.max_pdu) {
            return err(
                "max_pdu",
                format!("{} is not in 4096..=16777216", self.max_pdu),
            );
        }
        if self.max_associations == 0 {
            return err("max_associations", "must be at least 1".into());
        }
        if self.max_associations_per_peer == 0 {
            return err("max_associations_per_peer", "must be at least 1".into());
        }
        if self.setup_timeout_s == 0 {
            return err("setup_timeout_s", "must be at least 1".into());
        }
        if self.max_object_mib == 0 {
            return err("max_object_mib", "must be at least 1".into());
        }
        if self.timeout_s == 0 {
            return err("timeout_s", "must be at least 1".into());
        }
        Ok(())
    }
}

/// An AE title: 1–16 characters of the default repertoire, no backslash or
/// control characters, not only spaces.
pub fn check_ae_title(ae: &str) -> Result<(), String> {
    if ae.trim().is_empty() {
        return Err("empty".into());
    }
    if ae.len() > 16 {
        return Err(format!("`{ae}` is longer than 16 characters"));
    }
    if ae
        .chars()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '\\')
    {
        return Err(format!("`{ae}` has a character an AE title cannot hold"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = DicomConfig {
            destination: Some(Destination::parse("PACS@10.0.0.5:104").unwrap()),
            ..DicomConfig::default()
        };
        c.validate().unwrap();
        let back: DicomConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_ae_titles_and_limits_name_the_field() {
        let mut c = DicomConfig {
            ae_title: "A_TITLE_LONGER_THAN_16".into(),
            ..DicomConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("ae_title"));
        c.ae_title = "OK".into();
        c.allowed_calling_aes = vec!["BAD\\AE".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("allowed_calling_aes"));
        c.allowed_calling_aes.clear();
        c.max_pdu = 100;
        assert!(c.validate().unwrap_err().to_string().contains("max_pdu"));
    }

    #[test]
    fn destinations_parse() {
        let d = Destination::parse("ORTHANC@[::1]:4242").unwrap();
        assert_eq!(
            (d.ae_title.as_str(), d.host.as_str(), d.port),
            ("ORTHANC", "::1", 4242)
        );
        assert!(Destination::parse("no-port@host").is_none());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryPolicy {
            initial_s: 5,
            max_s: 60,
            give_up_after_h: 1,
        };
        let waits: Vec<i64> = (1..=6).map(|a| r.backoff_ms(a)).collect();
        assert_eq!(waits, [5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
    }
}
