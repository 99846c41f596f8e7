//! Frontal chest anatomy: body outline, lung fields, mediastinum, heart,
//! diaphragm, airways and soft-tissue extras, drawn as an attenuation map
//! (larger = more attenuation) plus a lung-depth map.
//!
//! Geometry is in millimetres with the origin on the spine at the height of
//! the lung apices, x to image right (patient left on a PA/AP view), y down.
//! [`Canvas`] maps millimetres to pixels of an oversized canvas that the
//! renderer later rotates and crops to the output image.

use rand::Rng;

use super::grid::{blob, stroke, Grid, Ink, Profile};
use super::rng::{normal, uniform};
use super::spec::View;

/// Millimetre → pixel mapping of the canvas the anatomy is drawn on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Canvas {
    /// Canvas width in pixels.
    pub w: usize,
    /// Canvas height in pixels.
    pub h: usize,
    /// Pixels per millimetre.
    pub k: f32,
    /// Pixel position of the anatomy origin.
    pub ox: f32,
    /// Pixel position of the anatomy origin.
    pub oy: f32,
}

impl Canvas {
    /// Pixel position of a point given in mm.
    #[inline]
    pub fn px(&self, x: f32, y: f32) -> (f32, f32) {
        (self.ox + x * self.k, self.oy + y * self.k)
    }

    /// Millimetre x of pixel column `i`.
    #[inline]
    pub fn mm_x(&self, i: usize) -> f32 {
        (i as f32 - self.ox) / self.k
    }

    /// Millimetre y of pixel row `j`.
    #[inline]
    pub fn mm_y(&self, j: usize) -> f32 {
        (j as f32 - self.oy) / self.k
    }
}

/// Shape of one lung field. Distances are from the midline (always ≥ 0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LungShape {
    /// y of the apex, mm.
    pub apex_y: f32,
    /// y of the costophrenic angle (the lowest point), mm.
    pub base_y: f32,
    /// Largest lateral extent, mm.
    pub width: f32,
    /// Lateral position of the apex, mm.
    pub apex_x: f32,
    /// Half-width of the upper mediastinum on this side, mm.
    pub mediastinum: f32,
    /// Height of the diaphragm dome above the costophrenic angle, mm.
    pub dome: f32,
    /// Lateral position (fraction of width) of the dome's top.
    pub dome_at: f32,
    /// Fraction of the lung height where it is widest.
    pub widest_at: f32,
}

impl LungShape {
    /// Fraction of the lung height at `y` (0 apex, 1 costophrenic angle).
    #[inline]
    pub fn t(&self, y: f32) -> f32 {
        (y - self.apex_y) / (self.base_y - self.apex_y)
    }

    /// Medial and lateral distance from the midline at height `y`, before
    /// the heart and aorta push the medial border out.
    pub fn extent(&self, y: f32) -> Option<(f32, f32)> {
        let t = self.t(y);
        if t <= 0.0 || t >= 1.0 {
            return None;
        }
        let quarter = |s: f32| (1.0 - (1.0 - s.min(1.0)).powi(2)).sqrt();
        let taper = 1.0 - 0.05 * ((t - self.widest_at) / (1.0 - self.widest_at)).max(0.0);
        let lat = self.apex_x + (self.width - self.apex_x) * quarter(t / self.widest_at) * taper;
        let med = self.apex_x - (self.apex_x - self.mediastinum) * quarter(t / 0.14);
        Some((med, lat))
    }

    /// y of the diaphragm at distance `ax` from the midline.
    #[inline]
    pub fn diaphragm(&self, ax: f32) -> f32 {
        let q = ax / self.width;
        let p = self.dome_at;
        let bump = if q >= p {
            1.0 - ((q - p) / (1.0 - p)).powi(2)
        } else {
            1.0 - ((p - q) / (p + 0.3)).powi(2)
        };
        self.base_y - self.dome * bump.max(0.0)
    }
}

/// An ellipse (centre, semi-axes, tilt), mm; tilt turns the first axis
/// from image right toward image down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ellipse {
    pub cx: f32,
    pub cy: f32,
    pub ax: f32,
    pub ay: f32,
    pub tilt: f32,
}

impl Ellipse {
    /// Left and right x where the ellipse crosses height `y`, if it does.
    pub fn span_at(&self, y: f32) -> Option<(f32, f32)> {
        let (s, c) = self.tilt.sin_cos();
        let (ia, ib) = (1.0 / (self.ax * self.ax), 1.0 / (self.ay * self.ay));
        let dy = y - self.cy;
        // (c x + s dy)² ia + (−s x + c dy)² ib = 1, solved for x
        let qa = c * c * ia + s * s * ib;
        let qb = 2.0 * dy * c * s * (ia - ib);
        let qc = dy * dy * (s * s * ia + c * c * ib) - 1.0;
        let disc = qb * qb - 4.0 * qa * qc;
        (disc > 0.0).then(|| {
            let root = disc.sqrt();
            (
                self.cx + (-qb - root) / (2.0 * qa),
                self.cx + (-qb + root) / (2.0 * qa),
            )
        })
    }

    /// The leftmost point (x, y) of the ellipse.
    pub fn leftmost(&self) -> (f32, f32) {
        let (s, c) = self.tilt.sin_cos();
        let (a2, b2) = (self.ax * self.ax, self.ay * self.ay);
        let r = (a2 * c * c + b2 * s * s).sqrt();
        (self.cx - r, self.cy - (a2 - b2) * s * c / r)
    }
}

/// Sampled parameters of a frontal chest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frontal {
    /// Patient right lung (image left, x < 0).
    pub right: LungShape,
    /// Patient left lung (image right, x > 0).
    pub left: LungShape,
    pub heart: Ellipse,
    /// Aortic knob: centre x, y and radius.
    pub knob: (f32, f32, f32),
    pub neck_w: f32,
    pub shoulder_w: f32,
    pub shoulder_y: f32,
    pub chest_w: f32,
    pub waist_w: f32,
    /// Soft-tissue attenuation through the chest centre.
    pub depth: f32,
    /// Attenuation removed by the full air thickness of a lung.
    pub air: f32,
    pub trachea_x: f32,
    pub carina_y: f32,
    pub female: bool,
    pub stomach_bubble: bool,
    pub view: View,
}

impl Frontal {
    /// Draws a frontal chest for `view`; the body scale varies ±7 %.
    pub fn sample<R: Rng>(rng: &mut R, view: View) -> Frontal {
        let s = normal(rng, 1.0, 0.06).clamp(0.85, 1.15);
        let lung_h = 268.0 * s * uniform(rng, 0.93, 1.06);
        let half_w = 140.0 * s * uniform(rng, 0.93, 1.07);
        let ctr = uniform(rng, 0.40, 0.50) * if view == View::Ap { 1.12 } else { 1.0 };
        let heart_w = ctr * 2.0 * half_w;
        let lung = |rng: &mut R, base: f32, med: f32| LungShape {
            apex_y: uniform(rng, -4.0, 4.0),
            base_y: base,
            width: half_w * uniform(rng, 0.96, 1.04),
            apex_x: half_w * uniform(rng, 0.40, 0.50),
            mediastinum: med,
            dome: lung_h * uniform(rng, 0.12, 0.19),
            dome_at: uniform(rng, 0.38, 0.52),
            widest_at: uniform(rng, 0.62, 0.78),
        };
        let (right_base, right_med) = (lung_h - uniform(rng, 8.0, 20.0), uniform(rng, 16.0, 24.0));
        let right = lung(rng, right_base, right_med);
        let left_med = uniform(rng, 20.0, 28.0);
        let left = lung(rng, lung_h, left_med);
        let heart = Ellipse {
            cx: heart_w * uniform(rng, 0.15, 0.2),
            cy: lung_h * uniform(rng, 0.72, 0.78),
            ax: heart_w * 0.52,
            ay: heart_w * uniform(rng, 0.34, 0.4),
            tilt: uniform(rng, 0.45, 0.7),
        };
        Frontal {
            knob: (
                left.mediastinum + uniform(rng, 0.0, 5.0),
                lung_h * uniform(rng, 0.2, 0.27),
                uniform(rng, 10.0, 14.0),
            ),
            neck_w: half_w * uniform(rng, 0.36, 0.44),
            shoulder_w: half_w * uniform(rng, 1.25, 1.4),
            shoulder_y: -lung_h * uniform(rng, 0.02, 0.1),
            chest_w: half_w * uniform(rng, 1.12, 1.2),
            waist_w: half_w * uniform(rng, 1.0, 1.12),
            depth: uniform(rng, 2.1, 2.4),
            air: uniform(rng, 1.2, 1.45),
            trachea_x: uniform(rng, -5.0, 0.0),
            carina_y: lung_h * uniform(rng, 0.26, 0.32),
            female: rng.random::<bool>(),
            stomach_bubble: rng.random_bool(0.7),
            right,
            left,
            heart,
            view,
        }
    }

    /// Lung shape of a side (`left == true`: patient left, image right).
    pub fn lung(&self, left: bool) -> &LungShape {
        if left {
            &self.left
        } else {
            &self.right
        }
    }

    /// Medial/lateral extent of a lung at height `y`, heart and aorta included.
    pub fn lung_extent(&self, left: bool, y: f32) -> Option<(f32, f32)> {
        let (mut med, lat) = self.lung(left).extent(y)?;
        if let Some((x0, x1)) = self.heart.span_at(y) {
            med = med.max(if left { x1 } else { -x0 });
        }
        let (xl, yl) = self.heart.leftmost();
        if !left && y > yl {
            // the right heart border runs down to the diaphragm
            med = med.max(-xl);
        }
        let (kx, ky, kr) = self.knob;
        let d = (y - ky) / (1.6 * kr);
        if left && d.abs() < 1.0 {
            let bump = (1.0 - d * d) * (1.0 - d * d);
            med = med
                .max(self.lung(true).mediastinum + (kx + kr - self.lung(true).mediastinum) * bump);
        }
        (med < lat - 2.0).then_some((med, lat))
    }

    /// Body half-width at height `y`, mm.
    fn body_half_width(&self, y: f32) -> f32 {
        let sy = self.shoulder_y;
        if y < sy {
            // rounded shoulders rising to the neck
            let d = ((sy - y) / 65.0).min(1.0);
            return self.neck_w + (self.shoulder_w - self.neck_w) * (1.0 - d * d).sqrt();
        }
        let t = ((y - sy) / 90.0).clamp(0.0, 1.0);
        let axilla = self.shoulder_w + (self.chest_w - self.shoulder_w) * t * t * (3.0 - 2.0 * t);
        let below = ((y - self.right.base_y) / 100.0).clamp(0.0, 1.0);
        axilla + (self.waist_w - self.chest_w) * below
    }

    /// Soft-tissue attenuation through the body centre at height `y`.
    fn body_depth(&self, y: f32) -> f32 {
        let neck = ((self.shoulder_y - y) / 60.0).clamp(0.0, 1.0);
        let belly = ((y - self.left.base_y) / 120.0).clamp(0.0, 1.0);
        self.depth * (1.0 - 0.3 * neck + 0.06 * belly)
    }
}

/// Fills `atten` with soft tissue minus lung air and `lung` with the lung
/// depth (0 outside, up to 1), row by row.
pub(crate) fn body_and_lungs(f: &Frontal, c: &Canvas, atten: &mut Grid, lung: &mut Grid) {
    let xs: Vec<f32> = (0..c.w).map(|i| c.mm_x(i)).collect();
    for j in 0..c.h {
        let y = c.mm_y(j);
        let bw = f.body_half_width(y);
        let depth = f.body_depth(y);
        let inv_bw = 1.0 / bw;
        let a_row = atten.row_mut(j);
        for (a, &x) in a_row.iter_mut().zip(&xs) {
            let r = x * inv_bw;
            let r4 = r * r * r * r;
            *a = if r4 < 1.0 {
                depth * (1.0 - r4).sqrt()
            } else {
                0.0
            };
        }
        for left in [false, true] {
            if let Some(ext) = f.lung_extent(left, y) {
                lung_row(f, c, left, y, ext, &xs, lung.row_mut(j));
            }
        }
        let (l_row, a_row) = (lung.row(j), atten.row_mut(j));
        for (a, l) in a_row.iter_mut().zip(l_row) {
            *a -= f.air * l;
        }
    }
}

/// Lung depth along one row of one lung.
fn lung_row(
    f: &Frontal,
    c: &Canvas,
    left: bool,
    y: f32,
    ext: (f32, f32),
    xs: &[f32],
    out: &mut [f32],
) {
    let shape = f.lung(left);
    let (med, lat) = ext;
    let t = shape.t(y);
    let smooth = |s: f32| {
        let s = s.clamp(0.0, 1.0);
        s * s * (3.0 - 2.0 * s)
    };
    let vertical = 0.45 + 0.55 * smooth(t / 0.45);
    let ramp = |s: f32| s.clamp(0.0, 1.0).sqrt();
    let sign = if left { 1.0 } else { -1.0 };
    let (p0, p1) = (c.px(sign * med, y).0, c.px(sign * lat, y).0);
    let first = p0.min(p1).floor().max(0.0) as usize;
    let last = (p0.max(p1).ceil().max(0.0) as usize).min(c.w);
    let width = lat - med;
    for i in first..last {
        let ax = xs[i] * sign;
        if ax <= med || ax >= lat {
            continue;
        }
        let floor = shape.diaphragm(ax);
        if y >= floor {
            continue;
        }
        let u = (ax - med) / width;
        let edges =
            ramp((ax - med) / 4.0) * smooth((lat - ax) / 16.0).sqrt() * ramp((floor - y) / 5.0);
        out[i] = edges * vertical * (0.82 + 0.7 * u * (1.0 - u));
    }
}

/// Trachea and main bronchi: air columns in the mediastinum.
pub(crate) fn airways(f: &Frontal, c: &Canvas, atten: &mut Grid) {
    let k = c.k;
    let carina = c.px(f.trachea_x + 2.0, f.carina_y);
    let trachea_top = c.px(f.trachea_x, c.mm_y(0) - 10.0);
    let air = -0.14 * f.air;
    let trachea = Ink::new(air, Profile::Tube);
    stroke(atten, trachea_top, carina, (8.5 * k, 8.0 * k), trachea);
    // bronchi fade as they narrow: peak ∝ radius
    let bronchus = Ink::new(air * 0.8 / (6.5 * k), Profile::Tube).per_radius();
    let right = c.px(f.trachea_x - 26.0, f.carina_y + 24.0);
    let left = c.px(f.trachea_x + 36.0, f.carina_y + 26.0);
    stroke(atten, carina, right, (6.5 * k, 1.0 * k), bronchus);
    stroke(atten, carina, left, (6.0 * k, 1.0 * k), bronchus);
}

/// Heart (a little thicker than the rest of the mediastinum), breast
/// shadows and the gastric air bubble.
pub(crate) fn soft_extras<R: Rng>(f: &Frontal, c: &Canvas, rng: &mut R, atten: &mut Grid) {
    let k = c.k;
    let (hx, hy) = c.px(f.heart.cx, f.heart.cy);
    let (hax, hay) = (f.heart.ax * k, f.heart.ay * k);
    blob(
        atten,
        (hx, hy),
        (hax, hay),
        Ink::new(0.05 * f.depth, Profile::Soft),
    );
    if f.female && rng.random_bool(0.85) {
        let amp = uniform(rng, 0.05, 0.11) * f.depth;
        for sign in [-1.0, 1.0] {
            let w = f.lung(sign > 0.0).width;
            let centre = c.px(sign * w * uniform(rng, 0.5, 0.62), f.left.base_y * 0.72);
            breast(atten, centre, w * 0.45 * k, f.left.base_y * 0.16 * k, amp);
        }
    }
    if f.stomach_bubble {
        let ax = f.left.width * uniform(rng, 0.4, 0.6);
        let y = f.left.diaphragm(ax) + uniform(rng, 20.0, 30.0);
        let (x, y) = c.px(ax, y);
        let (rx, ry) = (uniform(rng, 22.0, 35.0) * k, uniform(rng, 12.0, 18.0) * k);
        blob(
            atten,
            (x, y),
            (rx, ry),
            Ink::new(-0.2 * f.air, Profile::Soft),
        );
    }
}

/// A breast shadow: soft upper part, sharp inframammary lower margin.
fn breast(atten: &mut Grid, centre: (f32, f32), rx: f32, ry: f32, amp: f32) {
    let (cx, cy) = centre;
    let x0 = (cx - rx).max(0.0) as usize;
    let x1 = ((cx + rx) as usize).min(atten.w.saturating_sub(1));
    let y0 = (cy - 2.0 * ry).max(0.0) as usize;
    let y1 = ((cy + ry) as usize).min(atten.h.saturating_sub(1));
    for y in y0..=y1 {
        let dy = y as f32 - cy;
        let ny = if dy < 0.0 { dy / (2.0 * ry) } else { dy / ry };
        for x in x0..=x1 {
            let nx = (x as f32 - cx) / rx;
            let d2 = nx * nx + ny * ny;
            let profile = if dy < 0.0 {
                Profile::Soft
            } else {
                Profile::Tube
            };
            atten.data[y * atten.w + x] += amp * profile.eval(d2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lungs_have_sane_extents() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let f = Frontal::sample(&mut rng, View::Pa);
            let y = (f.left.apex_y + f.left.base_y) / 2.0;
            let (med, lat) = f.lung_extent(true, y).expect("mid-height left lung row");
            assert!(med > 10.0 && lat > med + 40.0 && lat < 200.0);
            assert!(f.left.diaphragm(f.left.width * 0.45) < f.left.base_y);
            assert!(f.lung_extent(false, f.right.apex_y - 1.0).is_none());
        }
    }
}
