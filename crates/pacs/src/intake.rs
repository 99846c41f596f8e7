//! From the spool to the worklist and the outbox.
//!
//! [`Intake::receive`] is what the listener calls for each complete
//! C-STORE: the object is checked to be a DICOM object that can be filed
//! (else the C-STORE fails, "cannot understand"), written durably to the
//! spool, and queued. Workers take queued objects through the shared
//! [`Pipeline`] (decode → engine → triage → worklist), make the result
//! objects (Secondary Capture, SR) when a destination is configured, put
//! them in the outbox held for their study, and only then delete the spool
//! file. A crash anywhere in between repeats the work on restart — the
//! worklist replaces by SOP Instance UID and result UIDs are derived, so a
//! repeat updates and never duplicates.
//!
//! Study grouping: a study is final once none of its images is waiting in
//! the spool and none has arrived for `study_quiet_s`; its held results are
//! then released to the sender. A later image starts the study's quiet
//! period again and its results go after it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_object::InMemDicomObject;
use tokio::sync::{watch, Notify};

use super::config::DicomConfig;
use super::derived::{ResultInput, ResultObject};
use super::dimse::status;
use super::outbox::Outbox;
use super::spool::{Partial, Spool, SpoolEntry};
use super::{sc, sr};
use cxr_ingest::{self as dicom, IngestLimits, RadiographMeta};
use cxr_pipeline::{identity_of, Outcome, Pipeline, PipelineError};
use cxr_worklist::now_ms;

/// A complete object received by C-STORE or STOW-RS: a Part 10 file
/// (preamble, meta group, data set as received).
pub struct Received {
    /// The file.
    pub file: Object,
    /// The sender: its calling AE title (C-STORE) or authenticated user
    /// (STOW-RS).
    pub calling_ae: String,
    /// How it came: `C-STORE` or `STOW-RS` (for the audit trail).
    pub via: &'static str,
    /// The sender's network address.
    pub address: String,
}

/// Where a received object's bytes are.
#[derive(Debug)]
pub enum Object {
    /// In memory (a STOW-RS part, sharing its request's body).
    Bytes(bytes::Bytes),
    /// Already in the spool's temporary file, written as it arrived
    /// (C-STORE): committed to the spool if accepted, removed if not.
    Spooled(Partial),
}

impl From<Vec<u8>> for Object {
    fn from(bytes: Vec<u8>) -> Object {
        Object::Bytes(bytes.into())
    }
}

/// The identity of a DICOM file on disk, read through a memory map so that
/// only the pages up to its Pixel Data are touched.
fn identity_of_file(path: &Path, limits: &IngestLimits) -> Option<RadiographMeta> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return None;
    }
    // SAFETY: the file is the service's own spool file (mode 0600 in a 0700
    // directory), which nothing truncates or rewrites while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    dicom::read_identity(&map, limits)
}

/// Why a C-STORE is refused: its DIMSE status and a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status (0000,0900).
    pub status: u16,
    /// Error Comment (0000,0902).
    pub comment: String,
}

struct Queued {
    entry: SpoolEntry,
    study: String,
    /// Who sent it (calling AE, STOW user); empty when resumed from the
    /// spool after a restart.
    source: String,
}

#[derive(Debug, Default)]
struct StudyState {
    last_received_ms: i64,
    pending: usize,
    images: usize,
}

/// What to make from each analysed image.
#[derive(Debug, Clone)]
struct ResultSettings {
    station: String,
    send_sc: bool,
    send_sr: bool,
    send_not_analyzed: bool,
}

/// The spool, its queue, the studies being grouped, and the outbox.
pub struct Intake {
    spool: Arc<Spool>,
    pipeline: Arc<Pipeline>,
    limits: IngestLimits,
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    studies: Mutex<HashMap<String, StudyState>>,
    outbox: Option<Arc<Outbox>>,
    released: Arc<Notify>,
    settings: ResultSettings,
    quiet_ms: i64,
    /// Parsing a received object (inflating a deflated one) holds up to
    /// `max_inflated_bytes`: no more of them at once than there are cores,
    /// however many peers send.
    parse_slots: Arc<tokio::sync::Semaphore>,
    /// Per sender, when its recent objects turned out unreadable.
    unreadable: Mutex<HashMap<String, VecDeque<i64>>>,
    max_unreadable_per_hour: usize,
}

/// The window of `max_unreadable_per_hour`.
const HOUR_MS: i64 = 3_600_000;

/// The outcome of one attempt at a spooled object.
enum Attempt {
    Done,
    /// Try again after a pause (overload, warm-up, a store or disk error).
    Again(String),
    /// Shutting down: leave it in the spool.
    Stop,
}

impl Intake {
    /// Opens the spool under `state_dir` and re-queues what a previous run
    /// left in it; studies with held results start their quiet period anew.
    pub fn open(
        config: &DicomConfig,
        state_dir: &std::path::Path,
        pipeline: Arc<Pipeline>,
        outbox: Option<Arc<Outbox>>,
        released: Arc<Notify>,
    ) -> anyhow::Result<Arc<Intake>> {
        let spool = Arc::new(Spool::open(state_dir)?);
        let intake = Arc::new(Intake {
            spool,
            pipeline,
            limits: IngestLimits::default(),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            studies: Mutex::new(HashMap::new()),
            outbox,
            released,
            settings: ResultSettings {
                station: config.ae_title.clone(),
                send_sc: config.send_sc,
                send_sr: config.send_sr,
                send_not_analyzed: config.send_not_analyzed,
            },
            quiet_ms: (config.study_quiet_s as i64).saturating_mul(1000),
            parse_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            unreadable: Mutex::new(HashMap::new()),
            max_unreadable_per_hour: config.max_unreadable_per_source_per_hour,
        });
        let now = now_ms();
        let pending = intake.spool.pending()?;
        if !pending.is_empty() {
            tracing::info!(
                objects = pending.len(),
                "DICOM spool: resuming objects received before the restart"
            );
        }
        for entry in pending {
            let study = identity_of_file(&entry.path, &intake.limits)
                .map(|m| identity_of(&m).study_instance_uid)
                .unwrap_or_default();
            intake.arrived(&study, now);
            intake.enqueue(Queued {
                entry,
                study,
                source: String::new(),
            });
        }
        if let Some(outbox) = &intake.outbox {
            for study in outbox.held_studies()? {
                intake
                    .lock_studies()
                    .entry(study)
                    .or_default()
                    .last_received_ms = now;
            }
        }
        Ok(intake)
    }

    fn lock_studies(&self) -> std::sync::MutexGuard<'_, HashMap<String, StudyState>> {
        self.studies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unreadable objects from `source` in the last hour.
    fn unreadable_recently(&self, source: &str, now: i64) -> usize {
        let mut map = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(source) else {
            return 0;
        };
        while times.front().is_some_and(|t| *t <= now - HOUR_MS) {
            times.pop_front();
        }
        let n = times.len();
        if n == 0 {
            map.remove(source);
        }
        n
    }

    /// Notes that an object from `source` could not be read.
    fn note_unreadable(&self, source: &str, now: i64) {
        if source.is_empty() {
            return;
        }
        let mut map = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        let times = map.entry(source.to_string()).or_default();
        times.push_back(now);
        // Only the last `limit` + 1 matter.
        while times.len() > self.max_unreadable_per_hour + 1 {
            times.pop_front();
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arrived(&self, study: &str, now: i64) {
        let mut studies = self.lock_studies();
        let s = studies.entry(study.to_string()).or_default();
        s.last_received_ms = s.last_received_ms.max(now);
        s.pending += 1;
        s.images += 1;
    }

    fn processed(&self, study: &str) {
        if let Some(s) = self.lock_studies().get_mut(study) {
            s.pending = s.pending.saturating_sub(1);
        }
    }

    fn enqueue(&self, item: Queued) {
        self.lock_queue().push_back(item);
        metrics::gauge!("cxr_dicom_spool_depth").increment(1.0);
        self.queued.notify_one();
    }

    /// Objects waiting in the spool.
    pub fn depth(&self) -> usize {
        self.lock_queue().len()
    }

    /// Checks, spools durably and queues a received object. Success means
    /// the object is on disk and will reach the worklist.
    pub async fn receive(&self, received: Received) -> Result<(), Refusal> {
        self.receive_checked(received, |_| Ok(())).await.1
    }

    /// [`Intake::receive`], with `check` given the object's identity once it
    /// has parsed and before anything is spooled, to refuse it on what it
    /// is. Returns that identity (absent when the object did not parse)
    /// beside the outcome, so a caller can name what it refused.
    pub async fn receive_checked<F>(
        &self,
        received: Received,
        check: F,
    ) -> (Option<RadiographMeta>, Result<(), Refusal>)
    where
        F: FnOnce(&RadiographMeta) -> Result<(), Refusal> + Send + 'static,
    {
        let spool = Arc::clone(&self.spool);
        let limits = self.limits.clone();
        let Received {
            file,
            calling_ae,
            via,
            address,
        } = received;
        let store = Arc::clone(self.pipeline.store());
        let sender = calling_ae.clone();
        // Who files it: `C-STORE:AE` or `STOW-RS:user`.
        let source = format!("{via}:{calling_ae}");
        // A sender whose objects keep failing (a broken modality, or a
        // flood of junk) is asked to retry later rather than fill the
        // worklist with NOT_ANALYZED entries that rank above ROUTINE.
        let recent = self.unreadable_recently(&source, now_ms());
        let flooding = recent >= self.max_unreadable_per_hour;
        if flooding {
            metrics::counter!("cxr_dicom_refused_total", "reason" => "unreadable_flood")
                .increment(1);
            tracing::warn!(
                calling_ae = %calling_ae,
                unreadable = recent,
                "object refused: too many unreadable objects from this sender in the last hour"
            );
        }
        let Ok(parse_slot) = Arc::clone(&self.parse_slots).acquire_owned().await else {
            let refusal = Refusal {
                status: status::OUT_OF_RESOURCES,
                comment: "shutting down".into(),
            };
            return (None, Err(refusal));
        };
        // A refusal carries the identity (boxed: it is large) when it parsed.
        type Refused = (Option<Box<RadiographMeta>>, Refusal);
        let spooled = tokio::task::spawn_blocking(move || -> Result<_, Refused> {
            let _parse_slot = parse_slot;
            let meta = match &file {
                Object::Bytes(bytes) => dicom::read_identity(bytes, &limits),
                Object::Spooled(partial) => identity_of_file(partial.path(), &limits),
            };
            let meta = meta.ok_or_else(|| {
                let refusal = Refusal {
                    status: status::CANNOT_UNDERSTAND,
                    comment: "not a DICOM data set with a valid SOP Instance UID".into(),
                };
                (None, refusal)
            })?;
            if flooding {
                let refusal = Refusal {
                    status: status::OUT_OF_RESOURCES,
                    comment:
                        "too many unreadable objects from this sender in the last hour; retry later"
                            .into(),
                };
                return Err((Some(Box::new(meta)), refusal));
            }
            if !meta.has_pixel_data {
                let refusal = Refusal {
                    status: status::DATA_SET_MISMATCH,
                    comment: "an image object without Pixel Data (7FE0,0010)".into(),
                };
                return Err((Some(Box::new(meta)), refusal));
            }
            if let Err(refusal) = check(&meta) {
                return Err((Some(Box::new(meta)), refusal));
            }
            let spooled = match file {
                Object::Bytes(bytes) => spool.put(&[&bytes], now_ms()),
                Object::Spooled(partial) => spool.commit(partial, now_ms()),
            };
            match spooled {
                Ok(entry) => Ok((meta, entry)),
                Err(e) => {
                    tracing::error!(error = %e, "DICOM spool write failed");
                    let refusal = Refusal {
                        status: status::OUT_OF_RESOURCES,
                        comment: format!("spool write failed: {}", e.kind()),
                    };
                    Err((Some(Box::new(meta)), refusal))
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            let refusal = Refusal {
                status: status::OUT_OF_RESOURCES,
                comment: "shutting down".into(),
            };
            Err((None, refusal))
        });
        // Every arrival, stored or refused, goes to the audit trail (a
        // failure to record it is logged: the image is not refused for it).
        let (object, outcome) = match &spooled {
            Ok((meta, _)) => (
                format!(
                    "study:{} image:{}",
                    meta.study_instance_uid, meta.sop_instance_uid
                ),
                "OK".to_string(),
            ),
            Err((meta, refusal)) => (
                meta.as_ref()
                    .map(|m| format!("image:{}", m.sop_instance_uid))
                    .unwrap_or_default(),
                format!("REFUSED {:04X}", refusal.status),
            ),
        };
        let entry = cxr_worklist::AuditEntry {
            at_ms: now_ms(),
            who: sender,
            roles: String::new(),
            method: if via == "STOW-RS" { "token" } else { "dicom" }.into(),
            action: via.into(),
            object,
            address,
            outcome,
        };
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.audit(&entry)).await {
            tracing::error!(error = %e, "audit trail write failed for a received object");
        }
        let (meta, entry) = match spooled {
            Ok(spooled) => spooled,
            Err((meta, refusal)) => return (meta.map(|m| *m), Err(refusal)),
        };
        let study = identity_of(&meta).study_instance_uid;
        tracing::debug!(item = %entry.name(), calling_ae = %calling_ae, "spooled");
        self.arrived(&study, entry.received_ms);
        self.enqueue(Queued {
            entry,
            study,
            source,
        });
        (Some(meta), Ok(()))
    }

    /// Starts an object received straight into the spool (C-STORE data
    /// written as it arrives); see [`Spool::partial`].
    pub fn partial(&self) -> std::io::Result<(Partial, std::fs::File)> {
        self.spool.partial()
    }

    /// A worker: takes spooled objects through the pipeline until `stop`.
    pub async fn work(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = self.lock_queue().pop_front();
            let Some(item) = next else {
                tokio::select! {
                    () = self.queued.notified() => continue,
                    _ = stop.changed() => return,
                }
            };
            metrics::gauge!("cxr_dicom_spool_depth").decrement(1.0);
            let mut pause = Duration::from_millis(200);
            loop {
                match self.attempt(&item).await {
                    Attempt::Done => {
                        self.processed(&item.study);
                        break;
                    }
                    Attempt::Stop => return,
                    Attempt::Again(why) => {
                        tracing::debug!(item = %item.entry.name(), reason = %why, "spooled object waits");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => return,
                        }
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    async fn attempt(&self, item: &Queued) -> Attempt {
        let bytes = match tokio::fs::read(&item.entry.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Attempt::Done,
            Err(e) => return Attempt::Again(format!("reading the spool file: {e}")),
        };
        // The header for the result objects, read before the bytes go to
        // the pipeline.
        let (header, bytes) = if self.outbox.is_some() {
            let limits = self.limits.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                (dicom::read_object(&bytes, &limits).ok(), bytes)
            });
            match parsed.await {
                Ok(r) => r,
                Err(_) => return Attempt::Stop,
            }
        } else {
            (None, bytes)
        };
        let source = cxr_pipeline::Source::named(item.source.clone());
        let outcome = match self.pipeline.analyze(bytes, source).await {
            Ok(filed) => filed.outcome,
            Err(PipelineError::Store(cxr_worklist::StoreError::Conflict(why))) => {
                // Another source filed this SOP Instance UID: its result
                // stays. This copy is set aside for an administrator.
                metrics::counter!("cxr_dicom_refused_total", "reason" => "other_source")
                    .increment(1);
                tracing::warn!(item = %item.entry.name(), reason = %why, "result not replaced; object moved to rejected/");
                let _ = self.spool.reject(&item.entry);
                return Attempt::Done;
            }
            Err(PipelineError::NotDicom(why)) => {
                // Checked on receipt, so only a file damaged on disk: set
                // it aside for an administrator.
                tracing::error!(item = %item.entry.name(), reason = %why, "spooled object cannot be read; moved to rejected/");
                let _ = self.spool.reject(&item.entry);
                return Attempt::Done;
            }
            Err(PipelineError::ShutDown) => return Attempt::Stop,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        metrics::counter!("cxr_analyses_total", "outcome" => if outcome.analyzable() { "analyzed" } else { "not_analyzed" }).increment(1);
        tracing::info!(
            item = %item.entry.name(),
            analyzable = outcome.analyzable(),
            priority = outcome.image_priority.priority.as_str(),
            total_ms = outcome.timings.total_ms,
            "DICOM image analysed"
        );
        if outcome
            .reason
            .as_ref()
            .is_some_and(|r| r.unread() == cxr_findings::priority::Unread::Failed)
        {
            self.note_unreadable(&item.source, now_ms());
        }
        if let (Some(outbox), Some(header)) = (&self.outbox, header) {
            if outcome.analyzable() || self.settings.send_not_analyzed {
                let objects = self.results(header, outcome).await;
                if !objects.is_empty() {
                    let outbox = Arc::clone(outbox);
                    let study = item.study.clone();
                    let added =
                        tokio::task::spawn_blocking(move || outbox.add(&study, &objects, now_ms()))
                            .await;
                    match added {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Attempt::Again(format!("outbox: {e}")),
                        Err(_) => return Attempt::Stop,
                    }
                }
            }
        }
        if let Err(e) = self.spool.remove(&item.entry) {
            tracing::warn!(item = %item.entry.name(), error = %e, "spool file not removed");
        }
        Attempt::Done
    }

    /// The result objects of one image (errors are logged: the
    /// worklist has the result either way).
    async fn results(&self, header: InMemDicomObject, outcome: Outcome) -> Vec<ResultObject> {
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            let input = ResultInput {
                source: &header,
                outcome: &outcome,
                station: &settings.station,
                now_ms: now_ms(),
            };
            let mut objects = Vec::new();
            if !outcome.analyzable() {
                // Only the notice: there are no findings for an SR.
                if settings.send_sc && settings.send_not_analyzed {
                    match sc::build(&input) {
                        Ok(o) => objects.push(o),
                        Err(e) => tracing::warn!(error = %e, "not-analysed notice not made"),
                    }
                }
                return objects;
            }
            if settings.send_sc {
                match sc::build(&input) {
                    Ok(o) => objects.push(o),
                    Err(e) => tracing::warn!(error = %e, "Secondary Capture not made"),
                }
            }
            if settings.send_sr {
                match sr::build(&input) {
                    Ok(o) => objects.push(o),
                    Err(e) => tracing::warn!(error = %e, "SR not made"),
                }
            }
            objects
        })
        .await
        .unwrap_or_default()
    }

    /// Studies now final (none waiting, quiet long enough): releases their
    /// held results. Called periodically.
    pub fn finalize_quiet_studies(&self, now: i64) {
        let done: Vec<(String, StudyState)> = {
            let mut studies = self.lock_studies();
            let keys: Vec<String> = studies
                .iter()
                .filter(|(_, s)| s.pending == 0 && now - s.last_received_ms >= self.quiet_ms)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| studies.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (study, state) in done {
            let released = match &self.outbox {
                Some(outbox) => match outbox.release_study(&study) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "outbox: study results not released; retrying");
                        self.lock_studies().insert(study, state);
                        continue;
                    }
                },
                None => 0,
            };
            tracing::info!(
                images = state.images,
                results = released,
                "DICOM study final"
            );
            if released > 0 {
                self.released.notify_one();
            }
        }
    }

    /// Runs [`Intake::finalize_quiet_studies`] every half second until `stop`.
    pub async fn group_studies(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => self.finalize_quiet_studies(now_ms()),
                _ = stop.changed() => return,
            }
        }
    }
}
