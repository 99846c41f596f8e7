//! JPEG 2000 decoded at a reduced resolution level (`[decode]
//! jpeg2000_reduce = "auto"`) through the one analysis path, against the
//! exact path, on NEMA's RG1 chest CR in JPEG 2000 lossless, lossy and
//! HTJ2K: the image is read two levels down (461 × 489 instead of
//! 1841 × 1955), scores move by little, and heatmaps, their peaks and the
//! regions stay on the film's own pixels — so the SR coordinates and
//! overlays do not move.

use std::path::PathBuf;
use std::sync::Arc;

use cxr_ingest::IngestLimits;
use cxr_model::{Engine, EngineConfig, ProviderChoice, SessionSettings};
use cxr_pipeline::jpeg2000::Jpeg2000Reduce;
use cxr_pipeline::Analyzer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reduced_jpeg2000_scores_close_and_keeps_heatmaps_on_the_film() {
    let engine = Arc::new(
        Engine::load(&EngineConfig {
            models_dir: root().join("models"),
            session: SessionSettings {
                provider: ProviderChoice::Cpu,
                ..SessionSettings::default()
            },
            ..EngineConfig::default()
        })
        .expect("the reference model"),
    );
    let exact = Analyzer::new(
        Arc::clone(&engine),
        Default::default(),
        IngestLimits::default(),
    );
    let reduced = Analyzer::new(engine, Default::default(), IngestLimits::default())
        .reducing_jpeg2000(Jpeg2000Reduce::Auto);
    assert_eq!(reduced.limits().jpeg2000_reduce_to, Some(512), "2 × 256");
    for name in ["RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_HTJ2KL.dcm"] {
        let bytes = std::fs::read(root().join("test-images/generated").join(name)).unwrap();
        let a = exact.analyze_blocking(&bytes, false).unwrap();
        let b = reduced.analyze_blocking(&bytes, false).unwrap();
        assert!(a.reason.is_none() && b.reason.is_none(), "{name}");
        assert_eq!(a.image_size, Some((1841, 1955)));
        assert_eq!(b.image_size, a.image_size, "{name}: the film's own size");
        for (fa, fb) in a.findings.iter().zip(&b.findings) {
            let (ha, hb) = (fa.heatmap.as_ref().unwrap(), fb.heatmap.as_ref().unwrap());
            assert_eq!(
                (hb.geometry.image_width, hb.geometry.image_height),
                (1841, 1955),
                "{name}: heatmap geometry in the film's pixels"
            );
            let d_score = (fa.score - fb.score).abs();
            let (pa, pb) = (ha.peak().unwrap(), hb.peak().unwrap());
            let shift = ((pa.x - pb.x).powi(2) + (pa.y - pb.y).powi(2)).sqrt();
            eprintln!(
                "{name} {}: |Δscore| {d_score:.4}, peak shift {shift:.1} px of 1841",
                fa.finding
            );
            assert!(d_score < 0.05, "{name} {}: |Δscore| {d_score}", fa.finding);
            // One heatmap cell of the reference model is 8 input pixels,
            // about 57 film pixels; without the geometry in the film's
            // pixels the peak would land at a quarter of its coordinates.
            assert!(
                shift < 120.0,
                "{name} {}: peak moved {shift} px",
                fa.finding
            );
            for r in &fb.regions {
                assert!(r.bbox[2] <= 1841 && r.bbox[3] <= 1955, "{:?}", r.bbox);
            }
        }
    }
}
