//! # cxr-web: the radiologist's screen
//!
//! The service's own web worklist, on an HTTP listener of its own: studies
//! in reading order with their top finding, live (server-sent events fed
//! by the worklist's change log, resumed by sequence number after a
//! dropped connection), and each study with its images, heatmap overlays,
//! region boxes, every operating point's verdict, and the buttons that
//! move it through the reading workflow (audited). In English and
//! Vietnamese. Every asset is embedded in the binary: nothing is fetched
//! from anywhere else, so it works offline.
//!
//! Who may use it: with authentication off (the embedded default, on
//! loopback) everyone, as on the gRPC port; otherwise local users signed
//! in with a password (`[[web.users]]`), or a bearer token from the
//! hospital's OpenID Connect provider checked like the gRPC API's: from the
//! browser's own sign-in at the provider (authorization code with PKCE,
//! [`oidc`]) or passed on by a sign-in proxy; or a client certificate over
//! mutual TLS. Reading needs the reader role; the audit trail page, the
//! admin role. Failed password sign-ins are throttled per user and per
//! address.
//!
//! The campaign page shows the `score` campaigns in a folder: progress
//! while they run, and the report's figures (priorities, score
//! histograms with the operating points, ROC curves when evaluated).

pub mod auth;
mod campaigns;
pub mod oidc;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use auth::{hash_password, verify_password, LocalUser, Sessions, Throttle};
pub use oidc::{Oidc, OidcConfig, OidcError};
pub use server::{serve, Web};

/// `[web]`: the web worklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// HTTP listen address; unset: no web worklist.
    pub listen: Option<SocketAddr>,
    /// Local users (stand-alone workstations, small hospitals).
    pub users: Vec<LocalUser>,
    /// Browser sign-in with the hospital's OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
    /// Where `score` campaigns' results are (`NAME.jsonl`/`NAME.csv`, or a
    /// folder `NAME/` of shard files; `evaluate --json` output beside them
    /// as `NAME.evaluation.json` adds ROC curves): the campaign page.
    /// `serve` makes unset `<data_dir>/campaigns`.
    pub campaigns: Option<PathBuf>,
    /// The hospital viewer, for "open in the viewer": a URL with
    /// `{study_instance_uid}` in it (e.g. an OHIF instance's
    /// `https://pacs/ohif/viewer?StudyInstanceUIDs={study_instance_uid}`).
    pub viewer_url: Option<String>,
    /// Hours a sign-in lasts.
    pub session_hours: u32,
    /// Live update streams open at once; more are refused (503).
    pub max_streams: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            users: Vec::new(),
            oidc: None,
            campaigns: None,
            viewer_url: None,
            session_hours: 12,
            max_streams: 64,
        }
    }
}
