//! Service configuration: embedded defaults that work with zero
//! configuration, a TOML file for a site, and environment variables for the
//! common overrides. `cxr-triage serve --print-config` shows the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cxr_findings::priority::PriorityPolicy;
use cxr_model::EngineConfig;
#[cfg(test)]
use cxr_model::ProviderChoice;

/// Everything `serve` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address (HTTP `/metrics`); empty to disable.
    pub metrics_listen: Option<SocketAddr>,
    /// A plaintext gRPC listener serving only `grpc.health.v1` (no patient
    /// data, no other method), for probes that cannot speak TLS or present
    /// a token — Kubernetes' native gRPC probes, a load balancer's health
    /// check. Unset: health is on `listen` only.
    pub health_listen: Option<SocketAddr>,
    /// Data directory: the worklist database lives here.
    pub data_dir: PathBuf,
    /// Models, execution provider, batching, operating points.
    pub engine: EngineConfig,
    /// Which operating point makes a finding CRITICAL.
    pub priority: PriorityPolicy,
    /// Request limits.
    pub limits: Limits,
    /// TLS (off when absent).
    pub tls: Option<TlsConfig>,
    /// DICOM listener and results back to PACS (`[dicom]`).
    pub dicom: cxr_pacs::DicomConfig,
    /// Who may call the service, and with which roles (`[auth]`).
    pub auth: cxr_auth::AuthConfig,
    /// How long what is only needed for a while is kept (`[retention]`).
    pub retention: Retention,
    /// How compressed films are decoded (`[decode]`: JPEG 2000 on the GPU).
    pub decode: cxr_pipeline::jpeg2000::DecodeConfig,
    /// Audit trail export (`[audit]`).
    pub audit: AuditConfig,
    /// Where the worklist is kept (`[worklist]`).
    pub worklist: WorklistConfig,
    /// The web worklist, the radiologists' screen (`[web]`; on by default
    /// on 127.0.0.1:8080; `CXR_WEB_LISTEN=off` turns it off).
    pub web: cxr_web::WebConfig,
    /// Results to the RIS as HL7 v2.5.1 ORU^R01 over MLLP (`[hl7]`; off
    /// unless `destination` is set).
    pub hl7: cxr_ris::Hl7Config,
    /// Results to a FHIR R4 server (`[fhir]`; off unless `base_url` is
    /// set).
    pub fhir: cxr_ris::FhirConfig,
}

/// `[worklist]`: where results, the change log and the audit trail are
/// kept. By default a SQLite file in the data directory, which needs
/// nothing else; a PostgreSQL database when several replicas of the
/// service share one worklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorklistConfig {
    /// Empty: `<data_dir>/worklist.sqlite`. `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (or `postgresql://`): that PostgreSQL database, created tables and
    /// all on first use. Anything else: a SQLite file at that path
    /// (`sqlite://` optional). Best set from a secret through
    /// `CXR_WORKLIST_URL`; the password is never printed.
    pub url: String,
    /// PostgreSQL connections this process opens at most.
    pub connections: usize,
}

impl Default for WorklistConfig {
    fn default() -> Self {
        WorklistConfig {
            url: String::new(),
            connections: 8,
        }
    }
}

/// `url` with any password replaced by `***` (the `user:password@` of a
/// URL, a `password=` parameter), for printing and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = rest..rest + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// `[audit]`: the audit trail is always kept in the worklist database
/// (`cxr-triage audit verify|show`); it can also go to a syslog collector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// RFC 5424 syslog collector (an audit record repository, a SIEM):
    /// `udp://HOST:PORT` or `tcp://HOST:PORT`; unset: no export.
    pub syslog: Option<String>,
}

/// Retention: `serve` purges once a day (and `cxr-triage purge` on
/// demand) what is older than `days`: previews and heatmaps of read or
/// dismissed studies and the change log; with `results`, those studies
/// themselves. Open studies and the audit trail are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days to keep (0: keep everything).
    pub days: u32,
    /// Also remove read or dismissed studies and their results.
    pub results: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 90,
            results: false,
        }
    }
}

impl Retention {
    /// The cutoff before which things go, ms since the epoch, at `now_ms`
    /// (`None`: keep everything).
    pub fn cutoff_ms(&self, now_ms: i64) -> Option<i64> {
        (self.days > 0).then(|| now_ms.saturating_sub(i64::from(self.days) * 86_400_000))
    }
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest gRPC message (a whole DICOM file in `Analyze`), MiB.
    pub max_message_mib: usize,
    /// Largest file accepted through `AnalyzeStream`, MiB.
    pub max_stream_mib: usize,
    /// Analyses in flight at once, uploads still being received included;
    /// more are refused at once with RESOURCE_EXHAUSTED (and a retry hint)
    /// before their bytes are read. Memory held by uploads is at most this
    /// many times the size limits above.
    pub max_concurrent_analyses: usize,
    /// Of those, at most this many for one client address (more from it
    /// are refused with RESOURCE_EXHAUSTED while other clients still get
    /// slots).
    pub max_analyses_per_peer: usize,
    /// Longest time one request may take, seconds (not `WatchWorklist`
    /// streams, which last until the client or the service ends them).
    pub request_timeout_s: u64,
    /// `WatchWorklist` streams open at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// Seconds an upload (Analyze, AnalyzeStream) may go without sending
    /// data before it fails and frees its analysis slot.
    pub upload_idle_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_mib: 64,
            max_stream_mib: 128,
            max_concurrent_analyses: 16,
            max_analyses_per_peer: cxr_api::DEFAULT_MAX_ANALYSES_PER_PEER,
            request_timeout_s: 120,
            max_watchers: cxr_api::DEFAULT_MAX_WATCHERS,
            upload_idle_s: cxr_api::DEFAULT_UPLOAD_IDLE_S,
        }
    }
}

/// TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA that client certificates must chain to (mutual TLS when set).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:50051".parse().expect("literal"),
            metrics_listen: Some("127.0.0.1:9464".parse().expect("literal")),
            health_listen: None,
            data_dir: PathBuf::from("data"),
            engine: EngineConfig::default(),
            priority: PriorityPolicy::default(),
            limits: Limits::default(),
            tls: None,
            dicom: cxr_pacs::DicomConfig::default(),
            auth: cxr_auth::AuthConfig::default(),
            retention: Retention::default(),
            decode: cxr_pipeline::jpeg2000::DecodeConfig::default(),
            audit: AuditConfig::default(),
            worklist: WorklistConfig::default(),
            web: cxr_web::WebConfig::default(),
            hl7: cxr_ris::Hl7Config::default(),
            fhir: cxr_ris::FhirConfig::default(),
        }
    }
}

impl ServiceConfig {
    /// Defaults, then the file (if any), then environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<ServiceConfig> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => ServiceConfig::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Overrides from `CXR_*` variables (read through `get`), one rule for
    /// every key of the file: `CXR_` and the key's path in upper case with
    /// `_` for `.` — `engine.batch.max_batch` is `CXR_ENGINE_BATCH_MAX_BATCH`,
    /// `dicom.ae_title` is `CXR_DICOM_AE_TITLE`, `limits.request_timeout_s`
    /// is `CXR_LIMITS_REQUEST_TIMEOUT_S` — plus the short names of
    /// [`ENV_ALIASES`]. Values are read as the key's type: numbers, `true`/
    /// `false` (or 1/0, on/off, yes/no), lists as comma-separated text; an
    /// optional key set to `off` or to nothing is unset. The DICOM
    /// destination is written `AE@host:port`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let mut tree = toml::Value::try_from(&*self)?;
        let paths = env_keys(&tree);
        let mut changed = false;
        let mut unset = Vec::new();
        for path in &paths {
            let key = path.join(".");
            let mut names = vec![env_name(path)];
            names.extend(
                ENV_ALIASES
                    .iter()
                    .filter(|(_, k)| *k == key)
                    .map(|(alias, _)| alias.to_string()),
            );
            for name in names {
                let Some(text) = get(&name) else { continue };
                let value = env_value(&tree, path, &text)
                    .map_err(|why| anyhow::anyhow!("{name}={text}: {why}"))?;
                if value.is_none() {
                    unset.push(key.clone());
                }
                set_path(&mut tree, path, value);
                changed = true;
            }
        }
        if changed {
            *self = tree
                .try_into()
                .map_err(|e| anyhow::anyhow!("environment: {e}"))?;
        }
        // A key left out of the file takes its default, which for some
        // optional keys is set: unsetting needs saying so.
        for key in unset {
            match key.as_str() {
                "metrics_listen" => self.metrics_listen = None,
                "health_listen" => self.health_listen = None,
                "web.listen" => self.web.listen = None,
                "dicom.stow_listen" => self.dicom.stow_listen = None,
                "dicom.spool_dir" => self.dicom.spool_dir = None,
                "dicom.destination" => self.dicom.destination = None,
                "engine.session.ort_library" => self.engine.session.ort_library = None,
                "priority.urgent_operating_point" => self.priority.urgent_operating_point = None,
                k if k.starts_with("auth.tokens.") => self.auth.tokens = None,
                _ => self.tls = None,
            }
        }
        Ok(())
    }

    /// The embedded worklist database file (used when `worklist.url` is
    /// empty).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("worklist.sqlite")
    }

    /// Where the worklist is: `worklist.url`, or the embedded SQLite file.
    pub fn worklist_url(&self) -> String {
        if self.worklist.url.trim().is_empty() {
            self.database_path().display().to_string()
        } else {
            self.worklist.url.trim().to_string()
        }
    }

    /// Whether the worklist is a PostgreSQL database.
    pub fn worklist_is_postgres(&self) -> bool {
        let url = self.worklist_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// Opens the worklist store. A SQLite file must exist already unless
    /// `create` (`serve` creates it; the maintenance commands do not).
    pub fn open_worklist(
        &self,
        create: bool,
    ) -> anyhow::Result<std::sync::Arc<dyn cxr_worklist::WorklistStore>> {
        use anyhow::Context as _;
        let url = self.worklist_url();
        if !create && !self.worklist_is_postgres() {
            let path = Path::new(url.strip_prefix("sqlite://").unwrap_or(&url));
            anyhow::ensure!(path.exists(), "no worklist database at {}", path.display());
        }
        cxr_worklist::open_store(&url, self.worklist.connections.max(1))
            .with_context(|| format!("opening the worklist at {}", redact_url(&url)))
    }

    /// The configuration as TOML (passwords in `worklist.url` hidden).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.worklist.url = redact_url(&shown.worklist.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

/// Short environment names kept for the common keys (the long form
/// works too).
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("CXR_MODELS_DIR", "engine.models_dir"),
    ("CXR_PROVIDER", "engine.session.provider"),
    ("CXR_INTRA_THREADS", "engine.session.intra_threads"),
    ("CXR_MAX_BATCH", "engine.batch.max_batch"),
    ("CXR_MAX_CONCURRENT", "limits.max_concurrent_analyses"),
];

/// Keys that are absent by default (so not found by walking the defaults)
/// but may be set from the environment.
const OPTIONAL_KEYS: &[&str] = &[
    "metrics_listen",
    "health_listen",
    "web.listen",
    "decode.library",
    "audit.syslog",
    "tls.cert",
    "tls.key",
    "tls.client_ca",
    "dicom.stow_listen",
    "dicom.spool_dir",
    "dicom.destination",
    "engine.session.ort_library",
    "priority.urgent_operating_point",
    "auth.tokens.issuer",
    "auth.tokens.audience",
    "auth.tokens.jwks_file",
];

/// Every key an environment variable can set: the leaves of `tree`, and
/// the optional keys.
fn env_keys(tree: &toml::Value) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    leaf_paths(tree, &mut Vec::new(), &mut paths);
    for optional in OPTIONAL_KEYS {
        let path: Vec<String> = optional.split('.').map(String::from).collect();
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// `CXR_` + the path in upper case, `_`-joined.
fn env_name(path: &[String]) -> String {
    format!("CXR_{}", path.join("_").to_uppercase())
}

/// Every leaf key of a configuration tree (tables are walked into).
fn leaf_paths(value: &toml::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                prefix.push(k.clone());
                leaf_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn get_path<'a>(tree: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(tree, |v, k| v.get(k))
}

/// Sets (or, for `None`, removes) a key, making tables on the way.
fn set_path(tree: &mut toml::Value, path: &[String], value: Option<toml::Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for k in parents {
        let Some(table) = node.as_table_mut() else {
            return;
        };
        node = table
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    if let Some(table) = node.as_table_mut() {
        match value {
            Some(v) => {
                table.insert(last.clone(), v);
            }
            None => {
                table.remove(last);
            }
        }
    }
}

/// An environment value as the key's type (`None`: unset an optional key).
fn env_value(
    tree: &toml::Value,
    path: &[String],
    text: &str,
) -> Result<Option<toml::Value>, String> {
    let key = path.join(".");
    let optional = OPTIONAL_KEYS.contains(&key.as_str());
    if optional && (text.is_empty() || text == "off") {
        return Ok(None);
    }
    if key == "dicom.destination" {
        let d = cxr_pacs::Destination::parse(text).ok_or("expected AE@host:port")?;
        return toml::Value::try_from(d)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    let value = match get_path(tree, path) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(text.trim().parse().map_err(|_| "not a whole number")?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(text.trim().parse().map_err(|_| "not a number")?)
        }
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match text.trim() {
            "1" | "true" | "on" | "yes" => true,
            "0" | "false" | "off" | "no" | "" => false,
            _ => return Err("not true or false".into()),
        }),
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(text.to_string()),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worklist_url_comes_from_the_environment_and_its_password_is_never_printed() {
        let mut c = ServiceConfig::default();
        assert_eq!(c.worklist_url(), "data/worklist.sqlite");
        assert!(!c.worklist_is_postgres());
        c.apply_env(|k| {
            (k == "CXR_WORKLIST_URL").then(|| "postgres://cxr:s3cr%40t@db.local:5432/cxr".into())
        })
        .unwrap();
        assert!(c.worklist_is_postgres());
        assert_eq!(
            c.worklist_url(),
            "postgres://cxr:s3cr%40t@db.local:5432/cxr"
        );
        let printed = c.to_toml();
        assert!(!printed.contains("s3cr"), "{printed}");
        assert!(
            printed.contains("postgres://cxr:***@db.local:5432/cxr"),
            "{printed}"
        );
        assert_eq!(
            redact_url("postgresql://h/db?user=a&password=x&sslmode=disable"),
            "postgresql://h/db?user=a&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://cxr@h/db"), "postgres://cxr@h/db");
        assert_eq!(
            redact_url("/var/lib/cxr/worklist.sqlite"),
            "/var/lib/cxr/worklist.sqlite"
        );
    }

    #[test]
    fn defaults_round_trip_through_toml_and_env_overrides_win() {
        let text = ServiceConfig::default().to_toml();
        let back: ServiceConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, ServiceConfig::default());
        let mut c = back;
        c.apply_env(|k| match k {
            "CXR_LISTEN" => Some("0.0.0.0:6000".into()),
            "CXR_PROVIDER" => Some("cpu".into()),
            "CXR_METRICS_LISTEN" => Some("off".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.engine.session.provider, ProviderChoice::Cpu);
        assert_eq!(c.metrics_listen, None);
        assert!(c
            .apply_env(|k| (k == "CXR_PROVIDER").then(|| "gpu".into()))
            .is_err());
    }

    #[test]
    fn every_key_has_an_environment_variable_and_they_are_distinct() {
        let mut c = ServiceConfig::default();
        c.apply_env(|k| match k {
            "CXR_ENGINE_BATCH_MAX_DELAY_MS" => Some("9".into()),
            "CXR_LIMITS_REQUEST_TIMEOUT_S" => Some("30".into()),
            "CXR_DICOM_ENABLED" => Some("true".into()),
            "CXR_DICOM_LISTEN" => Some("0.0.0.0:104".into()),
            "CXR_DICOM_ALLOWED_CALLING_AES" => Some("PACS1, PACS2".into()),
            "CXR_DICOM_DESTINATION" => Some("PACS@pacs.local:104".into()),
            "CXR_DICOM_RETRY_MAX_S" => Some("60".into()),
            "CXR_ENGINE_REGION_LEVEL" => Some("0.4".into()),
            "CXR_PRIORITY_CRITICAL_OPERATING_POINT" => Some("rule_in".into()),
            "CXR_TLS_CERT" => Some("/etc/cert.pem".into()),
            "CXR_TLS_KEY" => Some("/etc/key.pem".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.engine.batch.max_delay_ms, 9);
        assert_eq!(c.limits.request_timeout_s, 30);
        assert!(c.dicom.enabled);
        assert_eq!(c.dicom.listen.port(), 104);
        assert_eq!(c.dicom.allowed_calling_aes, vec!["PACS1", "PACS2"]);
        assert_eq!(
            c.dicom
                .destination
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("PACS@pacs.local:104")
        );
        assert_eq!(c.dicom.retry.max_s, 60);
        assert!((c.engine.region_level - 0.4).abs() < 1e-6);
        assert_eq!(c.priority.critical_operating_point, "rule_in");
        assert_eq!(
            c.tls.as_ref().map(|t| t.cert.clone()),
            Some(PathBuf::from("/etc/cert.pem"))
        );
        let err = c
            .apply_env(|k| (k == "CXR_DICOM_ENABLED").then(|| "maybe".into()))
            .unwrap_err();
        assert!(err.to_string().contains("CXR_DICOM_ENABLED"), "{err}");
        // No two keys share a variable.
        let tree = toml::Value::try_from(ServiceConfig::default()).unwrap();
        let mut names: Vec<String> = env_keys(&tree).iter().map(|p| env_name(p)).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn unknown_keys_in_a_site_file_are_errors() {
        let err = toml::from_str::<ServiceConfig>("[limits]\nmax_messages = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_messages"), "{err}");
    }
}
