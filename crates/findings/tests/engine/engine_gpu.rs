//! The GPU path, and the fp16 variant of the reference model.
//!
//! On any machine: the committed fp16 variant (`cxr-reference-v1-fp16.onnx`)
//! has the float32 model's inputs and outputs and gives its scores (it runs
//! on ONNX Runtime's CPU provider too).
//!
//! On a machine with an NVIDIA GPU and `onnxruntime-gpu` (the tests marked
//! `ignore`; run them with `CXR_GPU_TESTS=1 cargo test --test engine_gpu --
//! --ignored`, `ORT_DYLIB_PATH` naming the GPU runtime): CUDA really starts
//! (the provider in use is `cuda`, no fallback cause), and gives the CPU's
//! scores and heatmaps with and without the pinned-memory I/O binding, in
//! batches as one by one, and with the fp16 variant within half-precision
//! tolerance. CI has no GPU; these ran on an H100 (see README).

#[allow(unused_imports)]
use crate::AnalyzeExt;
use std::path::{Path, PathBuf};

use cxr_ingest::{read_bytes, IngestLimits};
use cxr_model::preprocess::write_input;
use cxr_model::{
    load_manifests, ExecutionProvider, ImageOutput, Manifest, ModelSession, ProviderChoice,
    SessionSettings,
};
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax};

/// The repository's `models/` (the source tree, or the working directory
/// when the test binary runs elsewhere, as on a GPU machine).
fn models_dir() -> PathBuf {
    let built = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("models");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("models")
    }
}

fn reference() -> (PathBuf, Manifest) {
    load_manifests(&models_dir())
        .expect("manifests")
        .into_iter()
        .find(|(_, m)| m.model.id == "cxr-reference-v1")
        .expect("the reference model")
}

/// `n` preprocessed synthetic films (mixed findings and shapes).
fn inputs(manifest: &Manifest, n: u64) -> Vec<Vec<f32>> {
    let spec = manifest.input_spec();
    let shapes = [(512, 512), (480, 600), (600, 480)];
    (0..n)
        .map(|i| {
            let case = generate_case(
                &CaseSpec {
                    size: Some(shapes[(i % 3) as usize]),
                    nodule_contrast: 3.0,
                    ..CaseSpec::default()
                },
                777,
                i + 1,
            )
            .expect("case");
            let bytes = dicom_bytes(&case, OutputSyntax::ExplicitLe).expect("dicom");
            let r = read_bytes(&bytes, &IngestLimits::default()).expect("ingest");
            let mut buf = vec![0.0f32; spec.image_len()];
            write_input(&spec, &r.image, &mut buf);
            buf
        })
        .collect()
}

fn open(path: &Path, manifest: Manifest, settings: SessionSettings) -> ModelSession {
    ModelSession::open(path, manifest, &settings).expect("model opens")
}

fn one_by_one(session: &mut ModelSession, images: &[Vec<f32>]) -> Vec<ImageOutput> {
    images
        .iter()
        .flat_map(|i| session.run(&[i.as_slice()]).expect("run"))
        .collect()
}

fn batched(session: &mut ModelSession, images: &[Vec<f32>], size: usize) -> Vec<ImageOutput> {
    images
        .chunks(size)
        .flat_map(|c| {
            let batch: Vec<&[f32]> = c.iter().map(Vec::as_slice).collect();
            session.run(&batch).expect("run")
        })
        .collect()
}

/// Largest absolute difference of scores and of heatmap cells.
fn max_diff(a: &[ImageOutput], b: &[ImageOutput]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let mut scores = 0.0f32;
    let mut maps = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.scores.iter().zip(&y.scores) {
            scores = scores.max((p - q).abs());
        }
        let (hx, hy) = (x.heatmaps.as_ref().unwrap(), y.heatmaps.as_ref().unwrap());
        assert_eq!(hx.len(), hy.len());
        for (p, q) in hx.iter().zip(hy) {
            maps = maps.max((p - q).abs());
        }
    }
    (scores, maps)
}

/// Share of images whose heatmap peak is the same cell, per map.
fn same_peaks(a: &[ImageOutput], b: &[ImageOutput], maps: usize) -> f64 {
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    };
    let mut same = 0;
    let mut total = 0;
    for (x, y) in a.iter().zip(b) {
        let (hx, hy) = (x.heatmaps.as_ref().unwrap(), y.heatmaps.as_ref().unwrap());
        let per = hx.len() / maps;
        for m in 0..maps {
            total += 1;
            if argmax(&hx[m * per..(m + 1) * per]) == argmax(&hy[m * per..(m + 1) * per]) {
                same += 1;
            }
        }
    }
    same as f64 / total as f64
}

#[test]
fn fp16_variant_has_the_float32_interface_and_scores() {
    let (path, manifest) = reference();
    let f16 = manifest
        .model
        .fp16_file
        .clone()
        .expect("the reference manifest names its fp16 variant");
    let images = inputs(&manifest, 24);
    let cpu = SessionSettings {
        provider: ProviderChoice::Cpu,
        ..SessionSettings::default()
    };
    let mut full = open(&path, manifest.clone(), cpu.clone());
    // The fp16 file opened as the model itself: the graph is validated
    // against the same manifest (float32 input and outputs, shapes).
    let mut half_manifest = manifest.clone();
    half_manifest.model.file = Some(f16);
    let mut half = open(&path, half_manifest, cpu);
    let a = batched(&mut full, &images, 8);
    let b = batched(&mut half, &images, 8);
    let (scores, maps) = max_diff(&a, &b);
    eprintln!("fp16 vs fp32 on the CPU: scores ±{scores:.2e}, heatmaps ±{maps:.2e}");
    assert!(scores < 0.01, "fp16 scores differ by {scores}");
    assert!(maps < 0.02, "fp16 heatmaps differ by {maps}");
    let peaks = same_peaks(&a, &b, 2);
    assert!(peaks >= 0.9, "same heatmap peak for only {peaks:.2}");
}

/// The GPU tests run only when asked (a GPU machine with onnxruntime-gpu).
fn gpu_requested() -> bool {
    std::env::var_os("CXR_GPU_TESTS").is_some()
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu; CXR_GPU_TESTS=1 ... -- --ignored"]
fn cuda_starts_and_matches_the_cpu_with_and_without_io_binding() {
    assert!(gpu_requested(), "set CXR_GPU_TESTS=1 on a GPU machine");
    let (path, manifest) = reference();
    let images = inputs(&manifest, 48);
    let mut cpu = open(
        &path,
        manifest.clone(),
        SessionSettings {
            provider: ProviderChoice::Cpu,
            ..SessionSettings::default()
        },
    );
    let mut gpu = open(
        &path,
        manifest.clone(),
        SessionSettings {
            provider: ProviderChoice::Cuda,
            io_binding: true,
            ..SessionSettings::default()
        },
    );
    assert_eq!(
        gpu.provider,
        ExecutionProvider::Cuda,
        "{:?}",
        gpu.fallback_cause
    );
    assert_eq!(gpu.fallback_cause, None);
    assert!(
        gpu.io_binding(),
        "pinned input binding was asked for and set up"
    );
    let reference = one_by_one(&mut cpu, &images);

    for (binding, size) in [(true, 1), (true, 8), (true, 32), (false, 1), (false, 8)] {
        gpu.set_io_binding(binding);
        assert_eq!(gpu.io_binding(), binding);
        let out = if size == 1 {
            one_by_one(&mut gpu, &images)
        } else {
            batched(&mut gpu, &images, size)
        };
        let (scores, maps) = max_diff(&reference, &out);
        eprintln!(
            "cuda, io binding {binding}, batch {size}: scores ±{scores:.2e}, heatmaps ±{maps:.2e}"
        );
        // cuDNN's convolution algorithms (and TF32 on Hopper) round
        // differently from MLAS: measured ±1.6e-4 on scores on an H100.
        assert!(
            scores < 1e-3,
            "CUDA scores differ from the CPU's by {scores}"
        );
        assert!(maps < 2e-3, "CUDA heatmaps differ from the CPU's by {maps}");
    }
    // Repeated batches through the same pinned buffers give the same
    // results (no stale data between runs of one batch size).
    gpu.set_io_binding(true);
    let first = batched(&mut gpu, &images[..8], 8);
    let other = batched(&mut gpu, &images[8..16], 8);
    let again = batched(&mut gpu, &images[..8], 8);
    assert_eq!(max_diff(&first, &again), (0.0, 0.0));
    assert!(max_diff(&first, &other).0 > 0.0);
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu; CXR_GPU_TESTS=1 ... -- --ignored"]
fn fp16_variant_on_cuda_keeps_the_scores_and_peaks() {
    assert!(gpu_requested(), "set CXR_GPU_TESTS=1 on a GPU machine");
    let (path, manifest) = reference();
    let images = inputs(&manifest, 48);
    let mut full = open(
        &path,
        manifest.clone(),
        SessionSettings {
            provider: ProviderChoice::Cuda,
            ..SessionSettings::default()
        },
    );
    let mut half = open(
        &path,
        manifest.clone(),
        SessionSettings {
            provider: ProviderChoice::Cuda,
            fp16: true,
            ..SessionSettings::default()
        },
    );
    assert_eq!(half.provider, ExecutionProvider::Cuda);
    assert!(half.fp16 && !full.fp16);
    let a = batched(&mut full, &images, 16);
    let b = batched(&mut half, &images, 16);
    let (scores, maps) = max_diff(&a, &b);
    eprintln!("cuda fp16 vs fp32: scores ±{scores:.2e}, heatmaps ±{maps:.2e}");
    assert!(scores < 0.01, "fp16 scores differ by {scores}");
    assert!(maps < 0.02, "fp16 heatmaps differ by {maps}");
    assert!(same_peaks(&a, &b, 2) >= 0.9);
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu; CXR_GPU_TESTS=1 ... -- --ignored"]
fn auto_takes_the_best_provider_that_starts_and_says_why_not_the_others() {
    assert!(gpu_requested(), "set CXR_GPU_TESTS=1 on a GPU machine");
    let (path, manifest) = reference();
    let session = open(&path, manifest, SessionSettings::default());
    // TensorRT needs libnvinfer, which the PyPI runtime does not bring:
    // then auto settles on CUDA and records why TensorRT did not start.
    match session.provider {
        ExecutionProvider::Tensorrt => assert_eq!(session.fallback_cause, None),
        ExecutionProvider::Cuda => {
            let cause = session.fallback_cause.expect("why not TensorRT");
            assert!(cause.starts_with("tensorrt:"), "{cause}");
        }
        ExecutionProvider::Cpu => panic!("auto fell back to the CPU on a GPU machine"),
    }
}
