//! The pipeline every way in shares: DICOM bytes → ingest → engine →
//! triage → worklist. The gRPC API (and later the DICOM listener and
//! `score`) are thin fronts over [`Pipeline::analyze`].
//!
//! Nothing is dropped: an image the AI cannot read — wrong view, undecodable
//! pixels, a failed inference — is stored as NOT_ANALYZED with its reason,
//! under its own UIDs, so a human sees it. Only bytes that are not a DICOM
//! object with a SOP Instance UID are refused outright (there is nothing to
//! file them under).

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Semaphore};

use crate::dicom::{self, IngestLimits, RadiographMeta};
use crate::engine::{Analysis, Engine, EngineError, StageTimes};
use crate::triage::overlay;
use crate::triage::priority::{self, PriorityAssessment, PriorityPolicy, Unread};
use crate::triage::FindingResult;
use crate::worklist::{
    now_ms, Event, ImageIdentity, ImageRecord, StoreError, Stored, StoredHeatmap, StudySummary,
    WorklistStore,
};

/// Longest side of the stored preview the overlays are drawn on.
pub const PREVIEW_MAX_SIDE: u32 = 1024;

/// Why a request failed (as opposed to an image the AI could not read,
/// which is a result).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not a DICOM object we can file (no parse, or no SOP Instance UID).
    #[error("not a DICOM image that can be filed: {0}")]
    NotDicom(String),
    /// Too many analyses in flight, or the inference queue is full.
    #[error("overloaded: {0}; retry later")]
    Overloaded(String),
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

/// Everything a request returns.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Identity of the image.
    pub identity: ImageIdentity,
    /// Whether the AI read it.
    pub analyzable: bool,
    /// Why not: `(code, message)`.
    pub reason: Option<(String, String)>,
    /// Findings (with heatmaps).
    pub findings: Vec<FindingResult>,
    /// The image's priority.
    pub image_priority: PriorityAssessment,
    /// Its study after this image.
    pub study: StudySummary,
    /// Models that produced the findings.
    pub provenance: Vec<crate::engine::Provenance>,
    /// Stage times, ms.
    pub timings: Timings,
    /// Worklist sequence number of the change.
    pub sequence: u64,
    /// The stored preview (for overlays in the response).
    #[serde(skip)]
    pub preview: Option<overlay::Preview>,
}

/// Per-stage times of one request, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Decode (parse, pixels, LUTs).
    pub decode_ms: f64,
    /// Engine stages.
    #[serde(flatten)]
    pub engine: StageTimes,
    /// Storing.
    pub store_ms: f64,
    /// Whole request.
    pub total_ms: f64,
}

/// One analysis slot (see [`Pipeline::admit`]); released when dropped.
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// The shared pipeline.
pub struct Pipeline {
    engine: tokio::sync::OnceCell<Arc<Engine>>,
    store: Arc<dyn WorklistStore>,
    policy: PriorityPolicy,
    limits: IngestLimits,
    permits: Arc<Semaphore>,
    cpu_slots: Arc<Semaphore>,
    events: broadcast::Sender<Event>,
}

impl Pipeline {
    /// A pipeline over `store`; the engine is attached when warm
    /// ([`Pipeline::set_engine`]); until then requests get
    /// [`PipelineError::WarmingUp`].
    pub fn new(
        store: Arc<dyn WorklistStore>,
        policy: PriorityPolicy,
        max_concurrent: usize,
    ) -> Pipeline {
        let (events, _) = broadcast::channel(1024);
        Pipeline {
            engine: tokio::sync::OnceCell::new(),
            store,
            policy,
            limits: IngestLimits::default(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            cpu_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            events,
        }
    }

    /// Attaches the warmed-up engine (once).
    pub fn set_engine(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    /// The engine, once warm.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
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
        if self.engine.get().is_none() {
            return Err(PipelineError::WarmingUp);
        }
        self.permits
            .clone()
            .try_acquire_owned()
            .map(Admission)
            .map_err(|_| PipelineError::Overloaded("too many analyses in flight".into()))
    }

    /// Analyses one DICOM file and commits its result to the worklist.
    pub async fn analyze(&self, bytes: Vec<u8>) -> Result<Outcome, PipelineError> {
        let admission = self.admit()?;
        self.analyze_admitted(admission, bytes).await
    }

    /// [`Pipeline::analyze`] in a slot taken earlier with [`Pipeline::admit`].
    pub async fn analyze_admitted(
        &self,
        admission: Admission,
        bytes: Vec<u8>,
    ) -> Result<Outcome, PipelineError> {
        let _admission = admission;
        let started = Instant::now();
        let engine = self.engine.get().cloned().ok_or(PipelineError::WarmingUp)?;
        let limits = self.limits.clone();
        // Decoding and preprocessing hold full-size pixel buffers (tens of
        // MB per film): no more of them at once than there are cores, so
        // memory stays proportional to the cores, not to the clients. The
        // wait counts as decode time.
        let decode_started = Instant::now();
        let cpu_slot = Arc::clone(&self.cpu_slots)
            .acquire_owned()
            .await
            .map_err(|_| PipelineError::ShutDown)?;
        let decoded = tokio::task::spawn_blocking(move || {
            let result = dicom::read_bytes(&bytes, &limits);
            match result {
                Ok(r) => Ok(r),
                Err(e) => Err(Box::new((e, dicom::read_identity(&bytes, &limits)))),
            }
        })
        .await
        .map_err(|_| PipelineError::ShutDown)?;
        let decode_ms = decode_started.elapsed().as_secs_f64() * 1e3;

        let mut timings = Timings {
            decode_ms,
            ..Timings::default()
        };
        let (identity, analyzable, reason, findings, provenance, preview) = match decoded {
            Err(failure) => {
                let (error, meta) = *failure;
                let meta = meta.ok_or_else(|| PipelineError::NotDicom(error.to_string()))?;
                tracing::warn!(kind = ?error.kind(), "image could not be decoded; filed as NOT_ANALYZED");
                (
                    identity_of(&meta),
                    false,
                    Some(("decode_failed".to_string(), error.to_string())),
                    Vec::new(),
                    Vec::new(),
                    None,
                )
            }
            Ok(radiograph) => {
                let identity = identity_of(&radiograph.meta);
                let image = Arc::new(radiograph.image);
                let preview_image = Arc::clone(&image);
                // The preview and its PNG are made beside preprocessing and
                // inference, off the async threads.
                let preview = tokio::task::spawn_blocking(move || {
                    let preview = overlay::preview(&preview_image, PREVIEW_MAX_SIDE);
                    let png = overlay::preview_png(&preview);
                    (preview, png)
                });
                let result = match &radiograph.assessment.reason {
                    Some(r) => Err((r.code().to_string(), r.to_string())),
                    None => {
                        let engine2 = Arc::clone(&engine);
                        let prepared = tokio::task::spawn_blocking(move || engine2.prepare(&image))
                            .await
                            .map_err(|_| PipelineError::ShutDown)?;
                        drop(cpu_slot);
                        match engine.infer(prepared).await {
                            Ok(analysis) => Ok(analysis),
                            Err(EngineError::Overloaded) => {
                                return Err(PipelineError::Overloaded(
                                    "inference queue full".into(),
                                ))
                            }
                            Err(EngineError::ShutDown) => return Err(PipelineError::ShutDown),
                            Err(e) => {
                                tracing::error!(error = %e, "inference failed; filed as NOT_ANALYZED");
                                Err(("inference_failed".to_string(), e.to_string()))
                            }
                        }
                    }
                };
                let preview = preview.await.ok();
                match result {
                    Ok(Analysis {
                        findings,
                        provenance,
                        timings: t,
                    }) => {
                        timings.engine = t;
                        (identity, true, None, findings, provenance, preview)
                    }
                    Err(reason) => (
                        identity,
                        false,
                        Some(reason),
                        Vec::new(),
                        Vec::new(),
                        preview,
                    ),
                }
            }
        };

        let (image_priority, unread) = match &reason {
            None => (
                priority::image_priority(&identity.sop_instance_uid, &findings, &self.policy),
                None,
            ),
            Some((code, message)) => (
                priority::unread_priority(&identity.sop_instance_uid, code, message),
                Some(priority::unread_kind(code)),
            ),
        };
        let (preview, preview_png) = match preview {
            Some((preview, png)) => (Some(preview), Some(png)),
            None => (None, None),
        };
        let result_json = serde_json::to_string(&StoredResult {
            findings: findings.iter().map(FindingSummary::from).collect(),
            provenance: provenance.clone(),
            timings,
        })
        .unwrap_or_else(|_| "{}".into());
        let record = ImageRecord {
            identity: identity.clone(),
            analyzable,
            reason: reason.clone(),
            assessment: image_priority.clone(),
            unread,
            result_json,
            heatmaps: findings
                .iter()
                .filter_map(|f| {
                    f.heatmap.as_ref().map(|h| StoredHeatmap {
                        finding: f.finding,
                        source: match h.source {
                            crate::triage::HeatmapSource::Model => "model".into(),
                            crate::triage::HeatmapSource::Occlusion => "occlusion".into(),
                        },
                        grid_width: h.grid_width as u32,
                        grid_height: h.grid_height as u32,
                        values: h.values.clone(),
                        geometry: h.geometry,
                    })
                })
                .collect(),
            received_ms: now_ms(),
            preview_png,
        };
        let store_started = Instant::now();
        let store = Arc::clone(&self.store);
        let stored: Stored = tokio::task::spawn_blocking(move || store.put_image(&record))
            .await
            .map_err(|_| PipelineError::ShutDown)??;
        timings.store_ms = store_started.elapsed().as_secs_f64() * 1e3;
        timings.total_ms = started.elapsed().as_secs_f64() * 1e3;
        for (stage, ms) in [
            ("decode", timings.decode_ms),
            ("preprocess", timings.engine.preprocess_ms),
            ("queue", timings.engine.queue_ms),
            ("inference", timings.engine.inference_ms),
            ("store", timings.store_ms),
            ("total", timings.total_ms),
        ] {
            metrics::histogram!("cxr_stage_seconds", "stage" => stage).record(ms / 1e3);
        }
        let _ = self.events.send(Event {
            sequence: stored.sequence,
            kind: crate::worklist::EventKind::ImageStored,
            study_instance_uid: identity.study_instance_uid.clone(),
            sop_instance_uid: identity.sop_instance_uid.clone(),
            at_ms: now_ms(),
        });
        Ok(Outcome {
            identity,
            analyzable,
            reason,
            findings,
            image_priority,
            study: stored.study,
            provenance,
            timings,
            sequence: stored.sequence,
            preview,
        })
    }

    /// Publishes an event committed outside [`Pipeline::analyze`] (status
    /// changes).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// A finding as stored and listed: everything but the heatmap grid (stored
/// apart, fetched with GetHeatmap), plus the heatmap's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    /// Which finding.
    pub finding: crate::engine::FindingKind,
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
    pub operating_points: Vec<crate::triage::OperatingPointResult>,
    /// Regions in image pixels.
    pub regions: Vec<crate::triage::Region>,
    /// Heatmap peak in image pixels.
    pub peak: Option<crate::triage::Peak>,
}

impl From<&FindingResult> for FindingSummary {
    fn from(f: &FindingResult) -> Self {
        FindingSummary {
            finding: f.finding,
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

/// An image's result as stored in the worklist (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    /// Findings without heatmap grids.
    pub findings: Vec<FindingSummary>,
    /// Models.
    pub provenance: Vec<crate::engine::Provenance>,
    /// Stage times.
    pub timings: Timings,
}

/// The worklist identity of an image; an image without a Study Instance UID
/// gets a study of its own so that it is still listed.
pub fn identity_of(meta: &RadiographMeta) -> ImageIdentity {
    let study = if meta.study_instance_uid.is_empty() {
        format!("no-study:{}", meta.sop_instance_uid)
    } else {
        meta.study_instance_uid.clone()
    };
    ImageIdentity {
        study_instance_uid: study,
        series_instance_uid: meta.series_instance_uid.clone(),
        sop_instance_uid: meta.sop_instance_uid.clone(),
        accession_number: meta.accession_number.clone().unwrap_or_default(),
        modality: meta.modality.clone().unwrap_or_default(),
        view_position: meta.view_position.clone().unwrap_or_default(),
        study_date: meta.study_date.clone().unwrap_or_default(),
    }
}

/// Whether an unread image was set aside on purpose.
pub fn is_set_aside(unread: Option<Unread>) -> bool {
    matches!(unread, Some(Unread::SetAside))
}
