//! The bundled reference model (models/cxr-reference-v1), through the real
//! pipeline — synthetic DICOM → ingest → preprocess → ONNX Runtime → triage —
//! on a held-out set of 600 films drawn with a seed and image shapes it was not trained
//! on: ROC AUC ≥ 0.95 per finding, and for positive images the heatmap peak
//! lands inside the true lesion box for ≥ 90 % of them. Nodules are drawn
//! at the contrast the model card states (`nodule_contrast` 3).

#[allow(unused_imports)]
use crate::AnalyzeExt;
use std::path::Path;

use cxr_ingest::{read_bytes, IngestLimits};
use cxr_model::{Engine, EngineConfig, FindingId, ProviderChoice, SessionSettings};
use cxr_synth::{
    dicom_bytes, generate_case, CaseSpec, FindingKind as TruthKind, ModalityChoice, OutputSyntax,
    PhotometricChoice,
};
use rayon::prelude::*;

/// Seed of the held-out set (training used 1001–1003, validation 2001).
const SEED: u64 = 4242;

struct Scored {
    scores: [f32; 2],
    labels: [bool; 2],
    /// Per finding: `None` when the image has no box of that finding, else
    /// whether the heatmap peak fell in one.
    hit: [Option<bool>; 2],
}

fn auc(pairs: &[(f32, bool)]) -> f64 {
    let pos: Vec<f32> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    let neg: Vec<f32> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

#[test]
fn reference_model_meets_its_card_on_held_out_synthetic_radiographs() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let engine = Engine::load(&EngineConfig {
        models_dir: root.join("models"),
        session: SessionSettings {
            provider: ProviderChoice::Cpu,
            ..SessionSettings::default()
        },
        ..EngineConfig::default()
    })
    .expect("reference model loads");
    let info = engine.models().next().unwrap();
    assert_eq!(info.id, "cxr-reference-v1");
    assert_eq!(info.heatmap, cxr_model::HeatmapSource::Model);

    let shapes = [(512, 512), (480, 600), (576, 448)];
    let scored: Vec<Scored> = (0..600u64)
        .into_par_iter()
        .map(|i| {
            let spec = CaseSpec {
                size: Some(shapes[(i % 3) as usize]),
                modality: ModalityChoice::Mixed,
                photometric: PhotometricChoice::Mixed,
                bits: None,
                nodule_contrast: 3.0,
                ..CaseSpec::default()
            };
            let case = generate_case(&spec, SEED, i + 1).expect("case");
            let bytes = dicom_bytes(&case, OutputSyntax::ExplicitLe).expect("dicom");
            let radiograph = read_bytes(&bytes, &IngestLimits::default()).expect("ingest");
            assert!(radiograph.assessment.analyzable);
            let analysis = engine
                .analyze_blocking(&radiograph.image)
                .expect("analysis");
            let mut out = Scored {
                scores: [0.0; 2],
                labels: [
                    case.truth.labels.tuberculosis,
                    case.truth.labels.malignant_nodule,
                ],
                hit: [None; 2],
            };
            for f in &analysis.findings {
                let k = match f.finding.as_str() {
                    FindingId::TUBERCULOSIS => 0,
                    FindingId::MALIGNANT_NODULE => 1,
                    other => panic!("the reference model has no finding {other}"),
                };
                out.scores[k] = f.score;
                let boxes: Vec<[u32; 4]> = case
                    .truth
                    .findings
                    .iter()
                    .filter(|t| match (k, t.kind) {
                        (0, TruthKind::Tb) => true,
                        (1, TruthKind::Nodule) => t.nodule.is_some_and(|n| n.malignant_looking),
                        _ => false,
                    })
                    .map(|t| t.bbox)
                    .collect();
                if !boxes.is_empty() {
                    let peak = f.heatmap.as_ref().and_then(|h| h.peak()).expect("heatmap");
                    out.hit[k] = Some(boxes.iter().any(|b| {
                        (f64::from(b[0])..f64::from(b[2])).contains(&peak.x)
                            && (f64::from(b[1])..f64::from(b[3])).contains(&peak.y)
                    }));
                }
            }
            out
        })
        .collect();

    for (k, name) in ["tuberculosis", "malignant_nodule"].iter().enumerate() {
        let pairs: Vec<(f32, bool)> = scored.iter().map(|s| (s.scores[k], s.labels[k])).collect();
        let positives = pairs.iter().filter(|p| p.1).count();
        assert!(
            positives >= 20,
            "{name}: only {positives} positives in the held-out set"
        );
        let area = auc(&pairs);
        let hits: Vec<bool> = scored.iter().filter_map(|s| s.hit[k]).collect();
        let share = hits.iter().filter(|h| **h).count() as f64 / hits.len() as f64;
        eprintln!(
            "{name}: AUC {area:.3} ({positives} positives); peak in box {share:.3} of {}",
            hits.len()
        );
        assert!(area >= 0.95, "{name}: AUC {area:.3} < 0.95");
        let floor = 0.90;
        assert!(
            share >= floor,
            "{name}: heatmap peak in the lesion box for {share:.3} < {floor}"
        );
    }
}

#[test]
fn the_bundled_manifests_parse() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for m in [
        "models/cxr-reference-v1.toml",
        "models/torchxrayvision/xrv-densenet121-all.toml",
        "models/bench/densenet121-bench.toml",
    ] {
        let manifest = cxr_model::Manifest::load(&root.join(m)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            manifest
                .findings
                .contains_key(&FindingId::malignant_nodule()),
            "{m}"
        );
    }
}
