//! The inference engine: ONNX models described by manifests, run by ONNX
//! Runtime on the best execution provider that starts, batched per model.
//!
//! In: a models directory (`NAME.onnx` + `NAME.toml` + `NAME.md`) and an
//! [`EngineConfig`]; then [`GreyImage`]s. Out: per image, one
//! [`FindingResult`] per finding (scores, operating points, heatmap, regions)
//! with the provenance and timings of the models that produced them.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use cxr_triage::{dicom, engine::{Engine, EngineConfig}};
//! let engine = Engine::load(&EngineConfig::default())?;
//! let radiograph = dicom::read_file("chest.dcm".as_ref(), &Default::default())?;
//! let analysis = engine.analyze_blocking(&radiograph.image)?;
//! for f in &analysis.findings {
//!     println!("{}: {:.3} positive={}", f.finding, f.score, f.positive);
//! }
//! # Ok(()) }
//! ```
//!
//! Everything that can be wrong with a model (manifest, graph, provider) is
//! found by [`Engine::load`], at start-up, never at the first request.

mod batcher;
mod cuda;
pub mod manifest;
mod occlusion;
mod runtime;
mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use batcher::{BatchSettings, BatchStats, Inference};
pub use manifest::{FindingKind, Manifest, ManifestError};
pub use occlusion::{OcclusionMode, OcclusionSettings};
pub use session::{
    ConvSearch, ExecutionProvider, HeatmapShape, ImageOutput, ModelSession, ProviderChoice,
    SessionSettings,
};

use crate::dicom::GreyImage;
use crate::preprocess::{self, Geometry, InputSpec};
use crate::triage::{self, FindingResult};

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
    pub operating_points: BTreeMap<FindingKind, String>,
    /// Operating points a site adds to its models, per finding: name →
    /// threshold on the calibrated score (as `cxr-triage evaluate
    /// --write-operating-points` writes them). Select one with
    /// `operating_points`.
    pub site_operating_points: BTreeMap<FindingKind, BTreeMap<String, f64>>,
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
    pub findings: Vec<FindingKind>,
    /// Operating point in use per finding.
    pub operating_points: BTreeMap<FindingKind, String>,
    /// Every operating point's threshold, per finding.
    pub thresholds: BTreeMap<FindingKind, BTreeMap<String, f64>>,
    /// Heatmap: `model`, `occlusion`, or `none`.
    pub heatmap: &'static str,
    /// Warm-up inference time, ms.
    pub warmup_ms: f64,
    /// The manifest file.
    pub manifest_path: PathBuf,
}

struct LoadedModel {
    info: ModelInfo,
    manifest: Manifest,
    spec: InputSpec,
    heatmap_shape: Option<HeatmapShape>,
    occlusion: bool,
    batcher: batcher::Batcher,
}

/// One image prepared for every model: its tensors and geometries.
#[derive(Debug, Clone)]
pub struct Prepared {
    inputs: Vec<(Vec<f32>, Geometry)>,
    /// Time spent preprocessing.
    pub preprocess: Duration,
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

/// Every finding of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// One per finding the loaded models provide.
    pub findings: Vec<FindingResult>,
    /// Which models produced them.
    pub provenance: Vec<Provenance>,
    /// Stage times.
    pub timings: StageTimes,
}

/// Loaded models and their batchers.
pub struct Engine {
    models: Vec<LoadedModel>,
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
        let mut assigned: BTreeMap<FindingKind, usize> = BTreeMap::new();
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
                        assigned.insert(*kind, i);
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
            let findings: Vec<FindingKind> = assigned
                .iter()
                .filter(|(_, &m)| m == i)
                .map(|(k, _)| *k)
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
                    (*k, op)
                })
                .collect();
            let thresholds = findings
                .iter()
                .map(|k| (*k, manifest.findings[k].operating_points.clone()))
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
                    "model"
                } else if occlusion {
                    "occlusion"
                } else {
                    "none"
                },
                warmup_ms: session.warmup.as_secs_f64() * 1e3,
                manifest_path: path.clone(),
            };
            let heatmap_shape = session.heatmap_shape;
            let spec = manifest.input_spec();
            let batcher = batcher::Batcher::spawn(session, config.batch, config.occlusion);
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
                let geometry = preprocess::write_input(&m.spec, image, &mut buf);
                (buf, geometry)
            })
            .collect();
        Prepared {
            inputs,
            preprocess: started.elapsed(),
        }
    }

    /// Queues a prepared image on every model's batcher and waits for the
    /// results (async).
    pub async fn infer(&self, prepared: Prepared) -> Result<Analysis, EngineError> {
        let preprocess = prepared.preprocess;
        let (receivers, geometries) = self.submit(prepared)?;
        let mut inferences = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            inferences.push(receiver.await.map_err(|_| EngineError::ShutDown)??);
        }
        Ok(self.assemble(&inferences, &geometries, preprocess))
    }

    /// As [`Engine::infer`], blocking the calling thread (not for async
    /// contexts).
    pub fn infer_blocking(&self, prepared: Prepared) -> Result<Analysis, EngineError> {
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
        Ok(self.assemble(&inferences, &geometries, preprocess))
    }

    /// Prepares and infers one image, blocking.
    pub fn analyze_blocking(&self, image: &GreyImage) -> Result<Analysis, EngineError> {
        self.infer_blocking(self.prepare(image))
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

    fn assemble(
        &self,
        inferences: &[Inference],
        geometries: &[Geometry],
        preprocess: Duration,
    ) -> Analysis {
        let mut findings = Vec::new();
        let mut provenance = Vec::new();
        let mut timings = StageTimes {
            preprocess_ms: preprocess.as_secs_f64() * 1e3,
            ..StageTimes::default()
        };
        for ((model, inference), geometry) in self.models.iter().zip(inferences).zip(geometries) {
            for kind in &model.info.findings {
                let op = model.info.operating_points.get(kind).map(String::as_str);
                findings.extend(triage::finding_result(
                    *kind,
                    &model.manifest,
                    op,
                    inference,
                    geometry,
                    model.heatmap_shape,
                    self.occlusion_grid,
                    self.region_level,
                ));
            }
            provenance.push(Provenance {
                model_id: model.info.id.clone(),
                model_version: model.info.version.clone(),
                provider: model.info.provider,
                batch_size: inference.batch_size,
            });
            timings.queue_ms = timings.queue_ms.max(inference.queue.as_secs_f64() * 1e3);
            timings.inference_ms = timings
                .inference_ms
                .max(inference.inference.as_secs_f64() * 1e3);
        }
        findings.sort_by_key(|f| f.finding);
        Analysis {
            findings,
            provenance,
            timings,
        }
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
