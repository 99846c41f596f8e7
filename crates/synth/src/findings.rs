//! Findings drawn into frontal scenes, with their ground truth: solitary
//! nodules (smooth or, 35 % of them, spiculated; diameter log-uniform in the
//! spec's range) anywhere in a lung, and tuberculosis-like upper-zone
//! patterns (patchy/confluent opacities, optional thick-walled cavity and
//! fibrotic streaks toward the hilum) in one or both lungs.
//!
//! A positive frontal image gets a nodule (45 %), a TB pattern (45 %) or
//! both (10 %) when both types are enabled; 15 % of nodule cases have two
//! nodules, 35 % of TB cases are bilateral. Labels: `tuberculosis` if any TB
//! pattern; `malignant_nodule` if any nodule is spiculated or at least
//! [`MALIGNANT_DIAMETER_MM`] across (small smooth nodules are benign-looking
//! decoys).
//!
//! Contrast is a fraction of the case's lung contrast (soft tissue minus
//! aerated lung): nodules 3–22 % at the centre (larger ones denser), TB
//! opacities 12–30 %, so a finding is visible but competes with ribs (20–30 %),
//! vessels and noise.

use rand::Rng;

use super::anatomy::Frontal;
use super::case::{Finding, FindingKind, NoduleInfo, Side, TbInfo};
use super::grid::{blob, stroke, value_noise, Grid, Ink, Profile};
use super::render::Scene;
use super::rng::{case_rng, uniform, Purpose};
use super::spec::{CaseSpec, Margin};

/// Lung depth above which a pixel counts as lung (the case's lung mask).
pub(crate) const LUNG_THRESHOLD: f32 = 0.05;

/// A nodule of at least this diameter (mm) is labelled malignant-looking,
/// as is any spiculated nodule.
pub const MALIGNANT_DIAMETER_MM: f32 = 10.0;

/// Decides whether the case is positive and draws its findings into the
/// scene. Laterals and negatives get none.
pub(crate) fn add_findings(
    spec: &CaseSpec,
    scene: &mut Scene,
    seed: u64,
    index: u64,
) -> Vec<Finding> {
    let mut rng = case_rng(seed, index, Purpose::Findings);
    let positive = rng.random::<f64>() < spec.positive_rate;
    let Some(frontal) = scene.frontal.clone() else {
        return Vec::new();
    };
    if !positive {
        return Vec::new();
    }
    let (nodules, tb_sides) = choose_findings(spec, &mut rng);
    let mut found = Vec::new();
    for _ in 0..nodules {
        if let Some(n) = nodule(spec, &frontal, scene, &found, &mut rng) {
            found.push(n);
        }
    }
    for left in tb_sides {
        if let Some(t) = tb(&frontal, scene, left, &mut rng) {
            found.push(t);
        }
    }
    found
}

/// How many nodules, and which lungs (`true` = left) get a TB pattern.
fn choose_findings<R: Rng>(spec: &CaseSpec, rng: &mut R) -> (usize, Vec<bool>) {
    let u = rng.random::<f32>();
    let (want_nodule, want_tb) = match (spec.findings.nodule, spec.findings.tb) {
        (true, true) if u < 0.45 => (true, false),
        (true, true) if u < 0.9 => (false, true),
        (n, t) => (n, t),
    };
    let nodules = if want_nodule {
        1 + usize::from(rng.random_bool(0.15))
    } else {
        0
    };
    let first = rng.random::<bool>();
    let both = rng.random_bool(0.35);
    let sides = match (want_tb, both) {
        (false, _) => vec![],
        (true, false) => vec![first],
        (true, true) => vec![false, true],
    };
    (nodules, sides)
}

/// Geometry of a nodule relative to its centre, in output pixels.
struct NoduleShape {
    radius: f32,
    lobules: Vec<(f32, f32, f32)>,
    spicules: Vec<Spicule>,
    /// (min dx, min dy, max dx, max dy) of everything drawn.
    extent: [f32; 4],
}

/// A radiating strand of a spiculated nodule, relative to its centre.
struct Spicule {
    from: (f32, f32),
    to: (f32, f32),
    radius: f32,
}

fn nodule_shape<R: Rng>(radius: f32, margin: Margin, rng: &mut R) -> NoduleShape {
    let mut shape = NoduleShape {
        radius,
        lobules: Vec::new(),
        spicules: Vec::new(),
        extent: [-radius, -radius, radius, radius],
    };
    if margin == Margin::Spiculated {
        for _ in 0..rng.random_range(4..7) {
            let (s, c) = uniform(rng, 0.0, std::f32::consts::TAU).sin_cos();
            let (d, r) = (
                radius * uniform(rng, 0.35, 0.5),
                radius * uniform(rng, 0.5, 0.65),
            );
            shape.lobules.push((c * d, s * d, r));
            grow_extent(&mut shape.extent, c * d, s * d, r);
        }
        for _ in 0..rng.random_range(12..24) {
            let (s, c) = uniform(rng, 0.0, std::f32::consts::TAU).sin_cos();
            let (r0, r1) = (0.75 * radius, radius * (1.0 + uniform(rng, 0.25, 0.9)));
            let w = (radius * uniform(rng, 0.035, 0.07)).max(0.6);
            shape.spicules.push(Spicule {
                from: (c * r0, s * r0),
                to: (c * r1, s * r1),
                radius: w,
            });
            grow_extent(&mut shape.extent, c * r1, s * r1, w);
        }
    }
    shape
}

fn grow_extent(e: &mut [f32; 4], x: f32, y: f32, r: f32) {
    e[0] = e[0].min(x - r);
    e[1] = e[1].min(y - r);
    e[2] = e[2].max(x + r);
    e[3] = e[3].max(y + r);
}

/// Places, draws and describes one nodule; `None` if no spot was found.
fn nodule<R: Rng>(
    spec: &CaseSpec,
    f: &Frontal,
    scene: &mut Scene,
    others: &[Finding],
    rng: &mut R,
) -> Option<Finding> {
    // log-uniform: as many 5–10 mm nodules as 10–20 mm ones
    let diameter = uniform(rng, spec.nodule_mm.0.ln(), spec.nodule_mm.1.ln()).exp();
    let margin = if rng.random_bool(0.35) {
        Margin::Spiculated
    } else {
        Margin::Smooth
    };
    let k = scene.place.canvas.k;
    let shape = nodule_shape(diameter / 2.0 * k, margin, rng);
    let contrast = ((uniform(rng, 0.05, 0.13) * (diameter / 10.0).sqrt()).clamp(0.03, 0.22)
        * spec.nodule_contrast)
        .min(0.8);
    let (left, centre) = find_spot(f, scene, &shape.extent, others, rng)?;
    draw_nodule(
        &mut scene.atten,
        centre,
        &shape,
        contrast * scene.air,
        margin,
    );
    let e = shape.extent;
    let bbox = clamp_box(
        [
            centre.0 + e[0],
            centre.1 + e[1],
            centre.0 + e[2],
            centre.1 + e[3],
        ],
        &scene.atten,
    );
    Some(Finding {
        kind: FindingKind::Nodule,
        bbox,
        side: if left { Side::Left } else { Side::Right },
        contrast,
        nodule: Some(NoduleInfo {
            diameter_mm: (diameter * 10.0).round() / 10.0,
            margin,
            center: [centre.0, centre.1],
            malignant_looking: margin == Margin::Spiculated || diameter >= MALIGNANT_DIAMETER_MM,
        }),
        tb: None,
    })
}

/// A centre (output px) where the whole nodule extent lies in one lung and
/// does not touch another finding.
fn find_spot<R: Rng>(
    f: &Frontal,
    scene: &Scene,
    extent: &[f32; 4],
    others: &[Finding],
    rng: &mut R,
) -> Option<(bool, (f32, f32))> {
    for _ in 0..200 {
        let left = rng.random::<bool>();
        let lung = f.lung(left);
        let y = lung.apex_y + (lung.base_y - lung.apex_y) * uniform(rng, 0.08, 0.92);
        let Some((med, lat)) = f.lung_extent(left, y) else {
            continue;
        };
        let ax = med + (lat - med) * uniform(rng, 0.05, 0.95);
        let sign = if left { 1.0 } else { -1.0 };
        let (cx, cy) = scene.place.out_px(sign * ax, y);
        let corners = [
            (cx, cy),
            (cx + extent[0], cy + extent[1]),
            (cx + extent[2], cy + extent[1]),
            (cx + extent[0], cy + extent[3]),
            (cx + extent[2], cy + extent[3]),
            (cx, cy + extent[1]),
            (cx, cy + extent[3]),
            (cx + extent[0], cy),
            (cx + extent[2], cy),
        ];
        let inside = corners
            .iter()
            .all(|&(x, y)| scene.lung.nearest(x, y) > LUNG_THRESHOLD);
        let clear = others.iter().all(|o| {
            let b = o.bbox.map(|v| v as f32);
            cx + extent[2] < b[0]
                || cx + extent[0] > b[2]
                || cy + extent[3] < b[1]
                || cy + extent[1] > b[3]
        });
        if inside && clear {
            return Some((left, (cx, cy)));
        }
    }
    None
}

fn draw_nodule(atten: &mut Grid, c: (f32, f32), shape: &NoduleShape, peak: f32, margin: Margin) {
    let r = shape.radius;
    let core = if margin == Margin::Spiculated {
        0.75
    } else {
        1.0
    };
    blob(
        atten,
        (c.0, c.1),
        (r, r),
        Ink::new(peak * core, Profile::Tube),
    );
    for &(dx, dy, lr) in &shape.lobules {
        blob(
            atten,
            (c.0 + dx, c.1 + dy),
            (lr, lr),
            Ink::new(peak * 0.4, Profile::Tube),
        );
    }
    for sp in &shape.spicules {
        let a = (c.0 + sp.from.0, c.1 + sp.from.1);
        let b = (c.0 + sp.to.0, c.1 + sp.to.1);
        // fades toward the tip: peak ∝ local radius
        let ink = Ink::new(peak * 0.45 / sp.radius, Profile::Tube).per_radius();
        stroke(atten, a, b, (sp.radius, sp.radius * 0.2), ink);
    }
}

/// Half-open integer box of a float box, clamped to the image.
fn clamp_box(b: [f32; 4], g: &Grid) -> [u32; 4] {
    let cx = |v: f32| v.clamp(0.0, g.w as f32) as u32;
    let cy = |v: f32| v.clamp(0.0, g.h as f32) as u32;
    [
        cx(b[0].floor()),
        cy(b[1].floor()),
        cx(b[2].ceil() + 1.0),
        cy(b[3].ceil() + 1.0),
    ]
}

/// Draws a TB pattern in the upper zone of one lung.
fn tb<R: Rng>(f: &Frontal, scene: &mut Scene, left: bool, rng: &mut R) -> Option<Finding> {
    let lung = f.lung(left);
    let height = lung.base_y - lung.apex_y;
    let y = lung.apex_y + height * uniform(rng, 0.13, 0.3);
    let (med, lat) = f.lung_extent(left, y)?;
    let sign = if left { 1.0 } else { -1.0 };
    let ax = med + (lat - med) * uniform(rng, 0.3, 0.7);
    let centre = scene.place.out_px(sign * ax, y);
    let hilum = scene
        .place
        .out_px(sign * (lung.mediastinum + 10.0), lung.base_y * 0.4);
    let info = TbInfo {
        confluent: rng.random_bool(0.5),
        cavity: rng.random_bool(0.35),
        fibrosis: rng.random_bool(0.5),
    };
    let contrast = uniform(rng, 0.12, 0.3);
    let peak = contrast * scene.air;
    let k = scene.place.canvas.k;
    let rho = uniform(rng, 16.0, 32.0) * k;
    let mut patch = TbPatch::new(centre, 2.0 * rho + 25.0 * k);
    patch.opacities(rho, peak, info.confluent, k, rng);
    if info.cavity {
        patch.cavity(rho, peak, k, rng);
    }
    if info.fibrosis {
        patch.streaks(rho, peak, hilum, k, rng);
    }
    let bbox = patch.apply(scene, peak)?;
    Some(Finding {
        kind: FindingKind::Tb,
        bbox,
        side: if left { Side::Left } else { Side::Right },
        contrast,
        nodule: None,
        tb: Some(info),
    })
}

/// A square patch around a TB region, drawn locally and then added to the
/// scene weighted by the lung depth.
struct TbPatch {
    grid: Grid,
    /// Output-pixel position of patch pixel (0, 0).
    x0: f32,
    y0: f32,
}

impl TbPatch {
    fn new(centre: (f32, f32), half: f32) -> TbPatch {
        let size = (2.0 * half).ceil() as usize + 1;
        TbPatch {
            grid: Grid::new(size, size),
            x0: (centre.0 - half).round(),
            y0: (centre.1 - half).round(),
        }
    }

    fn centre(&self) -> (f32, f32) {
        let c = self.grid.w as f32 / 2.0;
        (c, c)
    }

    /// Patchy acinar nodules scattered around the centre, plus a confluent
    /// consolidation modulated by value noise; saturating sum.
    fn opacities<R: Rng>(&mut self, rho: f32, peak: f32, confluent: bool, k: f32, rng: &mut R) {
        let (cx, cy) = self.centre();
        for _ in 0..rng.random_range(15..40) {
            let (dx, dy) = (uniform(rng, -1.0, 1.0), uniform(rng, -1.0, 1.0));
            let (x, y) = (cx + dx * rho, cy + dy * rho * 0.8);
            let r = uniform(rng, 3.0, 9.0) * k;
            let amp = peak * uniform(rng, 0.5, 1.0);
            blob(&mut self.grid, (x, y), (r, r), Ink::new(amp, Profile::Soft));
        }
        if confluent {
            let noise = value_noise(self.grid.w, self.grid.h, 6.0 * k, rng);
            let mut lump = Grid::new(self.grid.w, self.grid.h);
            blob(
                &mut lump,
                (cx, cy),
                (rho * 0.9, rho * 0.7),
                Ink::new(peak * 0.9, Profile::Soft),
            );
            for ((g, l), n) in self.grid.data.iter_mut().zip(&lump.data).zip(&noise.data) {
                *g += l * (0.65 + 0.35 * n);
            }
        }
        for v in self.grid.data.iter_mut() {
            *v = peak * (1.0 - (-*v / peak).exp());
        }
    }

    /// A thick-walled cavity: lucent centre, dense ring.
    fn cavity<R: Rng>(&mut self, rho: f32, peak: f32, k: f32, rng: &mut R) {
        let (cx, cy) = self.centre();
        let (x, y) = (
            cx + uniform(rng, -0.3, 0.3) * rho,
            cy + uniform(rng, -0.3, 0.3) * rho,
        );
        let inner = uniform(rng, 4.0, 10.0) * k;
        let wall = uniform(rng, 1.5, 3.5) * k;
        let outer = inner + wall;
        let g = &mut self.grid;
        let (lo_x, hi_x) = (
            (x - outer).max(0.0) as usize,
            ((x + outer) as usize).min(g.w - 1),
        );
        let (lo_y, hi_y) = (
            (y - outer).max(0.0) as usize,
            ((y + outer) as usize).min(g.h - 1),
        );
        for j in lo_y..=hi_y {
            for i in lo_x..=hi_x {
                let d = ((i as f32 - x).powi(2) + (j as f32 - y).powi(2)).sqrt();
                let v = &mut g.data[j * g.w + i];
                if d < inner {
                    *v = -0.3 * peak;
                } else if d < outer {
                    let m = 2.0 * (d - inner) / wall - 1.0;
                    *v = v.max(peak * 1.1 * Profile::Tube.eval(m * m).max(0.5));
                }
            }
        }
    }

    /// Fibrotic streaks toward the hilum and the apex.
    fn streaks<R: Rng>(&mut self, rho: f32, peak: f32, hilum: (f32, f32), k: f32, rng: &mut R) {
        let (cx, cy) = self.centre();
        let to_hilum = (hilum.0 - (self.x0 + cx), hilum.1 - (self.y0 + cy));
        let base = to_hilum.1.atan2(to_hilum.0);
        let limit = self.grid.w as f32 / 2.0 - 2.0;
        for n in 0..rng.random_range(3..8) {
            let dir = if n < 2 {
                -std::f32::consts::FRAC_PI_2
            } else {
                base
            };
            let angle = dir + uniform(rng, -0.35, 0.35);
            let start = (
                cx + uniform(rng, -0.4, 0.4) * rho,
                cy + uniform(rng, -0.3, 0.3) * rho,
            );
            let len = (rho * uniform(rng, 0.5, 1.0) + 10.0 * k).min(limit);
            let end = (
                (start.0 + angle.cos() * len).clamp(1.0, 2.0 * limit),
                (start.1 + angle.sin() * len).clamp(1.0, 2.0 * limit),
            );
            let w = uniform(rng, 0.6, 1.2) * k;
            stroke(
                &mut self.grid,
                start,
                end,
                (w, w * 0.7),
                Ink::new(peak * 0.7, Profile::Tube),
            );
        }
    }

    /// Adds the patch to the scene, weighted by lung depth, and returns the
    /// box of everything above 12 % of the peak (None if nothing landed).
    fn apply(&self, scene: &mut Scene, peak: f32) -> Option<[u32; 4]> {
        let (w, h) = (scene.atten.w as i64, scene.atten.h as i64);
        let mut b = [i64::MAX, i64::MAX, i64::MIN, i64::MIN];
        for j in 0..self.grid.h {
            let y = self.y0 as i64 + j as i64;
            if y < 0 || y >= h {
                continue;
            }
            for i in 0..self.grid.w {
                let x = self.x0 as i64 + i as i64;
                let v = self.grid.at(i, j);
                if x < 0 || x >= w || v == 0.0 {
                    continue;
                }
                let at = (y * w + x) as usize;
                let weight = (scene.lung.data[at] / 0.25).clamp(0.0, 1.0);
                scene.atten.data[at] += v * weight;
                if (v * weight).abs() > 0.12 * peak {
                    b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
                }
            }
        }
        (b[0] < b[2]).then(|| b.map(|v| v as u32))
    }
}
