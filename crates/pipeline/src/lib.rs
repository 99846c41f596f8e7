//! # cxr-pipeline: the one analysis path
//!
//! DICOM bytes → decode and gate (`cxr-ingest`) → preprocess and batched
//! inference (`cxr-model`) → findings and priority (`cxr-findings`) → the
//! worklist (`cxr-worklist`). Every way in — gRPC `Analyze` and
//! `AnalyzeStream`, the DICOM listener, STOW-RS, `score`, `analyze` and
//! `bench` — runs these same stages ([`Analyzer`]) and differs only in what
//! it does with the [`Outcome`].
//!
//! - [`Analyzer`]: the stages, callable one by one (so that the service can
//!   put CPU stages on blocking threads and await the engine) or whole
//!   ([`Analyzer::analyze_blocking`], for worker threads).
//! - [`Pipeline`]: the service's use of it: admission (bounded analyses
//!   in flight), CPU slots (bounded decode memory), the worklist store and
//!   its change events.
//!
//! Nothing is dropped: an image the AI cannot read — wrong view, undecodable
//! pixels, a failed inference — becomes an [`Outcome`] with a typed
//! [`NotAnalyzed`] reason, filed as NOT_ANALYZED under its own UIDs, so a
//! human sees it. Only bytes that are not a DICOM object with a SOP
//! Instance UID are refused outright (there is nothing to file them under).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cxr_pipeline::Analyzer;
//! let engine = Arc::new(cxr_model::Engine::load(&Default::default())?);
//! let analyzer = Analyzer::new(engine, Default::default(), Default::default());
//! let outcome = analyzer.analyze_blocking(&std::fs::read("chest.dcm")?, false)?;
//! println!("{:?}: {}", outcome.image_priority.priority, outcome.findings.len());
//! # Ok(()) }
//! ```

mod analysis;
pub mod jpeg2000;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Semaphore};

pub use analysis::{
    file, identity_of, record_metrics, Analyzer, Decoded, Outcome, PREVIEW_MAX_SIDE,
};
pub use cxr_findings::NotAnalyzed;
use cxr_worklist::{now_ms, Event, EventKind, StoreError, StudySummary, WorklistStore};
pub use cxr_worklist::{FindingSummary, Source, StoredResult, Timings};

/// Why a request failed (as opposed to an image the AI could not read,
/// which is a result).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not a DICOM object we can file (no parse, or no SOP Instance UID).
    #[error("not a DICOM image that can be filed: {0}")]
    NotDicom(String),
    /// Too many analyses in flight, or the inference queue is full; worth
    /// retrying after about `retry_after_ms`.
    #[error("overloaded: {reason}; retry later")]
    Overloaded {
        /// What is full.
        reason: String,
        /// When a slot is likely free again (the `retry-after-ms` hint).
        retry_after_ms: u64,
    },
    /// The models are still loading.
    #[error("models are warming up; retry shortly")]
    WarmingUp,
    /// The worklist store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutting down.
    #[error("shutting down")]
    ShutDown,
}

/// An outcome filed on the worklist.
#[derive(Debug, Clone)]
pub struct Filed {
    /// What became of the image.
    pub outcome: Outcome,
    /// Its study after this image.
    pub study: StudySummary,
    /// Worklist sequence number of the change.
    pub sequence: u64,
}

/// Told of every outcome filed by [`Pipeline::analyze`], right after the
/// worklist commit, on a blocking thread: the results that go on to the
/// hospital's other systems (HL7 v2 to the RIS) are queued here, durably,
/// before the caller is answered.
pub trait ResultSink: Send + Sync {
    /// One filed outcome; `store` is the worklist it was filed in (for the
    /// rest of the study). Failures are the sink's to report (logged,
    /// counted); the analysis stands.
    fn filed(&self, store: &dyn WorklistStore, filed: &Filed);
}

/// One analysis slot (see [`Pipeline::admit`]); released when dropped,
/// and how long it was held goes into [`Pipeline::retry_after_ms`].
#[derive(Debug)]
pub struct Admission {
    _permit: tokio::sync::OwnedSemaphorePermit,
    since: Instant,
    held: Arc<SlotTimes>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.held.record(self.since.elapsed());
    }
}

/// How long analyses hold their slots: an exponentially weighted mean
/// (weight 1/8 for the newest), in microseconds, 0 before the first.
#[derive(Debug, Default)]
struct SlotTimes {
    mean_us: std::sync::atomic::AtomicU64,
}

impl SlotTimes {
    fn record(&self, held: Duration) {
        let us = u64::try_from(held.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.mean_us.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |old| Some(if old == 0 { us } else { old - old / 8 + us / 8 }),
        );
    }
}

/// The wait to suggest to a refused caller: with `slots` slots each held
/// for about `mean_us`, one frees every `mean_us / slots` on average. At
/// least 10 ms (a retry storm costs more than it saves), at most 2 s; 100
/// ms before anything has been measured.
fn retry_hint_ms(mean_us: u64, slots: usize) -> u64 {
    if mean_us == 0 {
        return 100;
    }
    (mean_us / 1000 / slots.max(1) as u64).clamp(10, 2000)
}

/// The service's pipeline: the [`Analyzer`] once the models are warm, the
/// worklist, admission and change events.
pub struct Pipeline {
    analyzer: tokio::sync::OnceCell<Arc<Analyzer>>,
    store: Arc<dyn WorklistStore>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    held: Arc<SlotTimes>,
    cpu_slots: Arc<Semaphore>,
    events: broadcast::Sender<Event>,
    sinks: std::sync::RwLock<Vec<Arc<dyn ResultSink>>>,
}

impl Pipeline {
    /// A pipeline over `store`; the analyzer is attached when the models
    /// are warm ([`Pipeline::set_analyzer`]); until then requests get
    /// [`PipelineError::WarmingUp`].
    pub fn new(store: Arc<dyn WorklistStore>, max_concurrent: usize) -> Pipeline {
        let (events, _) = broadcast::channel(1024);
        Pipeline {
            analyzer: tokio::sync::OnceCell::new(),
            store,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
            held: Arc::default(),
            cpu_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            events,
            sinks: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Adds a [`ResultSink`], told of every outcome filed from now on.
    pub fn add_sink(&self, sink: Arc<dyn ResultSink>) {
        if let Ok(mut sinks) = self.sinks.write() {
            sinks.push(sink);
        }
    }

    /// Attaches the analyzer over the warmed-up engine (once).
    pub fn set_analyzer(&self, analyzer: Arc<Analyzer>) {
        let _ = self.analyzer.set(analyzer);
    }

    /// The analyzer, once the models are warm.
    pub fn analyzer(&self) -> Option<&Arc<Analyzer>> {
        self.analyzer.get()
    }

    /// The engine, once warm.
    pub fn engine(&self) -> Option<&Arc<cxr_model::Engine>> {
        self.analyzer.get().map(|a| a.engine())
    }

    /// The worklist store.
    pub fn store(&self) -> &Arc<dyn WorklistStore> {
        &self.store
    }

    /// New worklist events, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Analyses in flight now.
    pub fn in_flight(&self, max: usize) -> usize {
        max.saturating_sub(self.permits.available_permits())
    }

    /// Takes one of the `max_concurrent` analysis slots, or refuses at once
    /// with [`PipelineError::Overloaded`] (never queues: the caller's body
    /// is not read while the service is full, so memory stays bounded).
    pub fn admit(&self) -> Result<Admission, PipelineError> {
        if self.analyzer.get().is_none() {
            return Err(PipelineError::WarmingUp);
        }
        self.permits
            .clone()
            .try_acquire_owned()
            .map(|permit| Admission {
                _permit: permit,
                since: Instant::now(),
                held: Arc::clone(&self.held),
            })
            .map_err(|_| PipelineError::Overloaded {
                reason: "too many analyses in flight".into(),
                retry_after_ms: self.retry_after_ms(self.max_concurrent),
            })
    }

    /// How long a caller refused for want of a slot should wait before
    /// retrying, in milliseconds: about the time until one of `slots`
    /// slots frees, from how long recent analyses held theirs (the
    /// `retry-after-ms` hint; [`Pipeline::admit`] gives it for the
    /// service's own slots).
    pub fn retry_after_ms(&self, slots: usize) -> u64 {
        retry_hint_ms(
            self.held.mean_us.load(std::sync::atomic::Ordering::Relaxed),
            slots,
        )
    }

    /// Analyses one DICOM file (held in `bytes`: a `Vec<u8>` or a buffer
    /// shared without copying) and commits its result to the worklist as
    /// `source` (see [`file`]).
    pub async fn analyze(
        &self,
        bytes: impl Into<bytes::Bytes>,
        source: Source,
    ) -> Result<Filed, PipelineError> {
        let admission = self.admit()?;
        self.analyze_admitted(admission, bytes.into(), source).await
    }

    /// [`Pipeline::analyze`] in a slot taken earlier with [`Pipeline::admit`]:
    /// the [`Analyzer`]'s stages, CPU ones on blocking threads.
    pub async fn analyze_admitted(
        &self,
        admission: Admission,
        bytes: bytes::Bytes,
        source: Source,
    ) -> Result<Filed, PipelineError> {
        let _admission = admission;
        let started = Instant::now();
        let analyzer = self
            .analyzer
            .get()
            .cloned()
            .ok_or(PipelineError::WarmingUp)?;
        // Decoding and preprocessing hold full-size pixel buffers (tens of
        // MB per film): no more of them at once than there are cores, so
        // memory stays proportional to the cores, not to the clients.
        let cpu_slot = Arc::clone(&self.cpu_slots)
            .acquire_owned()
            .await
            .map_err(|_| PipelineError::ShutDown)?;
        let cpu = Arc::clone(&analyzer);
        let (decoded, prepared) =
            tokio::task::spawn_blocking(move || cpu.decode_and_prepare(&bytes))
                .await
                .map_err(|_| PipelineError::ShutDown)??;
        drop(cpu_slot);
        // The preview and its PNG are made beside inference, off the async
        // threads.
        let preview = decoded
            .image
            .clone()
            .map(|image| tokio::task::spawn_blocking(move || Analyzer::preview(&image)));
        let inferred = match prepared {
            Some(p) => Some(analyzer.infer(p).await),
            None => None,
        };
        let preview = match preview {
            Some(task) => task.await.ok(),
            None => None,
        };
        let mut outcome = analyzer.conclude(decoded, inferred, preview)?;
        let store = Arc::clone(&self.store);
        let sinks = self.sinks.read().map(|s| s.clone()).unwrap_or_default();
        let filed = tokio::task::spawn_blocking(move || {
            let stored = file(store.as_ref(), &mut outcome, &source)?;
            let filed = Filed {
                outcome,
                study: stored.study,
                sequence: stored.sequence,
            };
            for sink in &sinks {
                sink.filed(store.as_ref(), &filed);
            }
            Ok::<_, PipelineError>(filed)
        })
        .await
        .map_err(|_| PipelineError::ShutDown)??;
        let mut filed = filed;
        filed.outcome.timings.total_ms = started.elapsed().as_secs_f64() * 1e3;
        record_metrics(&filed.outcome);
        let _ = self.events.send(Event {
            sequence: filed.sequence,
            kind: EventKind::ImageStored,
            study_instance_uid: filed.outcome.identity.study_instance_uid.clone(),
            sop_instance_uid: filed.outcome.identity.sop_instance_uid.clone(),
            at_ms: now_ms(),
        });
        Ok(filed)
    }

    /// Publishes an event committed outside [`Pipeline::analyze`] (status
    /// changes).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_retry_hint_follows_how_long_slots_are_held() {
        let times = SlotTimes::default();
        // Nothing measured yet: a modest default.
        assert_eq!(
            retry_hint_ms(times.mean_us.load(Ordering::Relaxed), 16),
            100
        );
        times.record(Duration::from_millis(800));
        // 800 ms per analysis over 16 slots: one frees every 50 ms.
        assert_eq!(retry_hint_ms(times.mean_us.load(Ordering::Relaxed), 16), 50);
        assert_eq!(retry_hint_ms(times.mean_us.load(Ordering::Relaxed), 8), 100);
        // Recent analyses weigh most: many at 80 ms pull the mean down.
        for _ in 0..64 {
            times.record(Duration::from_millis(80));
        }
        let mean_ms = times.mean_us.load(Ordering::Relaxed) / 1000;
        assert!((80..=90).contains(&mean_ms), "{mean_ms}");
        // Never below 10 ms nor above 2 s.
        assert_eq!(retry_hint_ms(mean_ms * 1000, 64), 10);
        assert_eq!(retry_hint_ms(60_000_000, 1), 2000);
    }
}
