//! The engine on real ONNX Runtime with hand-written graphs whose outputs
//! are known exactly (tests/data/models/make_models.py): heatmap geometry,
//! layouts and activations, batching, abandoned requests, overload, CPU
//! fallback, and manifest/graph errors found at load.

#[allow(unused_imports)]
use crate::AnalyzeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cxr_ingest::GreyImage;
use cxr_model::{
    BatchSettings, Engine, EngineConfig, EngineError, ExecutionProvider, FindingId, OcclusionMode,
    OcclusionSettings, ProviderChoice, SessionSettings,
};

fn models() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/data/models")
}

fn config(dir: PathBuf) -> EngineConfig {
    EngineConfig {
        models_dir: dir,
        session: SessionSettings {
            provider: ProviderChoice::Cpu,
            intra_threads: 1,
            ..SessionSettings::default()
        },
        ..EngineConfig::default()
    }
}

/// A black image with a white square `[x0, x0 + side) × [y0, y0 + side)`.
fn spot_image(w: u32, h: u32, x0: u32, y0: u32, side: u32) -> GreyImage {
    let mut pixels = vec![0u16; (w * h) as usize];
    for y in y0..(y0 + side).min(h) {
        for x in x0..(x0 + side).min(w) {
            pixels[(y * w + x) as usize] = 65535;
        }
    }
    GreyImage {
        width: w,
        height: h,
        pixels,
    }
}

/// Deterministic noise plus a spot, so scores differ between images.
fn noisy_image(seed: u32) -> GreyImage {
    let mut image = spot_image(300, 400, 40 + seed * 7, 60 + seed * 11, 50);
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    for p in &mut image.pixels {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *p = p.saturating_add((state % 20000) as u16);
    }
    image
}

#[test]
fn a_bright_spot_is_found_where_it_is_for_any_size_and_aspect_ratio() {
    let engine = Engine::load(&config(models())).unwrap();
    let cases = [
        (512, 512, 300, 100),
        (1000, 700, 100, 500),
        (600, 1400, 420, 1100),
        (2000, 1600, 1500, 200),
        (1841, 1955, 900, 950),
    ];
    for (w, h, x0, y0) in cases {
        let side = w.max(h) / 4;
        let image = spot_image(w, h, x0, y0, side);
        let analysis = engine.analyze_blocking(&image).unwrap();
        assert_eq!(analysis.findings.len(), 2);
        for finding in &analysis.findings {
            assert!(finding.positive, "{w}x{h}: {finding:?}");
            let heatmap = finding.heatmap.as_ref().expect("spot model has a heatmap");
            let peak = heatmap.peak().unwrap();
            let inside = |x: f64, y: f64| {
                (f64::from(x0)..f64::from(x0 + side)).contains(&x)
                    && (f64::from(y0)..f64::from(y0 + side)).contains(&y)
            };
            assert!(
                inside(peak.x, peak.y),
                "{w}x{h}: peak {peak:?} outside the spot at ({x0},{y0}) side {side}"
            );
            let region = &finding.regions[0];
            let [rx0, ry0, rx1, ry1] = region.bbox;
            let (cx, cy) = (x0 + side / 2, y0 + side / 2);
            assert!(
                rx0 <= cx && cx < rx1 && ry0 <= cy && cy < ry1,
                "{w}x{h}: region {region:?}"
            );
            assert!(
                rx1 - rx0 <= 2 * side + side / 2,
                "{w}x{h}: region too wide {region:?}"
            );
            // The overlay at a downscaled size is hottest on the spot too.
            let map = heatmap.render(w / 10, h / 10);
            let best = map
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            let (bx, by) = ((best % (w / 10)) * 10 + 5, (best / (w / 10)) * 10 + 5);
            assert!(
                inside(f64::from(bx), f64::from(by))
                    || (peak.x - f64::from(bx)).abs() < f64::from(side),
                "{w}x{h}: overlay peak ({bx},{by})"
            );
        }
    }
}

#[test]
fn a_dark_image_is_negative_with_no_region() {
    let engine = Engine::load(&config(models())).unwrap();
    let analysis = engine
        .analyze_blocking(&spot_image(800, 600, 0, 0, 0))
        .unwrap();
    for f in &analysis.findings {
        assert!(!f.positive && f.score == 0.0, "{f:?}");
        assert!(f.regions.is_empty());
        assert!(f.operating_points.iter().all(|op| !op.positive));
    }
    let p = &analysis.provenance[0];
    assert_eq!(
        (p.model_id.as_str(), p.model_version.as_str()),
        ("test-spot", "1")
    );
    assert_eq!(p.provider, ExecutionProvider::Cpu);
}

#[test]
fn concurrent_requests_share_batches_and_match_one_by_one() {
    let images: Vec<GreyImage> = (0..16).map(noisy_image).collect();
    let single = Engine::load(&EngineConfig {
        batch: BatchSettings {
            max_batch: 1,
            max_delay_ms: 0,
            queue_capacity: 64,
            ..BatchSettings::default()
        },
        ..config(models())
    })
    .unwrap();
    let alone: Vec<_> = images
        .iter()
        .map(|i| single.analyze_blocking(i).unwrap())
        .collect();
    assert_eq!(single.batch_stats(0).unwrap().runs(), 16);

    let batched = Engine::load(&EngineConfig {
        batch: BatchSettings {
            max_batch: 8,
            max_delay_ms: 200,
            queue_capacity: 64,
            ..BatchSettings::default()
        },
        ..config(models())
    })
    .unwrap();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = images
            .iter()
            .map(|i| s.spawn(|| batched.analyze_blocking(i).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = batched.batch_stats(0).unwrap();
    assert_eq!(stats.images(), 16);
    assert!(
        stats.runs() < 16,
        "16 concurrent requests took {} runs",
        stats.runs()
    );
    assert!(together.iter().any(|a| a.provenance[0].batch_size > 1));
    for (a, b) in alone.iter().zip(&together) {
        for (fa, fb) in a.findings.iter().zip(&b.findings) {
            assert!((fa.score - fb.score).abs() <= 1e-5);
            let (ha, hb) = (fa.heatmap.as_ref().unwrap(), fb.heatmap.as_ref().unwrap());
            for (va, vb) in ha.values.iter().zip(&hb.values) {
                assert!((va - vb).abs() <= 1e-5);
            }
        }
    }
}

#[test]
fn an_answer_later_than_the_deadline_is_an_error_not_a_wait() {
    // The batcher waits 300 ms for a batch to fill; the deadline is 20 ms.
    let engine = Engine::load(&EngineConfig {
        batch: BatchSettings {
            max_batch: 8,
            max_delay_ms: 300,
            queue_capacity: 8,
            deadline_ms: 20,
        },
        ..config(models())
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let outcome = runtime.block_on(engine.infer(engine.prepare(&noisy_image(3))));
    assert!(
        matches!(outcome, Err(cxr_model::EngineError::DeadlineExceeded(20))),
        "{outcome:?}"
    );
}

#[test]
fn a_request_whose_caller_left_is_skipped_not_computed() {
    let engine = Engine::load(&EngineConfig {
        batch: BatchSettings {
            max_batch: 8,
            max_delay_ms: 300,
            queue_capacity: 8,
            ..BatchSettings::default()
        },
        ..config(models())
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let prepared = engine.prepare(&noisy_image(1));
    let outcome = runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), engine.infer(prepared)).await
    });
    assert!(outcome.is_err(), "the caller gave up after 20 ms");
    std::thread::sleep(Duration::from_millis(500));
    let stats = engine.batch_stats(0).unwrap();
    assert_eq!((stats.skipped(), stats.runs()), (1, 0));
    // The engine still serves the next caller.
    assert!(engine.analyze_blocking(&noisy_image(2)).is_ok());
}

#[test]
fn a_full_queue_refuses_at_once_and_accepted_requests_complete() {
    // Occlusion on a 64×64 grid makes each request 4,097 inferences: the
    // batcher is busy long enough for the queue (capacity 1) to fill.
    let engine = Arc::new(
        Engine::load(&EngineConfig {
            batch: BatchSettings {
                max_batch: 1,
                max_delay_ms: 0,
                queue_capacity: 1,
                ..BatchSettings::default()
            },
            occlusion: OcclusionSettings {
                mode: OcclusionMode::On,
                grid: 64,
            },
            ..config(models().join("nhwc"))
        })
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let engine = Arc::clone(&engine);
            let prepared = engine.prepare(&noisy_image(i));
            tasks.spawn(async move { engine.infer(prepared).await });
        }
        tasks.join_all().await
    });
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EngineError::Overloaded)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded >= 1, "no request was refused");
    assert_eq!(ok + overloaded, 6, "{results:?}");
    assert!(ok >= 1);
}

#[test]
fn nhwc_rgb_centre_crop_sigmoid_and_occlusion_maps() {
    let engine = Engine::load(&EngineConfig {
        occlusion: OcclusionSettings {
            mode: OcclusionMode::On,
            grid: 8,
        },
        ..config(models().join("nhwc"))
    })
    .unwrap();
    let info: Vec<_> = engine.models().collect();
    assert_eq!(info[0].heatmap, cxr_model::HeatmapSource::Occlusion);
    // Landscape 1200×600: centre crop keeps x in [300, 900).
    let image = spot_image(1200, 600, 650, 100, 120);
    let analysis = engine.analyze_blocking(&image).unwrap();
    let tb = &analysis.findings[0];
    assert_eq!(tb.finding, FindingId::tuberculosis());
    // The brightest 6×6 block (model px) is fully white → logit 10 × 0.5.
    let expected = 1.0 / (1.0 + (-5.0f32).exp());
    assert!((tb.raw_score - expected).abs() < 1e-4, "{}", tb.raw_score);
    let heatmap = tb.heatmap.as_ref().unwrap();
    let peak = heatmap.peak().unwrap();
    assert!(
        (600.0..800.0).contains(&peak.x) && (40.0..260.0).contains(&peak.y),
        "{peak:?}"
    );
    // `combine = "mean"` of two equal labels is the same score.
    assert!((analysis.findings[1].raw_score - tb.raw_score).abs() < 1e-6);
    // A spot in the cropped-away margin is not seen.
    let outside = engine
        .analyze_blocking(&spot_image(1200, 600, 20, 100, 120))
        .unwrap();
    assert!(
        outside.findings[0].score < 0.01,
        "{}",
        outside.findings[0].score
    );
}

#[test]
fn asking_for_cuda_without_a_gpu_runs_on_the_cpu_and_says_why() {
    for choice in [
        ProviderChoice::Cuda,
        ProviderChoice::Auto,
        ProviderChoice::Tensorrt,
    ] {
        let engine = Engine::load(&EngineConfig {
            session: SessionSettings {
                provider: choice,
                ..SessionSettings::default()
            },
            ..config(models())
        })
        .unwrap();
        let info = engine.models().next().unwrap();
        if info.provider != ExecutionProvider::Cpu {
            // A GPU machine with a CUDA-enabled runtime: nothing to fall back from.
            continue;
        }
        let cause = info.fallback_cause.as_deref().expect("a cause is reported");
        let asked = if choice == ProviderChoice::Tensorrt {
            "tensorrt"
        } else {
            "cuda"
        };
        assert!(cause.contains(asked), "{choice:?}: {cause}");
        let analysis = engine.analyze_blocking(&noisy_image(3)).unwrap();
        assert_eq!(analysis.provenance[0].provider, ExecutionProvider::Cpu);
    }
}

/// Copies the spot model into a temp dir with a modified manifest.
fn broken(edit: impl Fn(String) -> String) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(models().join("spot.onnx"), dir.path().join("spot.onnx")).unwrap();
    let text = edit(std::fs::read_to_string(models().join("spot.toml")).unwrap());
    std::fs::write(dir.path().join("spot.toml"), text).unwrap();
    let err = Engine::load(&config(dir.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    (dir, err)
}

#[test]
fn manifest_and_graph_mismatches_fail_at_load_naming_file_and_field() {
    // (text to replace, replacement, expected in the error)
    let cases = [
        (
            "tensor = \"image\"",
            "tensor = \"input\"",
            "input.tensor = `input`",
        ),
        ("width = 64", "width = 128", "input.tensor shape"),
        (
            "layout = \"NCHW\"",
            "layout = \"NHWC\"",
            "input.tensor shape",
        ),
        (
            "labels = [\"spot_a\", \"spot_b\"]\n\n[heatmap]",
            "labels = [\"spot_a\", \"spot_b\", \"c\"]\n\n[heatmap]",
            "output.tensor shape",
        ),
        (
            "tensor = \"maps\"",
            "tensor = \"cam\"",
            "heatmap.tensor = `cam` is not an output",
        ),
        (
            "tensor = \"scores\"",
            "tensor = \"logits\"",
            "output.tensor = `logits`",
        ),
        (
            "[model]",
            "[model]\nfile = \"missing.onnx\"",
            "missing.onnx not found",
        ),
        (
            "screening = 0.5, high",
            "screening = -0.5, high",
            "findings.tuberculosis.operating_points.screening",
        ),
        (
            "interpolation = \"area\"",
            "interpolation = \"cubic\"",
            "cubic",
        ),
    ];
    for (from, to, expected) in cases {
        let (dir, err) = broken(|t| t.replace(from, to));
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
        assert!(
            err.contains(&dir.path().join("spot.toml").display().to_string()),
            "no file in: {err}"
        );
    }
}

#[test]
fn a_site_operating_point_must_exist_and_is_used() {
    let mut cfg = config(models());
    cfg.operating_points
        .insert(FindingId::tuberculosis(), "high_specificity".into());
    let engine = Engine::load(&cfg).unwrap();
    // Spot brightness 0.7 overall: positive at screening (0.5), not at 0.9.
    let mut image = spot_image(640, 640, 100, 100, 160);
    for p in &mut image.pixels {
        *p = (f32::from(*p) * 0.7) as u16;
    }
    let analysis = engine.analyze_blocking(&image).unwrap();
    let tb = &analysis.findings[0];
    assert_eq!(
        (tb.operating_point.as_str(), tb.threshold),
        ("high_specificity", 0.9)
    );
    assert!(!tb.positive);
    assert!(tb
        .operating_points
        .iter()
        .any(|op| op.name == "screening" && op.positive));

    cfg.operating_points
        .insert(FindingId::tuberculosis(), "rule_out".into());
    let err = Engine::load(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("rule_out") && err.contains("high_specificity"),
        "{err}"
    );
}
