//! One model's ONNX Runtime session: execution-provider choice with explicit
//! fallback, validation of the graph against the manifest, warm-up, and
//! running one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::ep::{self, ExecutionProviderDispatch};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, Session, SessionOutputs};
use ort::value::{Tensor, TensorElementType, ValueType};
use serde::{Deserialize, Serialize};

use super::manifest::{Activation, Manifest};
use super::{runtime, EngineError};

/// Parses a lower-case name the way the configuration file spells it
/// (`"cuda"`, `"heuristic"`, …), for command lines and environment
/// variables.
pub(crate) fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    T::deserialize(s.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}

impl std::str::FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s)
    }
}

impl std::str::FromStr for ConvSearch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s)
    }
}

/// The execution provider a site asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChoice {
    /// TensorRT, then CUDA, then the CPU: the first that starts.
    #[default]
    Auto,
    /// TensorRT (falls back to the CPU, with a warning, if it cannot start).
    Tensorrt,
    /// CUDA (falls back to the CPU, with a warning, if it cannot start).
    Cuda,
    /// The CPU only.
    Cpu,
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// NVIDIA TensorRT.
    Tensorrt,
    /// NVIDIA CUDA.
    Cuda,
    /// ONNX Runtime's CPU provider.
    Cpu,
}

impl ExecutionProvider {
    /// Lower-case name, as in results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Tensorrt => "tensorrt",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::Cpu => "cpu",
        }
    }

    fn dispatch(self, settings: &SessionSettings) -> ExecutionProviderDispatch {
        let device_id = settings.device_id;
        match self {
            ExecutionProvider::Tensorrt => ep::TensorRT::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure(),
            ExecutionProvider::Cuda => ep::CUDA::default()
                .with_device_id(device_id)
                .with_conv_algorithm_search(settings.conv_search.into())
                .build()
                .error_on_failure(),
            ExecutionProvider::Cpu => ep::CPU::default().build().error_on_failure(),
        }
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How cuDNN picks convolution algorithms on CUDA, for each new input
/// shape (so for each new batch size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvSearch {
    /// Time every algorithm (fastest kernels; each new batch size costs a
    /// search, which the engine pays at load by warming every size up).
    Exhaustive,
    /// cuDNN's heuristics: no search.
    #[default]
    Heuristic,
    /// One fixed default algorithm.
    Default,
}

impl From<ConvSearch> for ep::cuda::ConvAlgorithmSearch {
    fn from(c: ConvSearch) -> Self {
        match c {
            ConvSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
            ConvSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
            ConvSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
        }
    }
}

/// Session settings from the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Which execution provider to try.
    pub provider: ProviderChoice,
    /// GPU ordinal for CUDA/TensorRT.
    pub device_id: i32,
    /// ONNX Runtime intra-op threads per session (0: ONNX Runtime's default,
    /// one per physical core).
    pub intra_threads: usize,
    /// Let ONNX Runtime's intra-op threads spin while waiting for work. Off
    /// by default: decoding and preprocessing run on the same cores, and
    /// measured on 2 cores spinning took ~half the CPU time of `score`.
    pub intra_op_spinning: bool,
    /// Use the manifest's `fp16_file` on CUDA/TensorRT when it names one.
    pub fp16: bool,
    /// On CUDA/TensorRT, pass each batch's input through a pinned
    /// (page-locked) host buffer bound to the session with an I/O binding,
    /// so the copy to the GPU is a DMA transfer. Off by default: measured on
    /// an H100 it did not pay with ONNX Runtime 1.31 (README, GPU figures).
    /// Ignored on the CPU.
    pub io_binding: bool,
    /// cuDNN convolution algorithm search on CUDA.
    pub conv_search: ConvSearch,
    /// ONNX Runtime library (default: `ORT_DYLIB_PATH`, then `.venv`).
    pub ort_library: Option<PathBuf>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            provider: ProviderChoice::Auto,
            device_id: 0,
            intra_threads: 0,
            intra_op_spinning: false,
            fp16: false,
            io_binding: false,
            conv_search: ConvSearch::Heuristic,
            ort_library: None,
        }
    }
}

/// Shape of the heatmap tensor per image: maps × rows × columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeatmapShape {
    /// Number of maps.
    pub maps: usize,
    /// Grid rows.
    pub height: usize,
    /// Grid columns.
    pub width: usize,
}

/// Outputs of one image, activations applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutput {
    /// One probability per `output.labels` entry.
    pub scores: Vec<f32>,
    /// `maps × height × width` values in `[0, 1]`, when the model has a
    /// heatmap output.
    pub heatmaps: Option<Vec<f32>>,
}

/// A loaded, validated, warmed-up model.
pub struct ModelSession {
    session: Session,
    /// The manifest it was loaded from.
    pub manifest: Manifest,
    /// Where the manifest is.
    pub manifest_path: PathBuf,
    /// The provider it runs on.
    pub provider: ExecutionProvider,
    /// Why a requested GPU provider was not used, if it was not.
    pub fallback_cause: Option<String>,
    /// Largest batch the graph accepts (`None`: any).
    pub fixed_batch: Option<usize>,
    /// Heatmap grid shape, when the model has one.
    pub heatmap_shape: Option<HeatmapShape>,
    /// Time of the warm-up inference.
    pub warmup: Duration,
    /// Whether the session runs on the fp16 variant of the model.
    pub fp16: bool,
    /// Pinned buffers and bindings, on a GPU provider with `io_binding`.
    pinned: Option<PinnedIo>,
    /// Whether `run` uses `pinned` (benchmarks compare both ways).
    use_pinned: bool,
}

/// Pinned host memory for a GPU session: allocators, and per batch size an
/// input tensor and an I/O binding. Outputs go to pinned tensors too, or —
/// where this ONNX Runtime build cannot copy into pinned outputs — to
/// ordinary host memory (they are small; the input is what pays).
/// Batch sizes are bounded by the engine's `max_batch`, so the cache is.
struct PinnedIo {
    input: Allocator,
    output: Allocator,
    pinned_outputs: bool,
    by_batch: HashMap<usize, PinnedBatch>,
}

struct PinnedBatch {
    input: Tensor<f32>,
    binding: IoBinding,
}

impl PinnedIo {
    fn new(session: &Session, device_id: i32) -> Result<PinnedIo, ort::Error> {
        let pinned = |kind| {
            MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                device_id,
                AllocatorType::Device,
                kind,
            )
            .and_then(|info| Allocator::new(session, info))
        };
        Ok(PinnedIo {
            input: pinned(MemoryType::CPUInput)?,
            output: pinned(MemoryType::CPUOutput)?,
            pinned_outputs: true,
            by_batch: HashMap::new(),
        })
    }

    /// The buffers for a batch of `n`, made on first use.
    fn batch(
        &mut self,
        session: &Session,
        manifest: &Manifest,
        heatmap: Option<HeatmapShape>,
        n: usize,
    ) -> Result<&mut PinnedBatch, ort::Error> {
        if !self.by_batch.contains_key(&n) {
            let spec = manifest.input_spec();
            let input = Tensor::<f32>::new(&self.input, spec.shape(n).to_vec())?;
            let mut binding = session.create_binding()?;
            let score_name = manifest.output.tensor.as_str();
            let map_name = manifest.heatmap.as_ref().map(|h| h.tensor.as_str());
            if self.pinned_outputs {
                let scores = Tensor::<f32>::new(&self.output, [n, manifest.output.labels.len()])?;
                binding.bind_output(score_name, scores)?;
                if let (Some(name), Some(hs)) = (map_name, heatmap) {
                    let maps = Tensor::<f32>::new(&self.output, [n, hs.maps, hs.height, hs.width])?;
                    binding.bind_output(name, maps)?;
                }
            } else {
                let host = MemoryInfo::new(
                    AllocationDevice::CPU,
                    0,
                    AllocatorType::Device,
                    MemoryType::Default,
                )?;
                binding.bind_output_to_device(score_name, &host)?;
                if let Some(name) = map_name {
                    binding.bind_output_to_device(name, &host)?;
                }
            }
            self.by_batch.insert(n, PinnedBatch { input, binding });
        }
        Ok(self.by_batch.get_mut(&n).expect("inserted above"))
    }
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("id", &self.manifest.model.id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    /// Opens the model a manifest describes: creates the session on the
    /// best provider that starts, validates the graph, runs a warm-up batch.
    pub fn open(
        manifest_path: &Path,
        manifest: Manifest,
        settings: &SessionSettings,
    ) -> Result<ModelSession, EngineError> {
        let env = runtime::environment(settings.ort_library.as_deref())?;
        let wanted: &[ExecutionProvider] = match settings.provider {
            ProviderChoice::Auto => &[ExecutionProvider::Tensorrt, ExecutionProvider::Cuda],
            ProviderChoice::Tensorrt => &[ExecutionProvider::Tensorrt],
            ProviderChoice::Cuda => &[ExecutionProvider::Cuda],
            ProviderChoice::Cpu => &[],
        };
        if !wanted.is_empty() {
            super::cuda::preload_wheel_libraries();
        }
        let model_error = |message: String| EngineError::Model {
            path: manifest_path.to_path_buf(),
            message,
        };
        let onnx = manifest.onnx_path(manifest_path);
        if !onnx.is_file() {
            return Err(model_error(format!(
                "ONNX file {} not found (set model.file in the manifest)",
                onnx.display()
            )));
        }
        let fp16_file = match (&manifest.model.fp16_file, settings.fp16) {
            (Some(f16), true) => {
                let file = manifest_path.parent().unwrap_or(Path::new(".")).join(f16);
                if !file.is_file() {
                    return Err(model_error(format!(
                        "model.fp16_file {} not found",
                        file.display()
                    )));
                }
                Some(file)
            }
            _ => None,
        };
        let mut causes = Vec::new();
        let mut chosen = None;
        for &provider in wanted {
            let file = fp16_file.as_ref().unwrap_or(&onnx);
            match build(env, file, provider, settings) {
                Ok(session) => {
                    chosen = Some((session, provider));
                    break;
                }
                Err(e) => causes.push(format!("{provider}: {}", first_line(&e.to_string()))),
            }
        }
        let fallback_cause = (!causes.is_empty()).then(|| causes.join("; "));
        let fp16 = chosen.is_some() && fp16_file.is_some();
        let (session, provider) = match chosen {
            Some(found) => found,
            None => {
                let session = build(env, &onnx, ExecutionProvider::Cpu, settings)
                    .map_err(|e| model_error(format!("ONNX Runtime cannot load it: {e}")))?;
                if let Some(cause) = &fallback_cause {
                    tracing::warn!(
                        model = %manifest.model.id,
                        requested = ?settings.provider,
                        %cause,
                        "GPU execution provider could not start; running on the CPU"
                    );
                }
                (session, ExecutionProvider::Cpu)
            }
        };
        let (fixed_batch, heatmap_shape) =
            validate_graph(&session, &manifest).map_err(model_error)?;
        let pinned = if provider != ExecutionProvider::Cpu && settings.io_binding {
            match PinnedIo::new(&session, settings.device_id) {
                Ok(io) => Some(io),
                Err(e) => {
                    tracing::warn!(
                        model = %manifest.model.id,
                        error = %first_line(&e.to_string()),
                        "pinned host memory unavailable; running without I/O binding"
                    );
                    None
                }
            }
        } else {
            None
        };
        let mut model = ModelSession {
            session,
            manifest,
            manifest_path: manifest_path.to_path_buf(),
            provider,
            fallback_cause,
            fixed_batch,
            heatmap_shape,
            warmup: Duration::ZERO,
            fp16,
            use_pinned: pinned.is_some(),
            pinned,
        };
        let started = Instant::now();
        let spec = model.manifest.input_spec();
        let zeros = vec![0.0f32; spec.image_len()];
        // With the I/O binding: pinned outputs, else host outputs, else no
        // binding — whichever this runtime build accepts, said in the log.
        loop {
            match model.run(&[zeros.as_slice()]) {
                Ok(_) => break,
                Err(e) if model.use_pinned => {
                    let io = model.pinned.as_mut().expect("use_pinned implies pinned");
                    io.by_batch.clear();
                    let next = if io.pinned_outputs {
                        io.pinned_outputs = false;
                        "pinned input, host outputs"
                    } else {
                        model.pinned = None;
                        model.use_pinned = false;
                        "no I/O binding"
                    };
                    tracing::warn!(
                        model = %model.manifest.model.id,
                        error = %first_line(&e.to_string()),
                        next,
                        "I/O binding not accepted by this ONNX Runtime; trying again"
                    );
                }
                Err(e) => return Err(model_error(format!("warm-up inference failed: {e}"))),
            }
        }
        model.warmup = started.elapsed();
        tracing::info!(
            model = %model.manifest.model.id,
            provider = %model.provider,
            fp16 = model.fp16,
            io_binding = model.use_pinned,
            pinned_outputs = model.pinned.as_ref().is_some_and(|p| p.pinned_outputs),
            warmup_ms = model.warmup.as_secs_f64() * 1e3,
            "model ready"
        );
        Ok(model)
    }

    /// Runs one batch of preprocessed images (each [`InputSpec::image_len`]
    /// floats) and returns each image's outputs, activations applied.
    ///
    /// [`InputSpec::image_len`]: crate::preprocess::InputSpec::image_len
    pub fn run(&mut self, images: &[&[f32]]) -> Result<Vec<ImageOutput>, EngineError> {
        let spec = self.manifest.input_spec();
        let n = images.len();
        let len = spec.image_len();
        if let Some(bad) = images.iter().find(|i| i.len() != len) {
            return Err(EngineError::Inference(format!(
                "an input has {} values, the model takes {len}",
                bad.len()
            )));
        }
        if self.use_pinned {
            if let Some(io) = self.pinned.as_mut() {
                let batch = io
                    .batch(&self.session, &self.manifest, self.heatmap_shape, n)
                    .map_err(EngineError::inference)?;
                let (_, buffer) = batch.input.extract_tensor_mut();
                for (slot, image) in buffer.chunks_exact_mut(len).zip(images) {
                    slot.copy_from_slice(image);
                }
                batch
                    .binding
                    .bind_input(self.manifest.input.tensor.as_str(), &batch.input)
                    .map_err(EngineError::inference)?;
                let outputs = self
                    .session
                    .run_binding(&batch.binding)
                    .map_err(EngineError::inference)?;
                return collect_outputs(&self.manifest, self.heatmap_shape, n, &outputs);
            }
        }
        let mut data = Vec::with_capacity(n * len);
        for image in images {
            data.extend_from_slice(image);
        }
        let shape = spec.shape(n).map(|d| d as i64);
        let tensor = Tensor::from_array((shape, data)).map_err(EngineError::inference)?;
        let input_name = self.manifest.input.tensor.clone();
        let outputs = self
            .session
            .run(ort::inputs![input_name.as_str() => tensor])
            .map_err(EngineError::inference)?;
        collect_outputs(&self.manifest, self.heatmap_shape, n, &outputs)
    }

    /// On a GPU, runs one batch of every size from 2 to `max` (or the
    /// graph's fixed batch) so that no request pays for a new shape (cuDNN
    /// algorithm choice, memory planning). Returns the time it took.
    pub fn warm_up_batches(&mut self, max: usize) -> Result<Duration, EngineError> {
        let started = Instant::now();
        if self.provider == ExecutionProvider::Cpu {
            return Ok(Duration::ZERO);
        }
        let max = self.fixed_batch.map_or(max, |f| f.min(max));
        let zeros = vec![0.0f32; self.manifest.input_spec().image_len()];
        for n in 2..=max {
            let batch = vec![zeros.as_slice(); n];
            self.run(&batch)?;
        }
        Ok(started.elapsed())
    }

    /// Whether batches go through pinned buffers and an I/O binding (only
    /// on a GPU provider with `io_binding` on).
    pub fn io_binding(&self) -> bool {
        self.use_pinned
    }

    /// Turns the I/O binding path off or back on (when the session has
    /// one): for benchmarks comparing both on the same session.
    pub fn set_io_binding(&mut self, on: bool) {
        self.use_pinned = on && self.pinned.is_some();
    }
}

/// Reads the score (and heatmap) outputs of a batch of `n` and applies the
/// activations.
fn collect_outputs(
    manifest: &Manifest,
    heatmap_shape: Option<HeatmapShape>,
    n: usize,
    outputs: &SessionOutputs<'_>,
) -> Result<Vec<ImageOutput>, EngineError> {
    let labels = manifest.output.labels.len();
    let (_, scores) = outputs
        .get(manifest.output.tensor.as_str())
        .ok_or_else(|| EngineError::Inference("score output missing".into()))?
        .try_extract_tensor::<f32>()
        .map_err(EngineError::inference)?;
    if scores.len() != n * labels {
        return Err(EngineError::Inference(format!(
            "score output has {} values for {n} images × {labels} labels",
            scores.len()
        )));
    }
    let heatmaps = match (&manifest.heatmap, heatmap_shape) {
        (Some(section), Some(hs)) => {
            let (_, maps) = outputs
                .get(section.tensor.as_str())
                .ok_or_else(|| EngineError::Inference("heatmap output missing".into()))?
                .try_extract_tensor::<f32>()
                .map_err(EngineError::inference)?;
            let per_image = hs.maps * hs.height * hs.width;
            if maps.len() != n * per_image {
                return Err(EngineError::Inference(format!(
                    "heatmap output has {} values, expected {}",
                    maps.len(),
                    n * per_image
                )));
            }
            Some((maps, per_image, section.activation, hs))
        }
        _ => None,
    };
    let activation = manifest.output.activation;
    Ok((0..n)
        .map(|i| ImageOutput {
            scores: activate(&scores[i * labels..(i + 1) * labels], activation),
            heatmaps: heatmaps.as_ref().map(|(maps, per, act, hs)| {
                let own = &maps[i * per..(i + 1) * per];
                activate_maps(own, *act, hs)
            }),
        })
        .collect())
}

fn build(
    env: &ort::environment::Environment,
    file: &Path,
    provider: ExecutionProvider,
    settings: &SessionSettings,
) -> Result<Session, ort::Error> {
    let mut builder =
        Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::All)?;
    if settings.intra_threads > 0 {
        builder = builder.with_intra_threads(settings.intra_threads)?;
    }
    builder = builder.with_intra_op_spinning(settings.intra_op_spinning)?;
    builder = builder.with_execution_providers([provider.dispatch(settings)])?;
    builder.commit_from_file(file)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// Checks the graph against the manifest; returns the fixed batch size (if
/// the batch axis is not dynamic) and the heatmap shape.
fn validate_graph(
    session: &Session,
    manifest: &Manifest,
) -> Result<(Option<usize>, Option<HeatmapShape>), String> {
    let inputs = session.inputs();
    if inputs.len() != 1 {
        let names: Vec<&str> = inputs.iter().map(|o| o.name()).collect();
        return Err(format!(
            "the graph has {} inputs ({}); only single-input models are supported",
            inputs.len(),
            names.join(", ")
        ));
    }
    let input = &inputs[0];
    if input.name() != manifest.input.tensor {
        return Err(format!(
            "input.tensor = `{}` but the graph's input is `{}`",
            manifest.input.tensor,
            input.name()
        ));
    }
    let dims = float_dims(input.dtype(), "input.tensor")?;
    let spec = manifest.input_spec();
    let expected = spec.shape(1).map(|d| d as i64);
    if dims.len() != 4 {
        return Err(format!(
            "input.tensor has rank {}, expected 4 ({:?})",
            dims.len(),
            spec.layout
        ));
    }
    for (axis, (&got, &want)) in dims.iter().zip(expected.iter()).enumerate().skip(1) {
        if got >= 0 && got != want {
            return Err(format!(
                "input.tensor shape {dims:?} does not match the manifest's {:?} {}×{}×{} (axis {axis}: {got} ≠ {want})",
                spec.layout, spec.channels, spec.height, spec.width
            ));
        }
    }
    let fixed_batch = (dims[0] > 0).then_some(dims[0] as usize);

    let outputs = session.outputs();
    let find = |name: &str, field: &str| {
        outputs.iter().find(|o| o.name() == name).ok_or_else(|| {
            let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
            format!(
                "{field} = `{name}` is not an output of the graph (outputs: {})",
                names.join(", ")
            )
        })
    };
    let scores = find(&manifest.output.tensor, "output.tensor")?;
    let sdims = float_dims(scores.dtype(), "output.tensor")?;
    let labels = manifest.output.labels.len() as i64;
    if sdims.len() != 2 || (sdims[1] >= 0 && sdims[1] != labels) {
        return Err(format!(
            "output.tensor shape {sdims:?}, expected [N, {labels}] for {labels} output.labels"
        ));
    }
    let heatmap_shape = match &manifest.heatmap {
        None => None,
        Some(section) => {
            let out = find(&section.tensor, "heatmap.tensor")?;
            let hdims = float_dims(out.dtype(), "heatmap.tensor")?;
            let maps = section.labels.len() as i64;
            if hdims.len() != 4 || (hdims[1] >= 0 && hdims[1] != maps) {
                return Err(format!(
                    "heatmap.tensor shape {hdims:?}, expected [N, {maps}, h, w] for {maps} heatmap.labels"
                ));
            }
            if hdims[2] <= 0 || hdims[3] <= 0 {
                return Err(format!(
                    "heatmap.tensor shape {hdims:?}: the grid size must be fixed in the graph"
                ));
            }
            Some(HeatmapShape {
                maps: maps as usize,
                height: hdims[2] as usize,
                width: hdims[3] as usize,
            })
        }
    };
    Ok((fixed_batch, heatmap_shape))
}

fn float_dims(dtype: &ValueType, field: &str) -> Result<Vec<i64>, String> {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                return Err(format!(
                    "{field} has element type {ty:?}; float32 is required"
                ));
            }
            Ok(shape.iter().copied().collect())
        }
        other => Err(format!("{field} is not a tensor ({other:?})")),
    }
}

/// Activation of one image's scores.
fn activate(values: &[f32], activation: Activation) -> Vec<f32> {
    match activation {
        Activation::None => values.to_vec(),
        Activation::Sigmoid => values.iter().map(|&v| sigmoid(v)).collect(),
        Activation::Softmax => {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = values.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
    }
}

/// Heatmap activation: sigmoid per cell, or softmax across maps per cell.
fn activate_maps(values: &[f32], activation: Activation, shape: &HeatmapShape) -> Vec<f32> {
    match activation {
        Activation::None => values.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
        Activation::Sigmoid => values.iter().map(|&v| sigmoid(v)).collect(),
        Activation::Softmax => {
            let plane = shape.height * shape.width;
            let mut out = vec![0.0; values.len()];
            for cell in 0..plane {
                let cells: Vec<f32> = (0..shape.maps).map(|m| values[m * plane + cell]).collect();
                for (m, p) in activate(&cells, Activation::Softmax)
                    .into_iter()
                    .enumerate()
                {
                    out[m * plane + cell] = p;
                }
            }
            out
        }
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}
