//! Lung markings: hilar shadows, branching pulmonary vessel trees and a fine
//! parenchymal texture, all visible only inside the lungs (weighted by the
//! lung-depth map).

use rand::Rng;

use super::anatomy::{Canvas, Frontal};
use super::grid::{add_upsampled, blob, stroke, value_noise, Grid, Ink, Profile, Weight};
use super::rng::uniform;

/// Trunk directions of the right lung's vessel tree, degrees (0 = image
/// right, 90 = down); the left lung mirrors them.
const TRUNKS_DEG: [f32; 7] = [-125.0, -100.0, -155.0, 175.0, 145.0, 118.0, 96.0];

/// Hila and vessel trees of both lungs. The trees are drawn with a
/// maximum blend into their own raster (joints and crossings do not double
/// up), which is then added weighted by lung depth.
pub(crate) fn vessels<R: Rng>(f: &Frontal, c: &Canvas, rng: &mut R, atten: &mut Grid, lung: &Grid) {
    let mut tree = Grid::new(atten.w, atten.h);
    for left in [false, true] {
        let sign = if left { 1.0 } else { -1.0 };
        let shape = f.lung(left);
        let hy = shape.base_y
            * if left {
                uniform(rng, 0.36, 0.42)
            } else {
                uniform(rng, 0.4, 0.46)
            };
        let med = f
            .lung_extent(left, hy)
            .map_or(shape.mediastinum, |(m, _)| m);
        let hilum = c.px(sign * (med + 4.0), hy);
        let amp = 0.12 * f.air;
        blob(
            atten,
            (hilum.0, hilum.1),
            (16.0 * c.k, 32.0 * c.k),
            Ink::new(amp, Profile::Soft).weighted(Weight::By(lung)),
        );
        for deg in TRUNKS_DEG {
            let deg = if left { 180.0 - deg } else { deg } + uniform(rng, -10.0, 10.0);
            let (dx, dy) = (
                uniform(rng, 0.0, 8.0) * c.k,
                uniform(rng, -18.0, 18.0) * c.k,
            );
            let trunk = Branch {
                at: (hilum.0 + sign * dx, hilum.1 + dy),
                angle: deg.to_radians(),
                len_mm: uniform(rng, 35.0, 55.0),
                r_mm: uniform(rng, 3.0, 4.5),
                depth: 0,
            };
            grow(trunk, f.air, c, rng, &mut tree, lung);
        }
    }
    for ((a, t), l) in atten.data.iter_mut().zip(&tree.data).zip(&lung.data) {
        *a += t * l;
    }
}

#[derive(Debug, Clone, Copy)]
struct Branch {
    at: (f32, f32),
    angle: f32,
    len_mm: f32,
    r_mm: f32,
    depth: u32,
}

/// Draws a branch as two slightly bent strokes with round joints and
/// recurses into two children while the vessel is wider than half a pixel
/// and inside the lung.
fn grow<R: Rng>(b: Branch, air: f32, c: &Canvas, rng: &mut R, tree: &mut Grid, lung: &Grid) {
    let r_px = b.r_mm * c.k;
    if b.depth > 7 || r_px < 0.5 || b.r_mm < 0.45 {
        return;
    }
    let len = b.len_mm * c.k;
    let (s, co) = b.angle.sin_cos();
    let bend = uniform(rng, -0.12, 0.12) * len;
    let mid = (
        b.at.0 + co * len * 0.5 - s * bend,
        b.at.1 + s * len * 0.5 + co * bend,
    );
    let end = (b.at.0 + co * len, b.at.1 + s * len);
    // peak ∝ radius (path length through the vessel), fainter when thin
    let per_px = 0.035 / c.k * air * (b.r_mm / 2.0).clamp(0.3, 1.0);
    let r_end = r_px * 0.75;
    let r_mid = (r_px + r_end) / 2.0;
    let ink = Ink::new(per_px, Profile::Tube).maxed().per_radius();
    stroke(tree, b.at, mid, (r_px, r_mid), ink);
    stroke(tree, mid, end, (r_mid, r_end), ink);
    for (at, r) in [(b.at, r_px), (mid, r_mid), (end, r_end)] {
        blob(
            tree,
            at,
            (r, r),
            Ink::new(per_px * r, Profile::Tube).maxed(),
        );
    }
    if lung.nearest(end.0, end.1) < 0.02 {
        return;
    }
    for turn in [-1.0, 1.0] {
        let child = Branch {
            at: end,
            angle: b.angle + turn * uniform(rng, 0.3, 0.6),
            len_mm: b.len_mm * uniform(rng, 0.65, 0.82),
            r_mm: b.r_mm * uniform(rng, 0.64, 0.76),
            depth: b.depth + 1,
        };
        grow(child, air, c, rng, tree, lung);
    }
}

/// Parenchymal texture inside the lungs: three octaves of value noise at a
/// quarter of the resolution.
pub(crate) fn texture<R: Rng>(air: f32, c: &Canvas, rng: &mut R, atten: &mut Grid, lung: &Grid) {
    const F: usize = 4;
    let (lw, lh) = (c.w.div_ceil(F), c.h.div_ceil(F));
    let mut fine = Grid::new(lw, lh);
    for (cell_mm, weight) in [(3.0, 0.45), (7.0, 0.35), (16.0, 0.3)] {
        let octave = value_noise(lw, lh, cell_mm * c.k / F as f32, rng);
        for (a, b) in fine.data.iter_mut().zip(&octave.data) {
            *a += weight * b;
        }
    }
    add_upsampled(atten, &fine, F, 0.07 * air, Weight::By(lung));
}
