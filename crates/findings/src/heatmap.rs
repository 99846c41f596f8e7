//! Heatmaps in image coordinates: a model's (or occlusion's) grid over the
//! model input, mapped back through the preprocessing [`Geometry`] so that
//! peaks, regions and overlays land on the original image's pixels.

use serde::{Deserialize, Serialize};

use cxr_model::preprocess::Geometry;
pub use cxr_model::HeatmapSource;

/// A grid of values in `[0, 1]` covering the model input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// Grid columns.
    pub grid_width: usize,
    /// Grid rows.
    pub grid_height: usize,
    /// Row-major values in `[0, 1]`.
    pub values: Vec<f32>,
    /// Image ↔ model-input mapping of the image it belongs to.
    pub geometry: Geometry,
    /// Model output or occlusion.
    pub source: HeatmapSource,
}

/// The hottest point of a heatmap or region, in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Column (continuous; pixel `i` covers `[i, i + 1)`).
    pub x: f64,
    /// Row.
    pub y: f64,
    /// Heatmap value there.
    pub value: f32,
}

/// A connected area of the heatmap at or above a level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// `[x0, y0, x1, y1]` in image pixels, half-open, clamped to the image.
    pub bbox: [u32; 4],
    /// Its hottest point.
    pub peak: Peak,
    /// Grid cells in it.
    pub cells: usize,
}

impl Heatmap {
    /// Model-input size of one grid cell.
    fn cell(&self) -> (f64, f64) {
        (
            f64::from(self.geometry.model_width) / self.grid_width as f64,
            f64::from(self.geometry.model_height) / self.grid_height as f64,
        )
    }

    /// Whether grid cell `(gx, gy)`'s centre lies on the image (not on
    /// letterbox padding).
    fn on_image(&self, gx: usize, gy: usize) -> bool {
        let (cw, ch) = self.cell();
        let (x, y) = self
            .geometry
            .to_image((gx as f64 + 0.5) * cw, (gy as f64 + 0.5) * ch);
        x >= 0.0
            && y >= 0.0
            && x < f64::from(self.geometry.image_width)
            && y < f64::from(self.geometry.image_height)
    }

    fn value(&self, gx: usize, gy: usize) -> f32 {
        if self.on_image(gx, gy) {
            self.values[gy * self.grid_width + gx]
        } else {
            0.0
        }
    }

    /// The heatmap value at image point `(x, y)` (bilinear between cell
    /// centres; 0 outside the model input).
    pub fn at_image(&self, x: f64, y: f64) -> f32 {
        let (mx, my) = self.geometry.to_model(x, y);
        let (mw, mh) = (
            f64::from(self.geometry.model_width),
            f64::from(self.geometry.model_height),
        );
        if !(0.0..mw).contains(&mx) || !(0.0..mh).contains(&my) {
            return 0.0;
        }
        let (cw, ch) = self.cell();
        let gx = (mx / cw - 0.5).clamp(0.0, (self.grid_width - 1) as f64);
        let gy = (my / ch - 0.5).clamp(0.0, (self.grid_height - 1) as f64);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let (x1, y1) = (
            (x0 + 1).min(self.grid_width - 1),
            (y0 + 1).min(self.grid_height - 1),
        );
        let (tx, ty) = ((gx - x0 as f64) as f32, (gy - y0 as f64) as f32);
        let v = |x: usize, y: usize| self.values[y * self.grid_width + x];
        let top = v(x0, y0) * (1.0 - tx) + v(x1, y0) * tx;
        let bottom = v(x0, y1) * (1.0 - tx) + v(x1, y1) * tx;
        top * (1.0 - ty) + bottom * ty
    }

    /// The heatmap over the whole image at `width × height` (a downscaled
    /// copy's size), row-major, for overlays.
    pub fn render(&self, width: u32, height: u32) -> Vec<f32> {
        let sx = f64::from(self.geometry.image_width) / f64::from(width.max(1));
        let sy = f64::from(self.geometry.image_height) / f64::from(height.max(1));
        (0..height)
            .flat_map(|j| (0..width).map(move |i| (i, j)))
            .map(|(i, j)| self.at_image((f64::from(i) + 0.5) * sx, (f64::from(j) + 0.5) * sy))
            .collect()
    }

    /// The hottest point on the image, refined below cell size by the
    /// weighted centroid of its 3 × 3 neighbourhood.
    pub fn peak(&self) -> Option<Peak> {
        let cells = (0..self.grid_height).flat_map(|y| (0..self.grid_width).map(move |x| (x, y)));
        let best = cells
            .filter(|&(x, y)| self.on_image(x, y))
            .max_by(|a, b| self.value(a.0, a.1).total_cmp(&self.value(b.0, b.1)))?;
        Some(self.refined_peak(best))
    }

    fn refined_peak(&self, (bx, by): (usize, usize)) -> Peak {
        let mut neighbourhood = Vec::with_capacity(9);
        for y in by.saturating_sub(1)..=(by + 1).min(self.grid_height - 1) {
            for x in bx.saturating_sub(1)..=(bx + 1).min(self.grid_width - 1) {
                neighbourhood.push((x, y, self.value(x, y)));
            }
        }
        let floor = neighbourhood
            .iter()
            .map(|n| n.2)
            .fold(f32::INFINITY, f32::min);
        let (mut sx, mut sy, mut sw) = (0.0f64, 0.0f64, 0.0f64);
        for &(x, y, v) in &neighbourhood {
            let w = f64::from(v - floor);
            sx += w * (x as f64 + 0.5);
            sy += w * (y as f64 + 0.5);
            sw += w;
        }
        let (gx, gy) = if sw > 0.0 {
            (sx / sw, sy / sw)
        } else {
            (bx as f64 + 0.5, by as f64 + 0.5)
        };
        let (cw, ch) = self.cell();
        let (x, y) = self.geometry.to_image(gx * cw, gy * ch);
        Peak {
            x: x.clamp(0.0, f64::from(self.geometry.image_width) - 0.5),
            y: y.clamp(0.0, f64::from(self.geometry.image_height) - 0.5),
            value: self.value(bx, by),
        }
    }

    /// Connected areas (8-neighbour) of cells at or above `level`, hottest
    /// first, with boxes in image pixels.
    pub fn regions(&self, level: f32) -> Vec<Region> {
        let (gw, gh) = (self.grid_width, self.grid_height);
        let mut label = vec![usize::MAX; gw * gh];
        let mut regions = Vec::new();
        for start in 0..gw * gh {
            let (sx, sy) = (start % gw, start / gw);
            if label[start] != usize::MAX || self.value(sx, sy) < level {
                continue;
            }
            let id = regions.len();
            label[start] = id;
            let mut stack = vec![(sx, sy)];
            let (mut x0, mut y0, mut x1, mut y1) = (sx, sy, sx, sy);
            let mut best = (sx, sy);
            let mut cells = 0;
            while let Some((x, y)) = stack.pop() {
                cells += 1;
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                if self.value(x, y) > self.value(best.0, best.1) {
                    best = (x, y);
                }
                for ny in y.saturating_sub(1)..=(y + 1).min(gh - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(gw - 1) {
                        let i = ny * gw + nx;
                        if label[i] == usize::MAX && self.value(nx, ny) >= level {
                            label[i] = id;
                            stack.push((nx, ny));
                        }
                    }
                }
            }
            let (cw, ch) = self.cell();
            let model_box = [
                x0 as f64 * cw,
                y0 as f64 * ch,
                (x1 + 1) as f64 * cw,
                (y1 + 1) as f64 * ch,
            ];
            regions.push(Region {
                bbox: self.geometry.box_to_image(model_box),
                peak: self.refined_peak(best),
                cells,
            });
        }
        regions.sort_by(|a, b| b.peak.value.total_cmp(&a.peak.value));
        regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxr_model::preprocess::ResizeMode;

    /// An 8×8 grid over a 64×64 model input with one hot cell at (gx, gy).
    fn hot(image: (u32, u32), mode: ResizeMode, gx: usize, gy: usize) -> Heatmap {
        let mut values = vec![0.0; 64];
        values[gy * 8 + gx] = 1.0;
        Heatmap {
            grid_width: 8,
            grid_height: 8,
            values,
            geometry: Geometry::fit(image.0, image.1, 64, 64, mode),
            source: HeatmapSource::Model,
        }
    }

    #[test]
    fn the_peak_of_a_letterboxed_tall_image_maps_back_to_its_pixels() {
        // 500×1000 image → scale 0.064, x offset 16 model px (2 cells).
        let h = hot((500, 1000), ResizeMode::Letterbox, 4, 2);
        let p = h.peak().unwrap();
        // Cell (4, 2) centre is model (36, 20) → image (312.5, 312.5).
        assert!(
            (p.x - 312.5).abs() < 1e-6 && (p.y - 312.5).abs() < 1e-6,
            "{p:?}"
        );
        assert_eq!(p.value, 1.0);
        let r = h.regions(0.5);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].bbox, [250, 250, 375, 375]);
    }

    #[test]
    fn padding_cells_never_win_the_peak() {
        let mut h = hot((500, 1000), ResizeMode::Letterbox, 4, 4);
        h.values[0] = 5.0; // cell (0, 0) lies on the left padding
        assert!((h.peak().unwrap().x - 312.5).abs() < 1e-6);
        assert!(h.regions(0.5).iter().all(|r| r.bbox[2] > r.bbox[0]));
    }

    #[test]
    fn regions_split_into_connected_components_hottest_first() {
        let mut h = hot((640, 640), ResizeMode::Stretch, 1, 1);
        h.values[8 + 2] = 0.8; // joins (1, 1)
        h.values[6 * 8 + 6] = 0.9; // alone
        let r = h.regions(0.5);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].cells, 2);
        assert_eq!(r[0].bbox, [80, 80, 240, 160]);
        assert_eq!(r[1].bbox, [480, 480, 560, 560]);
    }

    #[test]
    fn render_covers_the_image_and_peaks_at_the_hot_cell() {
        let h = hot((1000, 500), ResizeMode::CenterCrop, 3, 3);
        let map = h.render(100, 50);
        let (argmax, _) =
            map.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let (x, y) = (
            (argmax % 100) as f64 * 10.0 + 5.0,
            (argmax / 100) as f64 * 10.0 + 5.0,
        );
        let p = h.peak().unwrap();
        assert!(
            (x - p.x).abs() <= 10.0 && (y - p.y).abs() <= 10.0,
            "{x},{y} vs {p:?}"
        );
        // Centre crop cuts the sides: the image's left edge is outside the map.
        assert_eq!(map[25 * 100], 0.0);
    }
}
