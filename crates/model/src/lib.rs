//! The inference engine: ONNX models described by manifests, run by ONNX
//! Runtime on the best execution provider that starts, batched per model.
//!
//! In: a models directory (`NAME.onnx` + `NAME.toml` + `NAME.md`) and an
//! [`EngineConfig`]; then [`GreyImage`]s. Out: per image, each model's raw
//! [`Inference`] (scores, heatmaps or occlusion maps) with the [`Geometry`]
//! of its preprocessing, the provenance and the timings. Turning those into
//! findings (calibration, operating points, regions) is `cxr-findings`'
//! job; this crate knows nothing of priorities, stores or transports.
//!
//! Pieces, bottom up:
//! - [`manifest`]: what a model takes and gives, and which outputs make
//!   which finding ([`FindingId`]s are data).
//! - [`preprocess`]: DICOM pixels → the model's input tensor, and the
//!   [`Geometry`] back to image pixels; training reads tensors made by the
//!   same code.
//! - [`Backend`]: the seam between batching and a runtime (health, predict a
//!   batch); [`ModelSession`] is the ONNX Runtime backend (CUDA/TensorRT
//!   with CPU fallback).
//! - [`Batcher`]: one thread per model, bounded queue, dynamic batches.
//! - [`Engine`]: every model of a directory, loaded, validated, warmed up.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cxr_model::{Engine, EngineConfig};
//! let engine = Engine::load(&EngineConfig::default())?;
//! let radiograph = cxr_ingest::read_file("chest.dcm".as_ref(), &Default::default())?;
//! let inferred = engine.infer_blocking(engine.prepare(&radiograph.image))?;
//! for run in &inferred.runs {
//!     println!("{:?}", run.inference.output.scores);
//! }
//! # Ok(()) }
//! ```
//!
//! Everything that can be wrong with a model (manifest, graph, provider) is
//! found by [`Engine::load`], at start-up, never at the first request.

mod backend;
mod batcher;
mod cuda;
pub mod manifest;
mod occlusion;
pub mod preprocess;
mod runtime;
mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use backend::Backend;
pub use batcher::{BatchSettings, BatchStats, Batcher, Inference};
pub use manifest::{FindingCode, FindingId, Manifest, ManifestError};
pub use occlusion::{OcclusionMode, OcclusionSettings};
pub use runtime::site_packages_candidates;
pub use session::{
    ConvSearch, ExecutionProvider, HeatmapShape, ImageOutput, ModelSession, ProviderChoice,
    SessionSettings,
};

use crate::preprocess::{Geometry, InputSpec};
use cxr_ingest::GreyImage;
use preprocess::write_input;

/// What can go wrong in the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// ONNX Runtime's library could not be loaded or started.
    #[error("{0}")]
    Runtime(String),
    /// A manifest is invalid.
    #[error("{0}")]
    Manifest(String),
    /// A model does not load or does not match its manifest.
    #[error("{path}: {message}")]
    Model {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The configuration asks for something the models do not have.
    #[error("configuration: {0}")]
    Config(String),
    /// The queue is full; retry later.
    #[error("inference queue full; retry later")]
    Overloaded,
    /// The engine is shutting down.
    #[error("engine shutting down")]
    ShutDown,
    /// ONNX Runtime failed while running a batch.
    #[error("inference failed: {0}")]
    Inference(String),
    /// No result within the deadline (`batch.deadline_ms`).
    #[error("no inference result within {0} ms")]
    DeadlineExceeded(u64),
}

impl EngineError {
    fn inference(e: impl std::fmt::Display) -> EngineError {
        EngineError::Inference(e.to_string())
    }
}

impl From<ManifestError> for EngineError {
    fn from(e: ManifestError) -> Self {
        EngineError::Manifest(e.to_string())
    }
}

/// Engine configuration (a section of the service's configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Directory of model manifests (`*.toml`, each beside its `.onnx`).
    pub models_dir: PathBuf,
    /// Execution provider, threads, fp16, ONNX Runtime library.
    pub session: SessionSettings,
    /// Batching.
    pub batch: BatchSettings,
    /// Occlusion maps for models without a heatmap output.
    pub occlusion: OcclusionSettings,
    /// The operating point in use per finding (default: each model's own
    /// `default_operating_point`). Sites calibrate these locally.
    pub operating_points: BTreeMap<FindingId, String>,
    /// Operating points a site adds to its models, per finding: name →
    /// threshold on the calibrated score (as `cxr-triage evaluate
    /// --write-operating-points` writes them). Select one with
    /// `operating_points`.
    pub site_operating_points: BTreeMap<FindingId, BTreeMap<String, f64>>,
    /// Heatmap level at or above which cells form regions.
    pub region_level: f32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            models_dir: PathBuf::from("models"),
            session: SessionSettings::default(),
            batch: BatchSettings::default(),
            occlusion: OcclusionSettings::default(),
            operating_points: BTreeMap::new(),
            site_operating_points: BTreeMap::new(),
            region_level: 0.5,
        }
    }
}

/// A loaded model, as reported by health checks and with every result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// `model.id`.
    pub id: String,
    /// `model.version`.
    pub version: String,
    /// Execution provider in use.
    pub provider: ExecutionProvider,
    /// Why the requested GPU provider is not in use, when it is not.
    pub fallback_cause: Option<String>,
    /// Findings this model is used for.
    pub findings: Vec<FindingId>,
    /// Operating point in use per finding.
    pub operating_points: BTreeMap<FindingId, String>,
    /// Every operating point's threshold, per finding.
    pub thresholds: BTreeMap<FindingId, BTreeMap<String, f64>>,
    /// Where its heatmaps come from.
    pub heatmap: HeatmapSource,
    /// Warm-up inference time, ms.
    pub warmup_ms: f64,
    /// The manifest file.
    pub manifest_path: PathBuf,
}

/// Where a model's heatmaps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeatmapSource {
    /// The model's own heatmap output.
    Model,
    /// Occlusion sensitivity computed by the engine.
    Occlusion,
    /// None.
    None,
}

impl HeatmapSource {
    /// `model`, `occlusion` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeatmapSource::Model => "model",
            HeatmapSource::Occlusion => "occlusion",
            HeatmapSource::None => "none",
        }
    }
}

impl std::fmt::Display for HeatmapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One loaded model: what it is, its manifest, and its batcher.
pub struct LoadedModel {
    info: ModelInfo,
    manifest: Manifest,
    spec: InputSpec,
    heatmap_shape: Option<HeatmapShape>,
    occlusion: bool,
    batcher: Batcher,
}

impl LoadedModel {
    /// Identity, provider, findings, operating points.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Its manifest (with the site's operating points merged in).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shape of its heatmap output, when it has one.
    pub fn heatmap_shape(&self) -> Option<HeatmapShape> {
        self.heatmap_shape
    }

    /// Whether the engine computes occlusion maps for it.
    pub fn occlusion(&self) -> bool {
        self.occlusion
    }

    /// Its batcher's health (false once its backend panicked).
    pub fn healthy(&self) -> bool {
        self.batcher.healthy()
    }
}

/// One model's answer for one image.
#[derive(Debug, Clone)]
pub struct ModelRun {
    /// Index of the model in [`Engine::loaded`].
    pub model: usize,
    /// What the model returned.
    pub inference: Inference,
    /// How the image was fitted into its input.
    pub geometry: Geometry,
}

/// Every model's answer for one image, before triage.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// One per loaded model, in [`Engine::loaded`] order.
    pub runs: Vec<ModelRun>,
    /// Time spent preprocessing.
    pub preprocess: Duration,
}

/// One image prepared for every model: its tensors and geometries.
#[derive(Debug, Clone)]
pub struct Prepared {
    inputs: Vec<(Vec<f32>, Geometry)>,
    /// Time spent preprocessing.
    pub preprocess: Duration,
}

impl Prepared {
    /// For an image decoded `factor` times smaller than the film (a reduced
    /// JPEG 2000 resolution level): the geometries in the film's own
    /// `width × height` pixels, so that heatmaps and regions are placed on
    /// the film as it is.
    pub fn upscale_geometry(&mut self, factor: u32, width: u32, height: u32) {
        for (_, g) in &mut self.inputs {
            *g = g.upscaled(factor, width, height);
        }
    }
}

/// Per-stage times of one analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Preprocessing (all models), ms.
    pub preprocess_ms: f64,
    /// Longest wait in a model queue, ms.
    pub queue_ms: f64,
    /// Longest model inference (batch run, plus occlusion), ms.
    pub inference_ms: f64,
}

/// Provenance of one model's contribution to a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `model.id`.
    pub model_id: String,
    /// `model.version`.
    pub model_version: String,
    /// Execution provider that ran it.
    pub provider: ExecutionProvider,
    /// Images in its batch.
    pub batch_size: usize,
}

/// Loaded models and their batchers.
pub struct Engine {
    models: Vec<LoadedModel>,
    deadline_ms: u64,
    region_level: f32,
    occlusion_grid: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.models.iter().map(|m| &m.info.id))
            .finish()
    }
}

impl Engine {
    /// Loads, validates and warms up every model in `config.models_dir`.
    /// Each finding is served by the first model (in file-name order) that
    /// declares it; a model left with no finding is not loaded.
    pub fn load(config: &EngineConfig) -> Result<Engine, EngineError> {
        let mut manifests = load_manifests(&config.models_dir)?;
        if !(2..=64).contains(&config.occlusion.grid) {
            return Err(EngineError::Config(format!(
                "occlusion.grid = {} (must be 2–64)",
                config.occlusion.grid
            )));
        }
        if !(0.0..=1.0).contains(&config.region_level) {
            return Err(EngineError::Config(format!(
                "region_level = {} (must be 0–1)",
                config.region_level
            )));
        }
        let mut assigned: BTreeMap<FindingId, usize> = BTreeMap::new();
        for (i, (path, manifest)) in manifests.iter().enumerate() {
            for kind in manifest.findings.keys() {
                match assigned.get(kind) {
                    Some(&first) => tracing::warn!(
                        finding = %kind,
                        used = %manifests[first].0.display(),
                        ignored = %path.display(),
                        "two models declare the same finding; the first is used"
                    ),
                    None => {
                        assigned.insert(kind.clone(), i);
                    }
                }
            }
        }
        for (kind, points) in &config.site_operating_points {
            let Some(&i) = assigned.get(kind) else {
                return Err(EngineError::Config(format!(
                    "site_operating_points.{kind}: no model provides {kind}"
                )));
            };
            for (name, threshold) in points {
                if !(0.0..=1.0).contains(threshold) {
                    return Err(EngineError::Config(format!(
                        "site_operating_points.{kind}.{name} = {threshold}: a threshold is a score in [0, 1]"
                    )));
                }
                if let Some(finding) = manifests[i].1.findings.get_mut(kind) {
                    finding.operating_points.insert(name.clone(), *threshold);
                }
            }
        }
        for (kind, op) in &config.operating_points {
            let Some(&i) = assigned.get(kind) else {
                return Err(EngineError::Config(format!(
                    "operating_points.{kind} = `{op}`, but no model provides {kind}"
                )));
            };
            let (path, manifest) = &manifests[i];
            if !manifest.findings[kind].operating_points.contains_key(op) {
                let names: Vec<&String> = manifest.findings[kind].operating_points.keys().collect();
                return Err(EngineError::Config(format!(
                    "operating_points.{kind} = `{op}` is not an operating point of {} (it has {names:?})",
                    path.display()
                )));
            }
        }
        let mut models = Vec::new();
        for (i, (path, manifest)) in manifests.into_iter().enumerate() {
            let findings: Vec<FindingId> = assigned
                .iter()
                .filter(|(_, &m)| m == i)
                .map(|(k, _)| k.clone())
                .collect();
            if findings.is_empty() {
                tracing::warn!(manifest = %path.display(), "model provides no finding not already provided; not loaded");
                continue;
            }
            let mut session = ModelSession::open(&path, manifest.clone(), &config.session)?;
            let shapes = session
                .warm_up_batches(config.batch.max_batch)
                .map_err(|e| EngineError::Model {
                    path: path.clone(),
                    message: format!("warm-up of batch sizes failed: {e}"),
                })?;
            if !shapes.is_zero() {
                tracing::info!(
                    model = %manifest.model.id,
                    max_batch = config.batch.max_batch,
                    ms = shapes.as_secs_f64() * 1e3,
                    "warmed up every batch size"
                );
                session.warmup += shapes;
            }
            let occlusion =
                session.heatmap_shape.is_none() && config.occlusion.enabled_for(session.provider);
            let operating_points = findings
                .iter()
                .map(|k| {
                    let op =
                        config.operating_points.get(k).cloned().unwrap_or_else(|| {
                            manifest.findings[k].default_operating_point.clone()
                        });
                    (k.clone(), op)
                })
                .collect();
            let thresholds = findings
                .iter()
                .map(|k| (k.clone(), manifest.findings[k].operating_points.clone()))
                .collect();
            let info = ModelInfo {
                thresholds,
                id: manifest.model.id.clone(),
                version: manifest.model.version.clone(),
                provider: session.provider,
                fallback_cause: session.fallback_cause.clone(),
                findings,
                operating_points,
                heatmap: if session.heatmap_shape.is_some() {
                    HeatmapSource::Model
                } else if occlusion {
                    HeatmapSource::Occlusion
                } else {
                    HeatmapSource::None
                },
                warmup_ms: session.warmup.as_secs_f64() * 1e3,
                manifest_path: path.clone(),
            };
            let heatmap_shape = session.heatmap_shape;
            let spec = manifest.input_spec();
            let batcher = Batcher::spawn(Box::new(session), config.batch, config.occlusion);
            models.push(LoadedModel {
                info,
                manifest,
                spec,
                heatmap_shape,
                occlusion,
                batcher,
            });
        }
        Ok(Engine {
            models,
            deadline_ms: config.batch.deadline_ms,
            region_level: config.region_level,
            occlusion_grid: config.occlusion.grid,
        })
    }

    /// The loaded models.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.iter().map(|m| &m.info)
    }

    /// Batch counters of model `index` (in [`Engine::models`] order).
    pub fn batch_stats(&self, index: usize) -> Option<&BatchStats> {
        self.models.get(index).map(|m| m.batcher.stats())
    }

    /// The longest side of any model's input, pixels.
    pub fn max_input_side(&self) -> u32 {
        self.models
            .iter()
            .map(|m| m.spec.width.max(m.spec.height))
            .max()
            .unwrap_or(0)
    }

    /// Requests queued across all models now.
    pub fn queue_depth(&self) -> u64 {
        self.models.iter().map(|m| m.batcher.queue_depth()).sum()
    }

    /// Preprocesses `image` for every model (CPU work; run it off the
    /// inference threads, e.g. on rayon or `spawn_blocking`).
    pub fn prepare(&self, image: &GreyImage) -> Prepared {
        let started = Instant::now();
        let inputs = self
            .models
            .iter()
            .map(|m| {
                let mut buf = vec![0.0f32; m.spec.image_len()];
                let geometry = write_input(&m.spec, image, &mut buf);
                (buf, geometry)
            })
            .collect();
        Prepared {
            inputs,
            preprocess: started.elapsed(),
        }
    }

    /// The loaded models, in order (findings are assembled from them).
    pub fn loaded(&self) -> &[LoadedModel] {
        &self.models
    }

    /// Occlusion grid size (cells per side).
    pub fn occlusion_grid(&self) -> usize {
        self.occlusion_grid
    }

    /// Heatmap level at or above which cells form regions.
    pub fn region_level(&self) -> f32 {
        self.region_level
    }

    /// Whether every model's backend is healthy.
    pub fn healthy(&self) -> bool {
        self.models.iter().all(LoadedModel::healthy)
    }

    /// Queues a prepared image on every model's batcher and waits for the
    /// results (async), at most `batch.deadline_ms` (which needs a Tokio
    /// runtime with its timer enabled; `deadline_ms = 0` does not).
    pub async fn infer(&self, prepared: Prepared) -> Result<Inferred, EngineError> {
        let preprocess = prepared.preprocess;
        let (receivers, geometries) = self.submit(prepared)?;
        let deadline = (self.deadline_ms > 0)
            .then(|| tokio::time::Instant::now() + Duration::from_millis(self.deadline_ms));
        let mut inferences = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let answer = match deadline {
                Some(at) => tokio::time::timeout_at(at, receiver).await.map_err(|_| {
                    metrics::counter!("cxr_inference_deadline_exceeded_total").increment(1);
                    EngineError::DeadlineExceeded(self.deadline_ms)
                })?,
                None => receiver.await,
            };
            inferences.push(answer.map_err(|_| EngineError::ShutDown)??);
        }
        Ok(Self::runs(inferences, geometries, preprocess))
    }

    /// As [`Engine::infer`], blocking the calling thread (not for async
    /// contexts).
    pub fn infer_blocking(&self, prepared: Prepared) -> Result<Inferred, EngineError> {
        let preprocess = prepared.preprocess;
        let (receivers, geometries) = self.submit(prepared)?;
        let mut inferences = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            inferences.push(
                receiver
                    .blocking_recv()
                    .map_err(|_| EngineError::ShutDown)??,
            );
        }
        Ok(Self::runs(inferences, geometries, preprocess))
    }

    fn runs(
        inferences: Vec<Inference>,
        geometries: Vec<Geometry>,
        preprocess: Duration,
    ) -> Inferred {
        Inferred {
            runs: inferences
                .into_iter()
                .zip(geometries)
                .enumerate()
                .map(|(model, (inference, geometry))| ModelRun {
                    model,
                    inference,
                    geometry,
                })
                .collect(),
            preprocess,
        }
    }

    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        prepared: Prepared,
    ) -> Result<
        (
            Vec<tokio::sync::oneshot::Receiver<Result<Inference, EngineError>>>,
            Vec<Geometry>,
        ),
        EngineError,
    > {
        let mut receivers = Vec::with_capacity(self.models.len());
        let mut geometries = Vec::with_capacity(self.models.len());
        for (model, (input, geometry)) in self.models.iter().zip(prepared.inputs) {
            receivers.push(model.batcher.submit(input, model.occlusion)?);
            geometries.push(geometry);
        }
        Ok((receivers, geometries))
    }
}

impl Inferred {
    /// Stage times of this image's runs (queue and inference: the longest
    /// model).
    pub fn timings(&self) -> StageTimes {
        let mut timings = StageTimes {
            preprocess_ms: self.preprocess.as_secs_f64() * 1e3,
            ..StageTimes::default()
        };
        for run in &self.runs {
            timings.queue_ms = timings
                .queue_ms
                .max(run.inference.queue.as_secs_f64() * 1e3);
            timings.inference_ms = timings
                .inference_ms
                .max(run.inference.inference.as_secs_f64() * 1e3);
        }
        timings
    }
}

/// Every `*.toml` manifest in `dir`, parsed and validated, in file-name order.
pub fn load_manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, EngineError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| EngineError::Config(format!("models directory {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(EngineError::Config(format!(
            "no model manifests (*.toml) in {}",
            dir.display()
        )));
    }
    paths
        .into_iter()
        .map(|p| {
            Manifest::load(&p)
                .map(|m| (p, m))
                .map_err(EngineError::from)
        })
        .collect()
}
