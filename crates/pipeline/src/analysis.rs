//! The one analysis path: decode → gate → preprocess → infer → findings →
//! priority, as stages that every entry point composes the same way. The
//! service runs the CPU stages on blocking threads and awaits the engine;
//! `score`, `analyze` and `bench` run them on their worker threads; all of
//! them reach the same [`Outcome`] through [`Analyzer::conclude`].

use std::sync::Arc;
use std::time::Instant;

use cxr_findings::overlay::{self, Preview};
use cxr_findings::priority::{self, PriorityAssessment};
use cxr_findings::{assess, FindingResult, NotAnalyzed, PriorityPolicy};
use cxr_ingest::{self as ingest, is_valid_uid, GreyImage, IngestLimits, Patient, RadiographMeta};
use cxr_model::{Engine, EngineError, Inferred, Prepared, Provenance};
use cxr_worklist::{
    now_ms, FindingSummary, ImageIdentity, ImageRecord, Source, StoreError, Stored, StoredHeatmap,
    StoredResult, Timings, WorklistStore,
};

use crate::PipelineError;

/// Longest side of the stored preview the overlays are drawn on.
pub const PREVIEW_MAX_SIDE: u32 = 1024;

/// A DICOM object after decoding and the gate: filed under `identity`
/// whatever happens next.
#[derive(Debug)]
pub struct Decoded {
    /// Worklist identity.
    pub identity: ImageIdentity,
    /// Identity and acquisition metadata as read.
    pub meta: RadiographMeta,
    /// Patient attributes, when the header could be read (redacted in
    /// `Debug`; for the results sent to the RIS, never logged).
    pub patient: Option<Patient>,
    /// The pixels, ready to look at, when they could be decoded.
    pub image: Option<Arc<GreyImage>>,
    /// Why the models will not read it (`None`: they will).
    pub reason: Option<NotAnalyzed>,
    /// Time spent decoding, ms.
    pub decode_ms: f64,
    /// Which decoder read the pixels, when they could be read.
    pub decoder: Option<cxr_ingest::Decoder>,
    /// When `image` is a reduced JPEG 2000 resolution level: (levels left
    /// out, the film's columns, rows).
    pub reduced: Option<(u8, u32, u32)>,
}

/// What became of one image.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Identity of the image.
    pub identity: ImageIdentity,
    /// Why the AI did not read it (`None`: analysed).
    pub reason: Option<NotAnalyzed>,
    /// Findings (with heatmaps); empty when not analysed.
    pub findings: Vec<FindingResult>,
    /// The image's priority, with reasons.
    pub image_priority: PriorityAssessment,
    /// Models that produced the findings.
    pub provenance: Vec<Provenance>,
    /// Stage times, ms.
    pub timings: Timings,
    /// A downscaled copy of the image for overlays, and its PNG (when asked
    /// for and the pixels could be decoded).
    pub preview: Option<(Preview, Vec<u8>)>,
    /// Columns and rows of the decoded image (when it could be decoded).
    pub image_size: Option<(u32, u32)>,
    /// Patient attributes from the header (not stored in the worklist; for
    /// the results sent to the RIS).
    pub patient: Option<Patient>,
}

impl Outcome {
    /// Whether the AI read it.
    pub fn analyzable(&self) -> bool {
        self.reason.is_none()
    }

    /// The worklist record of this outcome (the stored-result schema is
    /// the worklist's).
    pub fn record(&self) -> ImageRecord {
        ImageRecord {
            identity: self.identity.clone(),
            reason: self.reason.clone(),
            assessment: self.image_priority.clone(),
            result: StoredResult {
                findings: self.findings.iter().map(FindingSummary::from).collect(),
                provenance: self.provenance.clone(),
                timings: self.timings,
            },
            heatmaps: self.findings.iter().filter_map(StoredHeatmap::of).collect(),
            received_ms: now_ms(),
            preview_png: self.preview.as_ref().map(|(_, png)| png.clone()),
            source: Source::default(),
        }
    }
}

/// Files an outcome in a worklist store as `source` (blocking; durable
/// when it returns) and times it. A result filed earlier by another source
/// is not replaced ([`StoreError::Conflict`]) unless `source` may replace
/// others.
pub fn file(
    store: &dyn WorklistStore,
    outcome: &mut Outcome,
    source: &Source,
) -> Result<Stored, StoreError> {
    let started = Instant::now();
    let mut record = outcome.record();
    record.source = source.clone();
    let stored = store.put_image(&record)?;
    outcome.timings.store_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(stored)
}

/// The worklist identity of an image; an image without a Study Instance UID
/// gets a study of its own so that it is still listed.
pub fn identity_of(meta: &RadiographMeta) -> ImageIdentity {
    // A Study or Series Instance UID that is not a UID is not passed on: the
    // image gets a study of its own instead (its SOP Instance UID, checked
    // on decode, is the key).
    let study = if is_valid_uid(&meta.study_instance_uid) {
        meta.study_instance_uid.clone()
    } else {
        format!("no-study:{}", meta.sop_instance_uid)
    };
    let series = if is_valid_uid(&meta.series_instance_uid) {
        meta.series_instance_uid.clone()
    } else {
        String::new()
    };
    ImageIdentity {
        study_instance_uid: study,
        series_instance_uid: series,
        sop_instance_uid: meta.sop_instance_uid.clone(),
        accession_number: meta.accession_number.clone().unwrap_or_default(),
        modality: meta.modality.clone().unwrap_or_default(),
        view_position: meta.view_position.clone().unwrap_or_default(),
        study_date: meta.study_date.clone().unwrap_or_default(),
    }
}

/// The models, the priority policy and the ingest limits: everything the
/// stages need.
pub struct Analyzer {
    engine: Arc<Engine>,
    policy: PriorityPolicy,
    limits: IngestLimits,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("engine", &self.engine)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Analyzer {
    /// An analyzer over a loaded engine.
    pub fn new(engine: Arc<Engine>, policy: PriorityPolicy, limits: IngestLimits) -> Analyzer {
        Analyzer {
            engine,
            policy,
            limits,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Decodes JPEG 2000 films at a reduced resolution level as `mode`
    /// says, for this engine's models.
    pub fn reducing_jpeg2000(mut self, mode: crate::jpeg2000::Jpeg2000Reduce) -> Analyzer {
        self.limits.jpeg2000_reduce_to = mode.reduce_to(self.engine.max_input_side());
        self
    }

    /// The ingest limits.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// Stage 1 (CPU): decode and gate. An object whose pixels cannot be
    /// decoded is still filed, under the identity its header gives; only
    /// bytes with nothing to file them under are refused
    /// ([`PipelineError::NotDicom`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Decoded, PipelineError> {
        let started = Instant::now();
        // Parsed (and inflated) once, also when the pixels then fail.
        let decoded = match ingest::read_bytes_identified(bytes, &self.limits) {
            Ok(radiograph) if !is_valid_uid(&radiograph.meta.sop_instance_uid) => {
                return Err(PipelineError::NotDicom(
                    "the SOP Instance UID is missing or not a DICOM UID".into(),
                ))
            }
            Ok(radiograph) => Decoded {
                identity: identity_of(&radiograph.meta),
                reason: radiograph.assessment.reason.clone().map(NotAnalyzed::Gate),
                meta: radiograph.meta,
                patient: Some(radiograph.patient),
                image: Some(Arc::new(radiograph.image)),
                decode_ms: 0.0,
                decoder: Some(radiograph.stored.decoder),
                reduced: (radiograph.stored.reduction > 0).then_some((
                    radiograph.stored.reduction,
                    radiograph.pixel_module.columns,
                    radiograph.pixel_module.rows,
                )),
            },
            Err((error, None)) => return Err(PipelineError::NotDicom(error.to_string())),
            Err((error, Some(meta))) => {
                tracing::warn!(kind = ?error.kind(), "image could not be decoded; filed as NOT_ANALYZED");
                Decoded {
                    identity: identity_of(&meta),
                    meta,
                    patient: ingest::read_patient(bytes, &self.limits),
                    image: None,
                    reason: Some(NotAnalyzed::Undecodable {
                        kind: error.kind(),
                        message: error.to_string(),
                    }),
                    decode_ms: 0.0,
                    decoder: None,
                    reduced: None,
                }
            }
        };
        Ok(Decoded {
            decode_ms: started.elapsed().as_secs_f64() * 1e3,
            ..decoded
        })
    }

    /// Stages 1 and 2 on one thread, a panic in either (a defect) caught:
    /// the image is then filed as NOT_ANALYZED (`internal_error`) under the
    /// identity its header gives, so that it still reaches a human and the
    /// caller (a DICOM worker) goes on with the next one.
    pub fn decode_and_prepare(
        &self,
        bytes: &[u8],
    ) -> Result<(Decoded, Option<Prepared>), PipelineError> {
        let started = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let decoded = self.decode(bytes)?;
            let prepared = self.prepare(&decoded);
            Ok::<_, PipelineError>((decoded, prepared))
        }));
        match run {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "decoding or preparing an image panicked; filed as NOT_ANALYZED");
                metrics::counter!("cxr_internal_errors_total", "stage" => "decode").increment(1);
                let meta = ingest::read_identity(bytes, &self.limits).ok_or_else(|| {
                    PipelineError::NotDicom("an internal error while decoding it".into())
                })?;
                Ok((
                    Decoded {
                        identity: identity_of(&meta),
                        meta,
                        patient: ingest::read_patient(bytes, &self.limits),
                        image: None,
                        reason: Some(NotAnalyzed::Internal(
                            "cxr-triage failed while decoding this image (an internal error, \
                             logged); it needs a human reader"
                                .into(),
                        )),
                        decode_ms: started.elapsed().as_secs_f64() * 1e3,
                        decoder: None,
                        reduced: None,
                    },
                    None,
                ))
            }
        }
    }

    /// Stage 2 (CPU): the model inputs of a decoded image the models will
    /// read (`None` when they will not).
    pub fn prepare(&self, decoded: &Decoded) -> Option<Prepared> {
        match (&decoded.reason, &decoded.image) {
            (None, Some(image)) => {
                let mut prepared = self.engine.prepare(image);
                // Heatmaps and regions in the film's own pixels.
                if let Some((levels, columns, rows)) = decoded.reduced {
                    prepared.upscale_geometry(1 << levels, columns, rows);
                }
                Some(prepared)
            }
            _ => None,
        }
    }

    /// Stage 3, blocking: the engine's batched inference.
    pub fn infer_blocking(&self, prepared: Prepared) -> Result<Inferred, EngineError> {
        self.engine.infer_blocking(prepared)
    }

    /// Stage 3, async.
    pub async fn infer(&self, prepared: Prepared) -> Result<Inferred, EngineError> {
        self.engine.infer(prepared).await
    }

    /// Stages 4 and 5: findings and priority. `inferred` is `None` for an
    /// image the models did not read. An overloaded or stopping engine is
    /// an error for the caller to retry; any other inference failure files
    /// the image as NOT_ANALYZED.
    pub fn conclude(
        &self,
        decoded: Decoded,
        inferred: Option<Result<Inferred, EngineError>>,
        preview: Option<(Preview, Vec<u8>)>,
    ) -> Result<Outcome, PipelineError> {
        let mut timings = Timings {
            decode_ms: decoded.decode_ms,
            decoder: decoded.decoder,
            ..Timings::default()
        };
        let image_size = match decoded.reduced {
            Some((_, columns, rows)) => Some((columns, rows)),
            None => decoded.image.as_ref().map(|i| (i.width, i.height)),
        };
        let mut reason = decoded.reason;
        let mut findings = Vec::new();
        let mut provenance = Vec::new();
        match inferred {
            Some(Ok(inferred)) => {
                let analysis = assess(&self.engine, &inferred);
                findings = analysis.findings;
                provenance = analysis.provenance;
                timings.engine = analysis.timings;
            }
            Some(Err(EngineError::Overloaded)) => {
                return Err(PipelineError::Overloaded {
                    reason: "inference queue full".into(),
                    retry_after_ms: 500,
                })
            }
            Some(Err(EngineError::ShutDown)) => return Err(PipelineError::ShutDown),
            Some(Err(e)) => {
                tracing::error!(error = %e, "inference failed; filed as NOT_ANALYZED");
                reason = Some(NotAnalyzed::InferenceFailed(e.to_string()));
            }
            None if reason.is_none() => {
                reason = Some(NotAnalyzed::InferenceFailed(
                    "the image was not sent to the models".into(),
                ));
            }
            None => {}
        }
        let image_priority = match &reason {
            None => priority::image_priority(
                &decoded.identity.sop_instance_uid,
                &findings,
                &self.policy,
            ),
            Some(r) => priority::unread_priority(&decoded.identity.sop_instance_uid, r),
        };
        Ok(Outcome {
            identity: decoded.identity,
            reason,
            findings,
            image_priority,
            provenance,
            timings,
            preview,
            image_size,
            patient: decoded.patient,
        })
    }

    /// The stored preview of an image and its PNG.
    pub fn preview(image: &GreyImage) -> (Preview, Vec<u8>) {
        let preview = overlay::preview(image, PREVIEW_MAX_SIDE);
        let png = overlay::preview_png(&preview);
        (preview, png)
    }

    /// The whole path on the calling thread: decode, gate, preprocess,
    /// infer (batched with other threads' images), findings, priority; with
    /// the preview when `with_preview`.
    pub fn analyze_blocking(
        &self,
        bytes: &[u8],
        with_preview: bool,
    ) -> Result<Outcome, PipelineError> {
        let started = Instant::now();
        let (decoded, prepared) = self.decode_and_prepare(bytes)?;
        let preview = match (&decoded.image, with_preview) {
            (Some(image), true) => Some(Self::preview(image)),
            _ => None,
        };
        let inferred = prepared.map(|p| self.infer_blocking(p));
        let mut outcome = self.conclude(decoded, inferred, preview)?;
        outcome.timings.total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(outcome)
    }
}

/// Records an outcome's stage times (`cxr_stage_seconds{stage}`) and its
/// findings (`cxr_findings_total{finding, positive}`: finding ids are data,
/// never patient identifiers).
pub fn record_metrics(outcome: &Outcome) {
    for f in &outcome.findings {
        metrics::counter!(
            "cxr_findings_total",
            "finding" => f.finding.to_string(),
            "positive" => if f.positive { "true" } else { "false" }
        )
        .increment(1);
    }
    let timings = &outcome.timings;
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
}
