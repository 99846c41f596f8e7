//! # cxr-worklist: the store
//!
//! The reading worklist: image results grouped into studies, ordered by
//! priority, persistent, with a change log that watchers resume from.
//!
//! In: one [`ImageRecord`] per analysed (or unreadable) image. Out: studies
//! in worklist order ([`WorklistStore::list`]), one study with its images,
//! status changes, heatmaps, and [`Event`]s by sequence number.
//!
//! The store sits behind [`WorklistStore`]; [`SqliteStore`] is the embedded
//! default (WAL, `synchronous=FULL`, schema migrations by `user_version`);
//! [`PostgresStore`] is a database several replicas share (one transaction
//! per change under an advisory lock, `LISTEN`/`NOTIFY` for watchers on
//! other replicas). [`open_store`] picks one from a URL.
//! A result is committed before `put_image` returns; a re-sent image (same
//! SOP Instance UID) replaces its result, never duplicates it.

mod pg_thread;
mod postgres;
mod shared;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use serde::{Deserialize, Serialize};

pub use pg_thread::PgThread;
pub use postgres::{connect_postgres, PostgresStore};
pub use sqlite::SqliteStore;

/// Opens the worklist store `url` names: `postgres://…` (or
/// `postgresql://…`) for a PostgreSQL database that several replicas share
/// (at most `connections` connections), anything else a SQLite file path
/// (`sqlite://` optional), the embedded default.
pub fn open_store(
    url: &str,
    connections: usize,
) -> Result<std::sync::Arc<dyn WorklistStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url, connections)?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(std::sync::Arc::new(SqliteStore::open(
            std::path::Path::new(path),
        )?))
    }
}

use cxr_findings::priority::{Priority, PriorityAssessment, Unread};
use cxr_findings::{FindingResult, HeatmapSource, NotAnalyzed, OperatingPointResult, Peak, Region};
use cxr_model::preprocess::Geometry;
use cxr_model::{FindingId, Provenance, StageTimes};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("worklist store: {0}")]
    Database(String),
    /// The request refers to something that is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (e.g. a bad page token).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with what is stored (a result filed by
    /// another source).
    #[error("{0}")]
    Conflict(String),
}

/// Reading workflow state of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StudyStatus {
    /// Waiting for a reader.
    New,
    /// Taken by a reader.
    Claimed,
    /// Being read.
    Reading,
    /// Read.
    Read,
    /// Removed from the worklist by a person.
    Dismissed,
}

impl StudyStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StudyStatus::New => "NEW",
            StudyStatus::Claimed => "CLAIMED",
            StudyStatus::Reading => "READING",
            StudyStatus::Read => "READ",
            StudyStatus::Dismissed => "DISMISSED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<StudyStatus> {
        Some(match s {
            "NEW" => StudyStatus::New,
            "CLAIMED" => StudyStatus::Claimed,
            "READING" => StudyStatus::Reading,
            "READ" => StudyStatus::Read,
            "DISMISSED" => StudyStatus::Dismissed,
            _ => return None,
        })
    }

    /// The statuses a worklist shows by default.
    pub const OPEN: [StudyStatus; 3] =
        [StudyStatus::New, StudyStatus::Claimed, StudyStatus::Reading];
}

/// DICOM identity of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// SOP Instance UID (the key).
    pub sop_instance_uid: String,
    /// Accession Number.
    pub accession_number: String,
    /// Modality.
    pub modality: String,
    /// View Position.
    pub view_position: String,
    /// Study Date, YYYYMMDD.
    pub study_date: String,
}

/// A heatmap as stored: the grid and its geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHeatmap {
    /// Finding it belongs to.
    pub finding: FindingId,
    /// Model output or occlusion.
    pub source: HeatmapSource,
    /// Grid columns.
    pub grid_width: u32,
    /// Grid rows.
    pub grid_height: u32,
    /// Row-major values in `[0, 1]`.
    pub values: Vec<f32>,
    /// Image ↔ model mapping.
    pub geometry: Geometry,
}

/// One image's result, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// Identity.
    pub identity: ImageIdentity,
    /// Why the AI did not read it (`None`: analysed).
    pub reason: Option<NotAnalyzed>,
    /// The image's priority.
    pub assessment: PriorityAssessment,
    /// The full result (findings without heatmap grids, provenance,
    /// timings), returned as stored.
    pub result: StoredResult,
    /// Heatmaps, one per finding that has one.
    pub heatmaps: Vec<StoredHeatmap>,
    /// Arrival time, ms since the Unix epoch.
    pub received_ms: i64,
    /// A downscaled grey PNG of the image, for overlays.
    pub preview_png: Option<Vec<u8>>,
    /// Who files it.
    pub source: Source,
}

/// Who files a result: only the same source (or one that
/// `may_replace_others`, an administrator) may later replace it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// e.g. `user:pacs-gw` (an authenticated caller), `C-STORE:MODALITY`
    /// (a calling AE), `STOW-RS:user`, `score`; empty: unknown (an object
    /// resumed from the spool after a restart), which keeps the stored
    /// source and is not checked.
    pub name: String,
    /// May replace results filed by others.
    pub may_replace_others: bool,
}

impl Source {
    /// A source that may replace only its own results.
    pub fn named(name: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            may_replace_others: false,
        }
    }
}

impl ImageRecord {
    /// Whether the AI read it.
    pub fn analyzable(&self) -> bool {
        self.reason.is_none()
    }

    /// For unread images, whether they were set aside or failed.
    pub fn unread(&self) -> Option<Unread> {
        self.reason.as_ref().map(NotAnalyzed::unread)
    }
}

/// A not-analysed reason as stored and read back (the text edge of
/// [`NotAnalyzed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReason {
    /// [`NotAnalyzed::code`].
    pub code: String,
    /// Its text.
    pub message: String,
}

impl From<&NotAnalyzed> for StoredReason {
    fn from(r: &NotAnalyzed) -> Self {
        StoredReason {
            code: r.code().to_string(),
            message: r.to_string(),
        }
    }
}

/// Per-stage times of one analysis, ms (stored with its result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Decode (parse, pixels, LUTs).
    pub decode_ms: f64,
    /// Which decoder read the pixels (`native`, `cpu`, `accelerated` for
    /// the GPU, `fallback` when the GPU failed and the CPU decoded; absent
    /// when they could not be decoded or for results stored before this
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<cxr_ingest::Decoder>,
    /// Engine stages.
    #[serde(flatten)]
    pub engine: StageTimes,
    /// Storing.
    pub store_ms: f64,
    /// Whole request.
    pub total_ms: f64,
}

/// A finding as stored and listed: everything but the heatmap grid (stored
/// apart, fetched with GetHeatmap), plus the heatmap's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    /// Which finding.
    pub finding: FindingId,
    /// Its name for people.
    #[serde(default)]
    pub display_name: String,
    /// Combined label probability before calibration.
    pub raw_score: f32,
    /// Calibrated score.
    pub score: f32,
    /// Operating point in use.
    pub operating_point: String,
    /// Its threshold.
    pub threshold: f64,
    /// Verdict there.
    pub positive: bool,
    /// Every operating point's verdict.
    pub operating_points: Vec<OperatingPointResult>,
    /// Regions in image pixels.
    pub regions: Vec<Region>,
    /// Heatmap peak in image pixels.
    pub peak: Option<Peak>,
}

impl From<&FindingResult> for FindingSummary {
    fn from(f: &FindingResult) -> Self {
        FindingSummary {
            finding: f.finding.clone(),
            display_name: f.display_name.clone(),
            raw_score: f.raw_score,
            score: f.score,
            operating_point: f.operating_point.clone(),
            threshold: f.threshold,
            positive: f.positive,
            operating_points: f.operating_points.clone(),
            regions: f.regions.clone(),
            peak: f.heatmap.as_ref().and_then(|h| h.peak()),
        }
    }
}

/// An image's result as stored in the worklist (JSON in the store; this
/// crate owns the schema, writes it and parses it back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    /// Findings without heatmap grids.
    pub findings: Vec<FindingSummary>,
    /// Models.
    pub provenance: Vec<Provenance>,
    /// Stage times.
    pub timings: Timings,
}

impl StoredHeatmap {
    /// The stored form of a finding's heatmap.
    pub fn of(finding: &FindingResult) -> Option<StoredHeatmap> {
        finding.heatmap.as_ref().map(|h| StoredHeatmap {
            finding: finding.finding.clone(),
            source: h.source,
            grid_width: h.grid_width as u32,
            grid_height: h.grid_height as u32,
            values: h.values.clone(),
            geometry: h.geometry,
        })
    }
}

/// A study on the worklist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySummary {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Accession Number of its latest image.
    pub accession_number: String,
    /// Worst priority of its images, with reasons.
    pub assessment: PriorityAssessment,
    /// Workflow state.
    pub status: StudyStatus,
    /// Who set the status.
    pub status_by: String,
    /// When, ms since the epoch (0: never).
    pub status_at_ms: i64,
    /// First image arrival, ms since the epoch.
    pub first_received_ms: i64,
    /// Latest image arrival.
    pub last_received_ms: i64,
    /// Modalities of its images.
    pub modalities: Vec<String>,
    /// Study Date.
    pub study_date: String,
    /// Number of images.
    pub image_count: u32,
    /// When a later image reopened it after it was read or dismissed, ms
    /// since the epoch (0: not reopened since it was last read).
    pub reopened_at_ms: i64,
    /// Why it was reopened (e.g. "new CRITICAL image after the study was
    /// read"); empty when not reopened.
    pub reopened_reason: String,
}

/// A stored image, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredImage {
    /// Identity.
    pub identity: ImageIdentity,
    /// Whether the AI read it.
    pub analyzable: bool,
    /// Why not, as stored: the reason's code and its text.
    pub reason: Option<StoredReason>,
    /// Its priority.
    pub assessment: PriorityAssessment,
    /// The stored result.
    pub result: StoredResult,
    /// Arrival, ms since the epoch.
    pub received_ms: i64,
}

/// What happened to the worklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An image result was stored.
    ImageStored,
    /// A study's status changed.
    StatusChanged,
}

/// One change, in sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increasing sequence number.
    pub sequence: u64,
    /// What happened.
    pub kind: EventKind,
    /// The study concerned.
    pub study_instance_uid: String,
    /// The image concerned (for `ImageStored`).
    pub sop_instance_uid: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Filters and paging of [`WorklistStore::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// Only these priorities (all when empty).
    pub priorities: Vec<Priority>,
    /// Only these statuses ([`StudyStatus::OPEN`] when empty).
    pub statuses: Vec<StudyStatus>,
    /// First arrival at or after, ms.
    pub received_after_ms: Option<i64>,
    /// First arrival before, ms.
    pub received_before_ms: Option<i64>,
    /// Only studies with an image of this modality.
    pub modality: Option<String>,
    /// Page size (1–500; default 50).
    pub page_size: u32,
    /// From the previous page.
    pub page_token: Option<String>,
}

/// A page of studies.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Studies in worklist order.
    pub studies: Vec<StudySummary>,
    /// Token of the next page, if any.
    pub next_page_token: Option<String>,
    /// Studies matching the filter.
    pub total: u32,
}

/// Result of storing an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Sequence number of the change.
    pub sequence: u64,
    /// The study after the change.
    pub study: StudySummary,
    /// Whether an earlier result for the same SOP Instance UID was replaced.
    pub replaced: bool,
}

/// A worklist store. Implementations must be safe to share between threads;
/// calls block (run them off async executors).
pub trait WorklistStore: Send + Sync {
    /// Stores (or replaces) an image result, recomputes its study, logs an
    /// event; durable when it returns.
    fn put_image(&self, record: &ImageRecord) -> Result<Stored, StoreError>;
    /// A page of the worklist.
    fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// One study and its images.
    fn get_study(&self, study_uid: &str) -> Result<(StudySummary, Vec<StoredImage>), StoreError>;
    /// Sets a study's status; returns the study and the event's sequence.
    fn update_status(
        &self,
        study_uid: &str,
        status: StudyStatus,
        by: &str,
        at_ms: i64,
    ) -> Result<(StudySummary, u64), StoreError>;
    /// A stored heatmap.
    fn heatmap(&self, sop_uid: &str, finding: &FindingId) -> Result<StoredHeatmap, StoreError>;
    /// The stored preview PNG of an image.
    fn preview(&self, sop_uid: &str) -> Result<Vec<u8>, StoreError>;
    /// Events after `sequence`, oldest first, at most `limit`.
    fn events_after(&self, sequence: u64, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// The sequence number of the latest event (0 when there is none).
    fn last_sequence(&self) -> Result<u64, StoreError>;
    /// Studies, by priority, among open (not read, not dismissed) studies.
    fn open_counts(&self) -> Result<Vec<(Priority, u64)>, StoreError>;
    /// Removes what a site keeps only for a while, from before `cutoff_ms`:
    /// previews and heatmap grids of images in read or dismissed studies,
    /// change-log events, and — when `results` — the images and studies
    /// themselves, of read or dismissed studies that had no image since.
    /// Open studies and the audit trail are never purged.
    fn purge(&self, cutoff_ms: i64, results: bool) -> Result<Purged, StoreError>;
    /// Appends to the audit trail (durable when it returns); its sequence.
    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
    /// Audit records after `sequence`, oldest first, at most `limit`.
    fn audit_after(&self, sequence: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// For a store that other processes write too (replicas sharing one
    /// database): calls `wake`, from a thread of the store's, with the
    /// sequence number of each event committed by any writer, and with 0
    /// when events may have been missed or every few seconds of quiet (look
    /// for yourself), until `wake` returns false. Returns false, calling
    /// nothing, for a store only this process writes (the default): the
    /// pipeline announces its own events.
    fn watch_commits(&self, wake: std::sync::Arc<dyn Fn(u64) -> bool + Send + Sync>) -> bool {
        let _ = wake;
        false
    }
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Previews removed.
    pub previews: u64,
    /// Heatmap grids removed.
    pub heatmaps: u64,
    /// Change-log events removed.
    pub events: u64,
    /// Images removed (with their results).
    pub images: u64,
    /// Studies removed.
    pub studies: u64,
}

/// One access to patient data or one change, for the audit trail: who (and
/// with which roles, authenticated how, from where), what, on which study
/// or image, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The caller: a user name, a certificate's common name, a DICOM
    /// calling AE, or `anonymous`.
    pub who: String,
    /// Their roles, comma-separated.
    pub roles: String,
    /// How they were identified: `token`, `certificate`, `open`, `dicom`.
    pub method: String,
    /// What was done, e.g. `GetStudy`, `UpdateStatus:READ`, `Analyze`.
    pub action: String,
    /// The study or image concerned (`study:UID`, `image:UID`), or what was
    /// listed.
    pub object: String,
    /// The caller's network address.
    pub address: String,
    /// `ok`, or the refusal (`PERMISSION_DENIED`, `NOT_FOUND`, …).
    pub outcome: String,
}

/// A stored audit record: the entry, its sequence, and its link in the
/// hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number (1, 2, …, no gaps).
    pub sequence: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The previous record's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over the previous hash, the sequence and the entry.
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record must carry, given the previous one's.
    pub fn chain_hash(prev_hash: &str, sequence: u64, e: &AuditEntry) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for field in [
            prev_hash,
            &sequence.to_string(),
            &e.at_ms.to_string(),
            &e.who,
            &e.roles,
            &e.method,
            &e.action,
            &e.object,
            &e.address,
            &e.outcome,
        ] {
            // Length-prefixed, so that no two entries hash alike by moving
            // text between fields.
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The audit trail checked end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every record links to the one before and hashes as stored.
    Intact {
        /// Records checked.
        records: u64,
    },
    /// The first record that does not (changed, inserted, or after a
    /// deleted one).
    Broken {
        /// Its sequence number (or the expected one, for a gap).
        sequence: u64,
        /// What is wrong.
        why: String,
    },
}

/// Walks the whole audit trail of `store` and checks its hash chain.
pub fn verify_audit(store: &dyn WorklistStore) -> Result<AuditVerdict, StoreError> {
    let mut prev = "0".repeat(64);
    let mut expected = 1u64;
    let mut after = 0u64;
    loop {
        let batch = store.audit_after(after, 1000)?;
        if batch.is_empty() {
            return Ok(AuditVerdict::Intact {
                records: expected - 1,
            });
        }
        for r in batch {
            if r.sequence != expected {
                return Ok(AuditVerdict::Broken {
                    sequence: expected,
                    why: format!("record {expected} is missing"),
                });
            }
            if r.prev_hash != prev {
                return Ok(AuditVerdict::Broken {
                    sequence: r.sequence,
                    why: "does not link to the record before".into(),
                });
            }
            if AuditRecord::chain_hash(&prev, r.sequence, &r.entry) != r.hash {
                return Ok(AuditVerdict::Broken {
                    sequence: r.sequence,
                    why: "its content does not match its hash".into(),
                });
            }
            prev = r.hash;
            after = r.sequence;
            expected += 1;
        }
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
