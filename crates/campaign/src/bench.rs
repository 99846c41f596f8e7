//! `cxr-triage bench`: how fast this machine scores chest films, stage by
//! stage, on the execution provider it gets — for sizing a workstation or a
//! GPU server before a campaign.
//!
//! On the same in-memory images: decode (parse + pixels + LUTs), preprocess
//! (resize + normalise), inference alone at each batch size (the session
//! run on ready tensors), and the whole pipeline (decode → preprocess →
//! batching engine → findings) with N concurrent workers. Reports images/s
//! and p50/p99 per stage, the provider and device, and the pipeline
//! efficiency: pipeline images/s ÷ inference-only images/s at the engine's
//! batch size (how close decoding and preprocessing keep the device to
//! busy). On CUDA it also reports the device's memory in use (nvidia-smi).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use cxr_findings::PriorityPolicy;
use cxr_ingest::{self as dicom, IngestLimits};
use cxr_model::preprocess::write_input;
use cxr_model::{
    load_manifests, BatchSettings, ConvSearch, Engine, EngineConfig, ModelSession, ProviderChoice,
    SessionSettings,
};
use cxr_pipeline::jpeg2000::{self, DecodeConfig, Jpeg2000Choice};
use cxr_pipeline::Analyzer;

/// Options of `cxr-triage bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Models directory.
    pub models: PathBuf,
    /// The model to time (its `model.id`; default: the first in the directory).
    pub model: Option<String>,
    /// Batch sizes for inference alone.
    pub batch: Vec<usize>,
    /// Concurrent workers for the whole pipeline.
    pub concurrency: Vec<usize>,
    /// The DICOM films to time (top level of this folder; e.g. made by
    /// `cxr-synth --size 2048x2048 --bits 12`).
    pub images: PathBuf,
    /// Pipeline images per concurrency level.
    pub requests: usize,
    /// Execution provider.
    pub provider: ProviderChoice,
    /// Largest batch the engine forms in the pipeline runs.
    pub max_batch: usize,
    /// ONNX Runtime intra-op threads (0: its default, all cores).
    pub threads: usize,
    /// Use the model's fp16 variant (`model.fp16_file`) on CUDA/TensorRT.
    pub fp16: bool,
    /// On CUDA/TensorRT, pass inputs through pinned buffers with an I/O
    /// binding; inference alone is then timed both ways side by side.
    pub io_binding: bool,
    /// cuDNN convolution algorithm search on CUDA.
    pub conv_search: ConvSearch,
    /// JPEG 2000 decoder (`[decode] jpeg2000`): with the GPU, JPEG 2000
    /// films are also decoded on both and compared.
    pub jpeg2000: Jpeg2000Choice,
    /// Write the results as JSON here.
    pub json: Option<PathBuf>,
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

fn stage(mut ms: Vec<f64>, images: usize, seconds: f64) -> serde_json::Value {
    json!({
        "p50_ms": percentile(&mut ms, 0.5),
        "p99_ms": percentile(&mut ms, 0.99),
        "images_per_s": images as f64 / seconds.max(1e-9),
    })
}

/// The GPU's name and memory in use, from nvidia-smi (when there is one).
fn gpu_info() -> Option<(String, String)> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.used", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    let (name, mem) = line.split_once(',')?;
    Some((name.trim().to_string(), mem.trim().to_string()))
}

/// Runs `bench`.
pub fn run(args: &BenchOptions) -> anyhow::Result<std::process::ExitCode> {
    let limits = IngestLimits::default();
    let decoder = jpeg2000::install(&DecodeConfig {
        jpeg2000: args.jpeg2000,
        ..DecodeConfig::default()
    })?;
    // Inputs, as files in memory.
    let dir = &args.images;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let files: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| dicom::read_bytes(b, &limits).is_ok_and(|r| r.assessment.analyzable))
        .collect();
    anyhow::ensure!(
        !files.is_empty(),
        "no analysable DICOM films in {}",
        dir.display()
    );
    let mb = files.iter().map(Vec::len).sum::<usize>() as f64 / files.len() as f64 / 1e6;

    // The model.
    let manifests = load_manifests(&args.models)?;
    let (manifest_path, manifest) = match &args.model {
        Some(id) => manifests
            .into_iter()
            .find(|(_, m)| &m.model.id == id)
            .with_context(|| format!("no model `{id}` in {}", args.models.display()))?,
        None => manifests
            .into_iter()
            .next()
            .with_context(|| format!("no model in {}", args.models.display()))?,
    };
    let settings = SessionSettings {
        provider: args.provider,
        intra_threads: args.threads,
        fp16: args.fp16,
        io_binding: args.io_binding,
        conv_search: args.conv_search,
        ..SessionSettings::default()
    };
    let spec = manifest.input_spec();
    let model_id = format!("{} {}", manifest.model.id, manifest.model.version);

    // Decode and preprocess, one image at a time.
    let mut decode_ms = Vec::new();
    let mut prep_ms = Vec::new();
    let mut tensors = Vec::new();
    let t0 = Instant::now();
    let mut decoded = Vec::new();
    for f in &files {
        let t = Instant::now();
        let r = dicom::read_bytes(f, &limits)?;
        decode_ms.push(t.elapsed().as_secs_f64() * 1e3);
        decoded.push(r.image);
    }
    let decode_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for image in &decoded {
        let t = Instant::now();
        let mut buf = vec![0.0f32; spec.image_len()];
        write_input(&spec, image, &mut buf);
        prep_ms.push(t.elapsed().as_secs_f64() * 1e3);
        tensors.push(buf);
    }
    let prep_s = t0.elapsed().as_secs_f64();
    drop(decoded);
    let jpeg2000_comparison = if decoder.accelerated {
        compare_jpeg2000(&files, &limits)?
    } else {
        serde_json::Value::Null
    };

    // Inference alone per batch size.
    let mut session = ModelSession::open(&manifest_path, manifest.clone(), &settings)?;
    let provider = session.provider;
    let fp16 = session.fp16;
    let io_binding = session.io_binding();
    let mut inference = serde_json::Map::new();
    // Without the I/O binding, timed in the same run (GPU only).
    let mut pageable = serde_json::Map::new();
    let ways: &[bool] = if io_binding { &[true, false] } else { &[false] };
    for &b in &args.batch {
        let b = b.max(1);
        let batch: Vec<&[f32]> = (0..b)
            .map(|i| tensors[i % tensors.len()].as_slice())
            .collect();
        let runs = (64 / b).clamp(3, 32);
        // Alternate the two ways in rounds so drift hits both alike.
        let mut ms = vec![Vec::new(); ways.len()];
        let mut seconds = vec![0.0; ways.len()];
        for &way in ways {
            session.set_io_binding(way);
            session.run(&batch)?; // warm-up at this shape
        }
        for _round in 0..2 {
            for (w, &way) in ways.iter().enumerate() {
                session.set_io_binding(way);
                let t0 = Instant::now();
                for _ in 0..runs.div_ceil(2) {
                    let t = Instant::now();
                    session.run(&batch)?;
                    ms[w].push(t.elapsed().as_secs_f64() * 1e3);
                }
                seconds[w] += t0.elapsed().as_secs_f64();
            }
        }
        for (w, &way) in ways.iter().enumerate() {
            let images = ms[w].len() * b;
            let row = stage(std::mem::take(&mut ms[w]), images, seconds[w]);
            if way || !io_binding {
                inference.insert(b.to_string(), row);
            } else {
                pageable.insert(b.to_string(), row);
            }
        }
    }
    session.set_io_binding(io_binding);
    drop(session);

    // The whole pipeline, N workers, the batching engine.
    // The engine loads a directory: one holding only this model (its
    // manifest and ONNX file under their own names).
    let dir = std::env::temp_dir().join(format!("cxr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let onnx = manifest.onnx_path(&manifest_path);
    let mut model_files = vec![manifest_path.clone(), onnx];
    if let Some(f16) = &manifest.model.fp16_file {
        model_files.push(manifest_path.parent().unwrap_or(".".as_ref()).join(f16));
    }
    for f in model_files.iter().filter(|f| f.is_file()) {
        std::fs::copy(f, dir.join(f.file_name().context("model file name")?))
            .with_context(|| format!("copying {}", f.display()))?;
    }
    let engine = Engine::load(&EngineConfig {
        models_dir: dir.clone(),
        session: settings.clone(),
        batch: BatchSettings {
            max_batch: args.max_batch.max(1),
            ..BatchSettings::default()
        },
        ..EngineConfig::default()
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    let analyzer = Analyzer::new(
        std::sync::Arc::new(engine),
        PriorityPolicy::default(),
        limits.clone(),
    );
    let mut pipeline = Vec::new();
    for &c in &args.concurrency {
        let c = c.max(1);
        let next = AtomicUsize::new(0);
        let samples = std::sync::Mutex::new(Vec::new());
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..c {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.requests {
                        break;
                    }
                    let t = Instant::now();
                    let outcome = analyzer.analyze_blocking(&files[i % files.len()], false);
                    if outcome.is_ok_and(|o| o.analyzable()) {
                        if let Ok(mut v) = samples.lock() {
                            v.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                });
            }
        });
        let seconds = t0.elapsed().as_secs_f64();
        let ms = samples.into_inner().unwrap_or_default();
        let n = ms.len();
        let mut row = stage(ms, n, seconds);
        row["concurrency"] = json!(c);
        pipeline.push(row);
    }
    let best_pipeline = pipeline
        .iter()
        .filter_map(|r| r["images_per_s"].as_f64())
        .fold(0.0, f64::max);
    let reference_batch = args
        .batch
        .iter()
        .copied()
        .filter(|b| *b <= args.max_batch.max(1))
        .max()
        .unwrap_or(1);
    let inference_only = inference
        .get(&reference_batch.to_string())
        .and_then(|v| v["images_per_s"].as_f64())
        .unwrap_or(f64::NAN);
    let gpu = if provider.as_str() == "cpu" {
        None
    } else {
        gpu_info()
    };
    let report = json!({
        "model": model_id,
        "provider": provider.as_str(),
        "fp16": fp16,
        "io_binding": io_binding,
        "device": gpu.as_ref().map(|g| g.0.clone()).unwrap_or_else(|| format!("CPU ({} threads)", std::thread::available_parallelism().map_or(0, |n| n.get()))),
        "device_memory_used": gpu.as_ref().map(|g| g.1.clone()),
        "images": files.len(),
        "mb_per_file": mb,
        "jpeg2000_decoder": decoder,
        "jpeg2000_gpu_vs_cpu": jpeg2000_comparison,
        "decode": stage(decode_ms, files.len(), decode_s),
        "preprocess": stage(prep_ms, files.len(), prep_s),
        "inference": inference,
        "inference_without_io_binding": pageable,
        "pipeline": pipeline,
        "pipeline_efficiency": {
            "batch": reference_batch,
            "ratio": best_pipeline / inference_only,
        },
    });
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("written {}", path.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Decodes the JPEG 2000 films among `files` on the GPU and on the CPU
/// (OpenJPEG, one thread and every core), each way with every core feeding
/// it, and compares the stored values film by film: lossless syntaxes must
/// agree exactly; for lossy ones the largest difference is reported.
fn compare_jpeg2000(files: &[Vec<u8>], limits: &IngestLimits) -> anyhow::Result<serde_json::Value> {
    use cxr_ingest::accel::install_jpeg2000_decoder;
    use cxr_ingest::Decoder;
    let j2k: Vec<&Vec<u8>> = files
        .iter()
        .filter(|f| {
            dicom::read_bytes(f, limits)
                .is_ok_and(|r| matches!(r.stored.decoder, Decoder::Accelerated | Decoder::Fallback))
        })
        .collect();
    if j2k.is_empty() {
        return Ok(json!({"films": 0}));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every film at least once, and at least 64 decodes per way.
    let decodes = j2k.len().max(64);
    let run = |threads: usize| -> (f64, Vec<Option<cxr_ingest::Radiograph>>, usize) {
        let next = AtomicUsize::new(0);
        let fallbacks = AtomicUsize::new(0);
        let first: Vec<std::sync::Mutex<Option<cxr_ingest::Radiograph>>> =
            j2k.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= decodes {
                        break;
                    }
                    let k = i % j2k.len();
                    if let Ok(r) = dicom::read_bytes(j2k[k], limits) {
                        if r.stored.decoder == Decoder::Fallback {
                            fallbacks.fetch_add(1, Ordering::Relaxed);
                        }
                        if i < j2k.len() {
                            if let Ok(mut slot) = first[k].lock() {
                                *slot = Some(r);
                            }
                        }
                    }
                });
            }
        });
        let seconds = t0.elapsed().as_secs_f64();
        let first = first
            .into_iter()
            .map(|m| m.into_inner().ok().flatten())
            .collect();
        (decodes as f64 / seconds, first, fallbacks.into_inner())
    };
    let (gpu_rate, gpu, gpu_fallbacks) = run(cores);
    // OpenJPEG alone, then the GPU decoder back.
    let gpu_decoder = install_jpeg2000_decoder(None);
    let (cpu_rate, cpu, _) = run(cores);
    let (cpu_one_rate, _, _) = run(1);
    install_jpeg2000_decoder(gpu_decoder);
    let mut by_syntax: std::collections::BTreeMap<String, (usize, usize, u32)> =
        std::collections::BTreeMap::new();
    for (g, c) in gpu.iter().zip(&cpu) {
        let (Some(g), Some(c)) = (g, c) else {
            continue;
        };
        let entry = by_syntax.entry(g.transfer_syntax.clone()).or_default();
        entry.0 += 1;
        if g.stored.values == c.stored.values {
            entry.1 += 1;
        }
        let max_diff = g
            .stored
            .values
            .iter()
            .zip(&c.stored.values)
            .map(|(a, b)| (g.stored.value_of(*a) - c.stored.value_of(*b)).unsigned_abs())
            .max()
            .unwrap_or(0);
        entry.2 = entry.2.max(max_diff);
    }
    let syntaxes: Vec<serde_json::Value> = by_syntax
        .into_iter()
        .map(|(ts, (films, identical, max_abs_diff))| {
            json!({
                "transfer_syntax": ts,
                "lossless": matches!(ts.as_str(), "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202"),
                "films": films,
                "identical_to_openjpeg": identical,
                "max_abs_diff": max_abs_diff,
            })
        })
        .collect();
    Ok(json!({
        "films": j2k.len(),
        "decodes_per_way": decodes,
        "gpu_films_per_s": gpu_rate,
        "gpu_fallbacks": gpu_fallbacks,
        "cpu_films_per_s": cpu_rate,
        "cpu_threads": cores,
        "cpu_one_thread_films_per_s": cpu_one_rate,
        "by_transfer_syntax": syntaxes,
    }))
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "model {}  provider {}{}{}  device {}{}",
        r["model"].as_str().unwrap_or(""),
        r["provider"].as_str().unwrap_or(""),
        if r["fp16"].as_bool() == Some(true) {
            " fp16"
        } else {
            ""
        },
        if r["io_binding"].as_bool() == Some(true) {
            " (pinned I/O binding)"
        } else {
            ""
        },
        r["device"].as_str().unwrap_or(""),
        r["device_memory_used"]
            .as_str()
            .map(|m| format!(" ({m} in use)"))
            .unwrap_or_default()
    );
    println!(
        "{} films of {:.1} MB in memory",
        r["images"],
        f(&r["mb_per_file"])
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "stage", "images/s", "p50 ms", "p99 ms"
    );
    for (name, key) in [
        ("decode (1 thread)", "decode"),
        ("preprocess (1 thread)", "preprocess"),
    ] {
        let s = &r[key];
        println!(
            "{:<28} {:>10.1} {:>10.2} {:>10.2}",
            name,
            f(&s["images_per_s"]),
            f(&s["p50_ms"]),
            f(&s["p99_ms"])
        );
    }
    for (key, suffix) in [
        ("inference", ""),
        ("inference_without_io_binding", ", no binding"),
    ] {
        let Some(inf) = r[key].as_object() else {
            continue;
        };
        let mut sizes: Vec<(&String, &serde_json::Value)> = inf.iter().collect();
        sizes.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(0));
        for (b, s) in sizes {
            println!(
                "{:<28} {:>10.1} {:>10.2} {:>10.2}",
                format!("inference, batch {b}{suffix}"),
                f(&s["images_per_s"]),
                f(&s["p50_ms"]),
                f(&s["p99_ms"])
            );
        }
    }
    if let Some(p) = r["pipeline"].as_array() {
        for s in p {
            println!(
                "{:<28} {:>10.1} {:>10.2} {:>10.2}",
                format!("pipeline, {} workers", s["concurrency"]),
                f(&s["images_per_s"]),
                f(&s["p50_ms"]),
                f(&s["p99_ms"])
            );
        }
    }
    println!(
        "pipeline efficiency: {:.2} (best pipeline images/s ÷ inference-only images/s at batch {})",
        f(&r["pipeline_efficiency"]["ratio"]),
        r["pipeline_efficiency"]["batch"]
    );
    println!(
        "JPEG 2000 decoder: {}",
        r["jpeg2000_decoder"]["name"].as_str().unwrap_or("")
    );
    let c = &r["jpeg2000_gpu_vs_cpu"];
    if c["films"].as_u64().unwrap_or(0) > 0 {
        println!(
            "JPEG 2000 films/s (parse + decode + LUT): GPU {:.1} ({} fallbacks), CPU {:.1} on {} threads, CPU {:.1} on 1 thread",
            f(&c["gpu_films_per_s"]),
            c["gpu_fallbacks"],
            f(&c["cpu_films_per_s"]),
            c["cpu_threads"],
            f(&c["cpu_one_thread_films_per_s"])
        );
        for s in c["by_transfer_syntax"].as_array().into_iter().flatten() {
            println!(
                "  {}: {} of {} films identical to OpenJPEG, max |difference| {}",
                s["transfer_syntax"].as_str().unwrap_or(""),
                s["identical_to_openjpeg"],
                s["films"],
                s["max_abs_diff"]
            );
        }
    }
}
