//! Service configuration: embedded defaults that work with zero
//! configuration, a TOML file for a site, and environment variables for the
//! common overrides. `cxr-triage serve --print-config` shows the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{EngineConfig, ProviderChoice};
use crate::triage::priority::PriorityPolicy;

/// Everything `serve` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address (HTTP `/metrics`); empty to disable.
    pub metrics_listen: Option<SocketAddr>,
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
    pub dicom: crate::pacs::DicomConfig,
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
    /// Longest time one request may take, seconds.
    pub request_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_mib: 64,
            max_stream_mib: 128,
            max_concurrent_analyses: 16,
            request_timeout_s: 120,
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
            data_dir: PathBuf::from("data"),
            engine: EngineConfig::default(),
            priority: PriorityPolicy::default(),
            limits: Limits::default(),
            tls: None,
            dicom: crate::pacs::DicomConfig::default(),
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

    /// Overrides from `CXR_*` variables (read through `get`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let parse_err = |k: &str, v: &str| anyhow::anyhow!("{k}={v}: not a valid value");
        if let Some(v) = get("CXR_LISTEN") {
            self.listen = v.parse().map_err(|_| parse_err("CXR_LISTEN", &v))?;
        }
        if let Some(v) = get("CXR_METRICS_LISTEN") {
            self.metrics_listen = if v.is_empty() || v == "off" {
                None
            } else {
                Some(v.parse().map_err(|_| parse_err("CXR_METRICS_LISTEN", &v))?)
            };
        }
        if let Some(v) = get("CXR_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("CXR_MODELS_DIR") {
            self.engine.models_dir = PathBuf::from(v);
        }
        if let Some(v) = get("CXR_PROVIDER") {
            self.engine.session.provider = match v.as_str() {
                "auto" => ProviderChoice::Auto,
                "cuda" => ProviderChoice::Cuda,
                "tensorrt" => ProviderChoice::Tensorrt,
                "cpu" => ProviderChoice::Cpu,
                _ => return Err(parse_err("CXR_PROVIDER", &v)),
            };
        }
        if let Some(v) = get("CXR_INTRA_THREADS") {
            self.engine.session.intra_threads =
                v.parse().map_err(|_| parse_err("CXR_INTRA_THREADS", &v))?;
        }
        if let Some(v) = get("CXR_MAX_BATCH") {
            self.engine.batch.max_batch = v.parse().map_err(|_| parse_err("CXR_MAX_BATCH", &v))?;
        }
        if let Some(v) = get("CXR_MAX_CONCURRENT") {
            self.limits.max_concurrent_analyses =
                v.parse().map_err(|_| parse_err("CXR_MAX_CONCURRENT", &v))?;
        }
        self.dicom.apply_env(&get)?;
        Ok(())
    }

    /// The worklist database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("worklist.sqlite")
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_keys_in_a_site_file_are_errors() {
        let err = toml::from_str::<ServiceConfig>("[limits]\nmax_messages = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_messages"), "{err}");
    }
}
