//! Scores → findings: label combination, calibration, operating points, and
//! the finding's heatmap with its regions.

use serde::{Deserialize, Serialize};

use super::heatmap::{Heatmap, HeatmapSource, Region};
use cxr_model::manifest::{Combine, Manifest};
use cxr_model::preprocess::Geometry;
use cxr_model::{Engine, FindingId, HeatmapShape, Inference, Inferred, Provenance, StageTimes};

/// One finding of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingResult {
    /// Which finding.
    pub finding: FindingId,
    /// Its name for people (from the manifest).
    pub display_name: String,
    /// Its standard code, when the manifest gives one.
    pub code: Option<cxr_model::FindingCode>,
    /// Combined label probability, before calibration.
    pub raw_score: f32,
    /// Calibrated probability; thresholds apply to this.
    pub score: f32,
    /// The operating point in use (the site's choice or the model's default).
    pub operating_point: String,
    /// Its threshold.
    pub threshold: f64,
    /// `score ≥ threshold`.
    pub positive: bool,
    /// Every operating point of the model, with its verdict.
    pub operating_points: Vec<OperatingPointResult>,
    /// Where the model looked, on the image's pixels (when it has a heatmap
    /// output or occlusion was computed).
    pub heatmap: Option<Heatmap>,
    /// Connected areas of the heatmap at or above the region level.
    pub regions: Vec<Region>,
}

/// Every finding of one image, with the models that produced them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// One per finding the loaded models provide, in [`FindingId`] order.
    pub findings: Vec<FindingResult>,
    /// Which models produced them.
    pub provenance: Vec<Provenance>,
    /// Stage times.
    pub timings: StageTimes,
}

/// Turns every model's raw answer for one image into findings: each
/// finding from the model the engine assigned it to, calibrated, at every
/// operating point, with its heatmap and regions on the image's pixels.
pub fn assess(engine: &Engine, inferred: &Inferred) -> Analysis {
    let mut findings = Vec::new();
    let mut provenance = Vec::new();
    for run in &inferred.runs {
        let Some(model) = engine.loaded().get(run.model) else {
            continue;
        };
        let info = model.info();
        for kind in &info.findings {
            let op = info.operating_points.get(kind).map(String::as_str);
            findings.extend(finding_result(
                kind,
                model.manifest(),
                op,
                &run.inference,
                &run.geometry,
                model.heatmap_shape(),
                engine.occlusion_grid(),
                engine.region_level(),
            ));
        }
        provenance.push(Provenance {
            model_id: info.id.clone(),
            model_version: info.version.clone(),
            provider: info.provider,
            batch_size: run.inference.batch_size,
        });
    }
    findings.sort_by(|a, b| a.finding.cmp(&b.finding));
    Analysis {
        findings,
        provenance,
        timings: inferred.timings(),
    }
}

/// One operating point's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPointResult {
    /// Name, e.g. `screening`.
    pub name: String,
    /// Threshold on the calibrated score.
    pub threshold: f64,
    /// `score ≥ threshold`.
    pub positive: bool,
}

/// The finding `kind` from one image's inference. `operating_point` picks
/// the threshold in use (validated at start-up; the model's default when
/// `None`). Regions are taken at `region_level` on the heatmap.
#[allow(clippy::too_many_arguments)]
pub fn finding_result(
    kind: &FindingId,
    manifest: &Manifest,
    operating_point: Option<&str>,
    inference: &Inference,
    geometry: &Geometry,
    heatmap_shape: Option<HeatmapShape>,
    occlusion_grid: usize,
    region_level: f32,
) -> Option<FindingResult> {
    let section = manifest.findings.get(kind)?;
    let scores = &inference.output.scores;
    let labels = manifest.label_indices(kind);
    let raw = combine(section.combine, labels.iter().map(|&i| scores[i]));
    let score = section.calibration.apply(f64::from(raw)) as f32;
    let op_name = operating_point.unwrap_or(&section.default_operating_point);
    let threshold = section
        .operating_points
        .get(op_name)
        .copied()
        .unwrap_or(section.operating_points[&section.default_operating_point]);
    let operating_points = section
        .operating_points
        .iter()
        .map(|(name, &t)| OperatingPointResult {
            name: name.clone(),
            threshold: t,
            positive: f64::from(score) >= t,
        })
        .collect();
    let heatmap = finding_heatmap(
        kind,
        manifest,
        inference,
        geometry,
        heatmap_shape,
        occlusion_grid,
        section.combine,
    );
    let regions = heatmap
        .as_ref()
        .map(|h| h.regions(region_level))
        .unwrap_or_default();
    Some(FindingResult {
        finding: kind.clone(),
        display_name: section
            .display_name
            .clone()
            .unwrap_or_else(|| kind.default_display_name()),
        code: section.code.clone(),
        raw_score: raw,
        score,
        operating_point: op_name.to_string(),
        threshold,
        positive: f64::from(score) >= threshold,
        operating_points,
        heatmap,
        regions,
    })
}

fn combine(how: Combine, values: impl Iterator<Item = f32>) -> f32 {
    let values: Vec<f32> = values.collect();
    match how {
        Combine::Max => values.iter().copied().fold(0.0, f32::max),
        Combine::Mean => values.iter().sum::<f32>() / values.len().max(1) as f32,
    }
}

/// The finding's map: its labels' maps combined cell by cell.
fn finding_heatmap(
    kind: &FindingId,
    manifest: &Manifest,
    inference: &Inference,
    geometry: &Geometry,
    heatmap_shape: Option<HeatmapShape>,
    occlusion_grid: usize,
    how: Combine,
) -> Option<Heatmap> {
    let (maps, indices, width, height, source) = match (
        &inference.output.heatmaps,
        heatmap_shape,
        &inference.occlusion,
    ) {
        (Some(maps), Some(shape), _) => (
            maps,
            manifest.heatmap_indices(kind),
            shape.width,
            shape.height,
            HeatmapSource::Model,
        ),
        (None, _, Some(maps)) => (
            maps,
            manifest.label_indices(kind),
            occlusion_grid,
            occlusion_grid,
            HeatmapSource::Occlusion,
        ),
        _ => return None,
    };
    if indices.is_empty() {
        return None;
    }
    let plane = width * height;
    let values = (0..plane)
        .map(|cell| combine(how, indices.iter().map(|&m| maps[m * plane + cell])))
        .collect();
    Some(Heatmap {
        grid_width: width,
        grid_height: height,
        values,
        geometry: *geometry,
        source,
    })
}
