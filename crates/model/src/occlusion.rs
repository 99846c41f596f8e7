//! Occlusion sensitivity: where a model without a heatmap output looked.
//! The input is covered patch by patch (a `grid × grid` raster of patches two
//! cells wide, filled with the image's mean) and the drop of each label's
//! probability, relative to the unoccluded one, becomes that cell's value.
//! `grid²` extra inferences per image, run in batches: cheap on a GPU,
//! costly on a CPU, hence off by default there.

use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::session::ExecutionProvider;
use super::EngineError;
use crate::preprocess::Layout;

/// When occlusion maps are computed for models without a heatmap output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcclusionMode {
    /// On when the model runs on a GPU, off on the CPU.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Occlusion settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcclusionSettings {
    /// When to compute maps.
    pub mode: OcclusionMode,
    /// Cells per side (maps are `grid × grid`; `grid²` inferences).
    pub grid: usize,
}

impl Default for OcclusionSettings {
    fn default() -> Self {
        OcclusionSettings {
            mode: OcclusionMode::Auto,
            grid: 8,
        }
    }
}

impl std::str::FromStr for OcclusionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::session::parse_name(s)
    }
}

impl OcclusionSettings {
    /// Whether a model on `provider` without its own heatmap gets maps.
    pub fn enabled_for(&self, provider: ExecutionProvider) -> bool {
        match self.mode {
            OcclusionMode::On => true,
            OcclusionMode::Off => false,
            OcclusionMode::Auto => provider != ExecutionProvider::Cpu,
        }
    }
}

/// `labels × grid × grid` maps in `[0, 1]` for one preprocessed image whose
/// unoccluded probabilities are `base`.
pub fn maps(
    backend: &mut dyn Backend,
    input: &[f32],
    base: &[f32],
    settings: &OcclusionSettings,
    max_batch: usize,
) -> Result<Vec<f32>, EngineError> {
    let spec = backend.input_spec();
    let grid = settings.grid.clamp(2, 64);
    let (w, h, c) = (
        spec.width as usize,
        spec.height as usize,
        spec.channels as usize,
    );
    let index = |x: usize, y: usize, ch: usize| match spec.layout {
        Layout::Nchw => ch * w * h + y * w + x,
        Layout::Nhwc => (y * w + x) * c + ch,
    };
    let fill: Vec<f32> = (0..c)
        .map(|ch| {
            let sum: f64 = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| f64::from(input[index(x, y, ch)]))
                .sum();
            (sum / (w * h) as f64) as f32
        })
        .collect();
    let cells: Vec<(usize, usize)> = (0..grid)
        .flat_map(|gy| (0..grid).map(move |gx| (gx, gy)))
        .collect();
    let labels = base.len();
    let mut out = vec![0.0f32; labels * grid * grid];
    for chunk in cells.chunks(max_batch.max(1)) {
        let occluded: Vec<Vec<f32>> = chunk
            .iter()
            .map(|&(gx, gy)| {
                let mut image = input.to_vec();
                let (x0, x1) = patch(gx, grid, w);
                let (y0, y1) = patch(gy, grid, h);
                for y in y0..y1 {
                    for x in x0..x1 {
                        for (ch, &v) in fill.iter().enumerate() {
                            image[index(x, y, ch)] = v;
                        }
                    }
                }
                image
            })
            .collect();
        let refs: Vec<&[f32]> = occluded.iter().map(Vec::as_slice).collect();
        let outputs = backend.predict(&refs)?;
        for (&(gx, gy), output) in chunk.iter().zip(outputs) {
            for (label, (&b, &o)) in base.iter().zip(&output.scores).enumerate() {
                let drop = if b > 1e-6 {
                    ((b - o) / b).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                out[label * grid * grid + gy * grid + gx] = drop;
            }
        }
    }
    Ok(out)
}

/// Pixel range of the patch centred on cell `g`: two cells wide.
fn patch(g: usize, grid: usize, size: usize) -> (usize, usize) {
    let cell = size as f64 / grid as f64;
    let centre = (g as f64 + 0.5) * cell;
    let lo = (centre - cell).max(0.0) as usize;
    let hi = ((centre + cell).ceil() as usize).min(size);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_two_cells_wide_and_stay_inside() {
        assert_eq!(patch(0, 8, 256), (0, 48));
        assert_eq!(patch(3, 8, 256), (80, 144));
        assert_eq!(patch(7, 8, 256), (208, 256));
    }
}
