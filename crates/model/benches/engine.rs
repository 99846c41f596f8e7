//! Preprocess and inference on the CPU (or the GPU, where ONNX Runtime has
//! one): per image and per batch size, for the reference model
//! (`models/cxr-reference-v1`) and, when made by
//! `models/bench/make_densenet121.py`, a DenseNet-121 at 512×512.
//!
//! The image is the bundled RG1 chest CR (1841 × 1955), decoded once.
//! `CXR_BENCH_PROVIDER=cuda` picks the execution provider (default auto).

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cxr_ingest::{read_file, IngestLimits};
use cxr_model::preprocess::write_input;
use cxr_model::{
    BatchSettings, Engine, EngineConfig, Manifest, ModelSession, ProviderChoice, SessionSettings,
};

const MODELS: [&str; 2] = [
    "models/cxr-reference-v1.toml",
    "models/bench/densenet121-bench.toml",
];

fn settings() -> SessionSettings {
    let provider = match std::env::var("CXR_BENCH_PROVIDER").as_deref() {
        Ok("cpu") => ProviderChoice::Cpu,
        Ok("cuda") => ProviderChoice::Cuda,
        Ok("tensorrt") => ProviderChoice::Tensorrt,
        _ => ProviderChoice::Auto,
    };
    SessionSettings {
        provider,
        ..SessionSettings::default()
    }
}

fn engine_benches(c: &mut Criterion) {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let image = read_file(
        &root.join("test-images/bundled/RG1_J2KI.dcm"),
        &IngestLimits::default(),
    )
    .expect("bundled RG1")
    .image;
    for manifest_path in MODELS.map(|m| root.join(m)) {
        let Ok(manifest) = Manifest::load(&manifest_path) else {
            eprintln!("skipping {}: no manifest", manifest_path.display());
            continue;
        };
        if !manifest.onnx_path(&manifest_path).is_file() {
            eprintln!("skipping {}: ONNX file not made", manifest_path.display());
            continue;
        }
        let id = manifest.model.id.clone();
        let spec = manifest.input_spec();
        let mut session =
            ModelSession::open(&manifest_path, manifest, &settings()).expect("model loads");
        let provider = session.provider;

        let mut group = c.benchmark_group(format!("{id}/{provider}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(4));
        group.throughput(Throughput::Elements(1));
        let mut buf = vec![0.0f32; spec.image_len()];
        group.bench_function("preprocess", |b| {
            b.iter(|| write_input(&spec, &image, &mut buf))
        });

        for batch in [1usize, 4, 8] {
            let inputs: Vec<Vec<f32>> = (0..batch).map(|_| buf.clone()).collect();
            let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("inference", batch), &refs, |b, refs| {
                b.iter(|| session.run(refs).expect("inference"))
            });
        }
        drop(session);

        // Whole engine: preprocess + queue + batch of one + triage (heatmaps, regions).
        let dir = manifest_path.parent().unwrap().to_path_buf();
        let engine = Engine::load(&EngineConfig {
            models_dir: dir,
            session: settings(),
            batch: BatchSettings {
                max_batch: 1,
                max_delay_ms: 0,
                queue_capacity: 4,
                ..BatchSettings::default()
            },
            ..EngineConfig::default()
        });
        if let Ok(engine) = engine {
            if engine.models().count() == 1 {
                group.throughput(Throughput::Elements(1));
                group.bench_function("analyze", |b| {
                    b.iter(|| {
                        engine
                            .infer_blocking(engine.prepare(&image))
                            .expect("inference")
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
