//! A simple left-lateral chest: anterior to image left, spine to image right,
//! one combined lung field with the heart antero-inferiorly, sloping
//! diaphragm, sternum, thoracic vertebrae and faint oblique ribs. Good enough
//! for a view gate to see a lateral; findings are never placed on it.

use rand::Rng;

use super::anatomy::Canvas;
use super::grid::{blob, rect, stroke, Grid, Ink, Profile};
use super::rng::{normal, uniform};

/// Sampled parameters of a lateral chest (mm; origin mid-chest at apex height).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lateral {
    /// Half the antero-posterior chest depth.
    pub half_depth: f32,
    pub lung_h: f32,
    pub depth: f32,
    pub air: f32,
    pub heart: (f32, f32, f32, f32),
    pub kyphosis: f32,
}

impl Lateral {
    /// Draws a lateral chest.
    pub fn sample<R: Rng>(rng: &mut R) -> Lateral {
        let s = normal(rng, 1.0, 0.06).clamp(0.85, 1.15);
        let half_depth = 112.0 * s * uniform(rng, 0.92, 1.08);
        let lung_h = 255.0 * s * uniform(rng, 0.92, 1.06);
        Lateral {
            half_depth,
            lung_h,
            depth: uniform(rng, 2.5, 2.8),
            air: uniform(rng, 1.4, 1.7),
            heart: (
                -0.3 * half_depth,
                0.74 * lung_h,
                0.55 * half_depth * uniform(rng, 0.9, 1.1),
                0.32 * lung_h,
            ),
            kyphosis: uniform(rng, 6.0, 14.0),
        }
    }

    /// Antero-posterior extent of the lung at height `y`.
    fn extent(&self, y: f32) -> Option<(f32, f32)> {
        let t = y / self.lung_h;
        if t <= 0.0 || t >= 1.08 {
            return None;
        }
        let quarter = |s: f32| (1.0 - (1.0 - s.min(1.0)).powi(2)).sqrt();
        let d = self.half_depth;
        let front = 0.1 * d - (1.0 * d - 14.0) * quarter(t / 0.3);
        let back = 0.1 * d + (0.9 * d - 62.0) * quarter(t / 0.22);
        (front < back - 2.0).then_some((front, back))
    }

    /// y of the diaphragm at antero-posterior position `x`: lowest behind.
    fn diaphragm(&self, x: f32) -> f32 {
        let d = self.half_depth;
        let q = x / d;
        self.lung_h * (0.9 + 0.12 * q - 0.1 * (1.0 - q * q).max(0.0))
    }
}

/// Body, lung field and heart of a lateral view.
pub(crate) fn body_and_lung(p: &Lateral, c: &Canvas, atten: &mut Grid, lung: &mut Grid) {
    let xs: Vec<f32> = (0..c.w).map(|i| c.mm_x(i)).collect();
    let (hx, hy, hax, hay) = p.heart;
    for j in 0..c.h {
        let y = c.mm_y(j);
        let neck = ((-20.0 - y) / 60.0).clamp(0.0, 1.0);
        let half = p.half_depth * (1.08 - 0.4 * neck);
        let centre = 0.25 * p.half_depth * neck;
        let ext = p.extent(y);
        let (a_row, l_row) = (atten.row_mut(j), lung.row_mut(j));
        for (i, &x) in xs.iter().enumerate() {
            let r = (x - centre) / half;
            let r4 = r * r * r * r;
            a_row[i] = if r4 < 1.0 {
                p.depth * (1.0 - r4).sqrt()
            } else {
                0.0
            };
            let Some((front, back)) = ext else { continue };
            let floor = p.diaphragm(x);
            if x <= front || x >= back || y >= floor {
                continue;
            }
            let ramp = |s: f32| s.clamp(0.0, 1.0).sqrt();
            let mut d = ramp((x - front) / 8.0) * ramp((back - x) / 8.0) * ramp((floor - y) / 6.0);
            let (ex, ey) = ((x - hx) / hax, (y - hy) / hay);
            let e2 = ex * ex + ey * ey;
            if e2 < 1.0 {
                d *= 1.0 - 0.7 * Profile::Plateau.eval(e2);
            }
            d *= 0.55 + 0.45 * (y / (0.4 * p.lung_h)).clamp(0.0, 1.0);
            l_row[i] = d;
            a_row[i] -= p.air * d;
        }
    }
}

/// Spine, sternum, ribs and trachea of a lateral view.
pub(crate) fn bones_and_airway<R: Rng>(p: &Lateral, c: &Canvas, rng: &mut R, atten: &mut Grid) {
    let step = p.lung_h * uniform(rng, 0.088, 0.1);
    spine(p, c, rng, atten, step);
    let k = c.k;
    let d = p.half_depth;
    let sternum = Ink::new(0.2, Profile::Cortical);
    let (top, bottom) = (
        c.px(-d + 12.0, 0.06 * p.lung_h),
        c.px(-d + 24.0, 0.62 * p.lung_h),
    );
    stroke(atten, top, bottom, (7.0 * k, 6.0 * k), sternum);
    let rib = Ink::new(0.06, Profile::Cortical);
    for n in 0..10 {
        let y = n as f32 * step;
        for shift in [0.0, 9.0] {
            let back = c.px(d - 60.0 + shift, y + shift);
            let front = c.px(-d + 25.0, y + 0.32 * p.lung_h + shift);
            stroke(atten, back, front, (4.5 * k, 4.5 * k), rib);
        }
    }
    let trachea_top = c.px(0.0, c.mm_y(0) - 10.0);
    let carina = c.px(0.15 * d, 0.33 * p.lung_h);
    let air = Ink::new(-0.12 * p.air, Profile::Tube);
    stroke(atten, trachea_top, carina, (9.0 * k, 7.0 * k), air);
}

/// Vertebral bodies (boxes along a kyphotic curve) and posterior elements.
fn spine<R: Rng>(p: &Lateral, c: &Canvas, rng: &mut R, atten: &mut Grid, step: f32) {
    let k = c.k;
    let y_top = c.mm_y(0);
    let count = ((c.mm_y(c.h) - y_top) / step).ceil() as i32 + 2;
    for v in -1..count {
        let y = y_top + v as f32 * step;
        let bend = 1.0 - ((y - 0.45 * p.lung_h) / (0.9 * p.lung_h)).powi(2);
        let x = p.half_depth - 78.0 + p.kyphosis * bend.max(0.0);
        let (bx, by) = c.px(x, y);
        let amp = uniform(rng, 0.14, 0.2);
        rect(atten, bx, by, 17.0 * k, 0.42 * step * k, amp);
        let arch = c.px(x + 32.0, y + 0.25 * step);
        let ink = Ink::new(amp * 0.5, Profile::Soft);
        blob(atten, arch, (10.0 * k, 0.35 * step * k), ink);
    }
}
