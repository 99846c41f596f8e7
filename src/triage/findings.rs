//! Scores → findings: label combination, calibration, operating points, and
//! the finding's heatmap with its regions.

use serde::{Deserialize, Serialize};

use super::heatmap::{Heatmap, HeatmapSource, Region};
use crate::engine::manifest::{Combine, FindingKind, Manifest};
use crate::engine::{HeatmapShape, Inference};
use crate::preprocess::Geometry;

/// One finding of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingResult {
    /// Which finding.
    pub finding: FindingKind,
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
    kind: FindingKind,
    manifest: &Manifest,
    operating_point: Option<&str>,
    inference: &Inference,
    geometry: &Geometry,
    heatmap_shape: Option<HeatmapShape>,
    occlusion_grid: usize,
    region_level: f32,
) -> Option<FindingResult> {
    let section = manifest.findings.get(&kind)?;
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
        finding: kind,
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
    kind: FindingKind,
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
