//! Bones of a frontal chest: thoracic spine, posterior and anterior rib arcs,
//! clavicles, scapulae and humeral heads. All added to the attenuation map.

use rand::Rng;

use super::anatomy::{Canvas, Frontal};
use super::grid::{band, blob, stroke, Grid, Ink, Profile, Weight};
use super::rng::uniform;
use super::spec::View;

/// Sampled bone parameters of a frontal chest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Skeleton {
    /// y of the first posterior rib at the spine, mm.
    pub rib_y0: f32,
    /// Vertical spacing of posterior ribs at the spine, mm.
    pub rib_dy: f32,
    /// Half-thickness of a posterior rib, mm.
    pub rib_half: f32,
    /// Peak attenuation of a rib.
    pub rib_amp: f32,
    /// Extra downward curvature of the lateral rib ends.
    pub rib_curve: f32,
    /// Half-width of the vertebral bodies, mm.
    pub spine_half: f32,
    pub spine_amp: f32,
    pub spine_x: f32,
    /// Clavicle: medial y, lateral y, half-thickness, amplitude.
    pub clavicle: (f32, f32, f32, f32),
}

impl Skeleton {
    /// Draws bone parameters consistent with the lungs of `f`.
    pub fn sample<R: Rng>(rng: &mut R, f: &Frontal) -> Skeleton {
        let lung_h = f.left.base_y;
        let ap = f.view == View::Ap;
        let clav_med = lung_h
            * if ap {
                uniform(rng, 0.0, 0.06)
            } else {
                uniform(rng, 0.08, 0.15)
            };
        let clav_lat = clav_med - lung_h * uniform(rng, 0.06, 0.14) * if ap { 0.4 } else { 1.0 };
        Skeleton {
            rib_y0: -lung_h * uniform(rng, 0.08, 0.12),
            rib_dy: lung_h * uniform(rng, 0.088, 0.1),
            rib_half: uniform(rng, 4.0, 5.5),
            rib_amp: uniform(rng, 0.2, 0.3),
            rib_curve: uniform(rng, 0.38, 0.5),
            spine_half: uniform(rng, 15.0, 20.0),
            spine_amp: uniform(rng, 0.06, 0.1),
            spine_x: uniform(rng, -3.0, 3.0),
            clavicle: (
                clav_med,
                clav_lat,
                uniform(rng, 6.0, 8.0),
                uniform(rng, 0.16, 0.24),
            ),
        }
    }
}

/// Vertebral bodies with disc spaces, pedicles and spinous processes.
pub(crate) fn spine(s: &Skeleton, c: &Canvas, atten: &mut Grid) {
    let k = c.k;
    let lung_h = s.rib_dy * 10.5;
    for j in 0..c.h {
        let y = c.mm_y(j);
        let phase = ((y - s.rib_y0) / s.rib_dy).rem_euclid(1.0);
        let disc = if phase > 0.8 { 0.7 } else { 1.0 };
        let grow = 0.8 + 0.35 * (y / lung_h).clamp(0.0, 1.0);
        let half = s.spine_half * grow * k;
        let (cx, _) = c.px(s.spine_x, y);
        let amp = s.spine_amp * disc;
        let x0 = (cx - half).ceil().max(0.0) as usize;
        let x1 = ((cx + half).floor().max(0.0) as usize).min(c.w.saturating_sub(1));
        let row = atten.row_mut(j);
        for (i, a) in row.iter_mut().enumerate().take(x1 + 1).skip(x0) {
            let d = (i as f32 - cx) / half;
            *a += amp * Profile::Plateau.eval(d * d);
        }
    }
    let first = ((c.mm_y(0) - s.rib_y0) / s.rib_dy).floor() as i32 - 1;
    let last = ((c.mm_y(c.h) - s.rib_y0) / s.rib_dy).ceil() as i32 + 1;
    for v in first..=last {
        let y = s.rib_y0 + v as f32 * s.rib_dy;
        let half = s.spine_half * 0.62;
        for side in [-1.0, 1.0] {
            let (px, py) = c.px(s.spine_x + side * half, y + 0.3 * s.rib_dy);
            let (rx, ry) = (3.5 * k, 0.18 * s.rib_dy * k);
            blob(
                atten,
                (px, py),
                (rx, ry),
                Ink::new(s.spine_amp * 0.5, Profile::Cortical),
            );
        }
        let (px, py) = c.px(s.spine_x, y + 0.55 * s.rib_dy);
        blob(
            atten,
            (px, py),
            (3.0 * k, 0.3 * s.rib_dy * k),
            Ink::new(s.spine_amp * 0.35, Profile::Soft),
        );
    }
}

/// Twelve posterior rib arcs per side and the upper anterior ribs.
pub(crate) fn ribs(s: &Skeleton, f: &Frontal, c: &Canvas, atten: &mut Grid, lung: &Grid) {
    for left in [false, true] {
        let sign = if left { 1.0 } else { -1.0 };
        for n in 0..12 {
            let y_spine = s.rib_y0 + n as f32 * s.rib_dy;
            let lat = lateral_end(f, left, y_spine, n);
            posterior_rib(s, c, (atten, lung), sign, n, y_spine, lat);
            if n < 8 {
                let y_end = posterior_y(s, n, y_spine, lat, 1.0);
                anterior_rib(s, f, c, (atten, lung), sign, n, lat, y_end);
            }
        }
    }
}

/// Lateral end of rib `n`: just outside the lung, at the height the rib
/// reaches the chest wall.
fn lateral_end(f: &Frontal, left: bool, y_spine: f32, n: usize) -> f32 {
    let lung = f.lung(left);
    let probe = (y_spine + 0.12 * lung.width).min(lung.base_y - 5.0);
    let lat = lung.extent(probe).map_or(lung.width * 0.8, |(_, lat)| lat);
    let first = if n == 0 { 0.75 } else { 1.0 };
    (lat + 8.0) * first
}

/// Centre line y of a posterior rib at fraction `u` of its length.
fn posterior_y(s: &Skeleton, n: usize, y_spine: f32, lat: f32, u: f32) -> f32 {
    let curve = s.rib_curve + 0.02 * n as f32;
    y_spine + lat * (-0.2 * u + curve * u * u)
}

#[allow(clippy::too_many_arguments)]
fn posterior_rib(
    s: &Skeleton,
    c: &Canvas,
    (atten, lung): (&mut Grid, &Grid),
    sign: f32,
    n: usize,
    y_spine: f32,
    lat: f32,
) {
    let start = 12.0;
    let to_u = |px: f32| ((px - c.ox) / c.k * sign - start) / (lat - start);
    let centre = |px: f32| c.oy + posterior_y(s, n, y_spine, lat, to_u(px).clamp(0.0, 1.0)) * c.k;
    let shape = |px: f32| {
        let u = to_u(px).clamp(0.0, 1.0);
        let taper = (u / 0.05).min(1.0) * ((1.0 - u) / 0.04).clamp(0.3, 1.0);
        let half = s.rib_half * (0.85 + 0.4 * u) * c.k;
        (half, s.rib_amp * (0.85 + 0.3 * u) * taper)
    };
    let (a, b) = (c.px(sign * start, 0.0).0, c.px(sign * lat, 0.0).0);
    band(
        atten,
        (a, b),
        centre,
        shape,
        Ink::new(1.0, Profile::Cortical).weighted(Weight::Lung(lung, 0.35)),
    );
}

#[allow(clippy::too_many_arguments)]
fn anterior_rib(
    s: &Skeleton,
    f: &Frontal,
    c: &Canvas,
    (atten, lung): (&mut Grid, &Grid),
    sign: f32,
    n: usize,
    lat: f32,
    y_end: f32,
) {
    let medial = f.lung(sign > 0.0).width * (0.28 + 0.02 * n as f32);
    let slope = 0.5 + 0.025 * n as f32;
    let centre = |px: f32| {
        let ax = ((px - c.ox) / c.k * sign).clamp(medial, lat);
        let v = (lat - ax) / (lat - medial);
        c.oy + (y_end + (lat - ax) * slope - 12.0 * v * (1.0 - v)) * c.k
    };
    let shape = |px: f32| {
        let ax = (px - c.ox) / c.k * sign;
        let fade = ((ax - medial) / 25.0).clamp(0.0, 1.0);
        (s.rib_half * 1.15 * c.k, s.rib_amp * 0.45 * fade)
    };
    let (a, b) = (c.px(sign * medial, 0.0).0, c.px(sign * lat, 0.0).0);
    band(
        atten,
        (a, b),
        centre,
        shape,
        Ink::new(1.0, Profile::Tube).weighted(Weight::Lung(lung, 0.25)),
    );
}

/// S-shaped clavicles from the sternal notch to the acromion.
pub(crate) fn clavicles(s: &Skeleton, f: &Frontal, c: &Canvas, atten: &mut Grid, lung: &Grid) {
    let (y_med, y_lat, half, amp) = s.clavicle;
    for sign in [-1.0f32, 1.0] {
        let (x_med, x_lat) = (18.0, f.lung(sign > 0.0).width + 22.0);
        let to_u =
            move |px: f32| (((px - c.ox) / c.k * sign - x_med) / (x_lat - x_med)).clamp(0.0, 1.0);
        let centre = |px: f32| {
            let u = to_u(px);
            let y = y_med + (y_lat - y_med) * u + 6.0 * (std::f32::consts::TAU * u).sin();
            c.oy + y * c.k
        };
        let shape = |px: f32| {
            let u = to_u(px);
            let end = (u / 0.04).min(1.0) * ((1.0 - u) / 0.04).min(1.0);
            (half * (1.15 - 0.35 * u) * c.k, amp * end.max(0.2))
        };
        let (a, b) = (c.px(sign * x_med, 0.0).0, c.px(sign * x_lat, 0.0).0);
        band(
            atten,
            (a, b),
            centre,
            shape,
            Ink::new(1.0, Profile::Cortical).weighted(Weight::Lung(lung, 0.7)),
        );
    }
}

/// Scapulae (outside the lungs on PA, over them on AP) and humeral heads.
pub(crate) fn shoulders<R: Rng>(f: &Frontal, c: &Canvas, rng: &mut R, atten: &mut Grid) {
    let k = c.k;
    let lung_h = f.left.base_y;
    let over = if f.view == View::Ap { -30.0 } else { 8.0 };
    for sign in [-1.0f32, 1.0] {
        let w = f.lung(sign > 0.0).width;
        let (sx, sy) = c.px(sign * (w + over), lung_h * 0.35);
        let amp = uniform(rng, 0.04, 0.07);
        blob(
            atten,
            (sx, sy),
            (30.0 * k, 65.0 * k),
            Ink::new(amp, Profile::Soft),
        );
        let head = c.px(
            sign * (f.shoulder_w - uniform(rng, 26.0, 32.0)),
            f.shoulder_y + 8.0,
        );
        let shaft = c.px(sign * (f.shoulder_w - 24.0), f.shoulder_y + 50.0);
        let r = uniform(rng, 20.0, 24.0) * k;
        blob(
            atten,
            (head.0, head.1),
            (r, r),
            Ink::new(0.25, Profile::Cortical),
        );
        stroke(
            atten,
            head,
            shaft,
            (13.0 * k, 3.0 * k),
            Ink::new(0.22, Profile::Cortical),
        );
    }
}
