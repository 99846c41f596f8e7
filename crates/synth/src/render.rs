//! The anatomy stage of the pipeline: draws a frontal or lateral chest on an
//! oversized canvas, then rotates it by a few degrees and crops it to the
//! output size ([`Scene`]). Findings and exposure follow in their modules.

use std::f32::consts::PI;

use super::anatomy::{airways, body_and_lungs, soft_extras, Canvas, Frontal};
use super::grid::{rotate_pair, Grid};
use super::lateral::{body_and_lung, bones_and_airway, Lateral};
use super::plan::Plan;
use super::rng::{case_rng, normal, uniform, Purpose};
use super::skeleton::{clavicles, ribs, shoulders, spine, Skeleton};
use super::spec::View;
use super::vessels::{texture, vessels};

/// Where the anatomy ended up in the output image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placement {
    /// The canvas the anatomy was drawn on.
    pub canvas: Canvas,
    /// Rotation of the anatomy, radians.
    pub angle: f32,
    /// Output width.
    pub out_w: usize,
    /// Output height.
    pub out_h: usize,
}

impl Placement {
    /// Output-image pixel position of an anatomy point given in mm.
    pub fn out_px(&self, x_mm: f32, y_mm: f32) -> (f32, f32) {
        let (px, py) = self.canvas.px(x_mm, y_mm);
        let dx = px - self.canvas.w as f32 / 2.0;
        let dy = py - self.canvas.h as f32 / 2.0;
        let (s, c) = self.angle.sin_cos();
        (
            self.out_w as f32 / 2.0 + c * dx + s * dy,
            self.out_h as f32 / 2.0 - s * dx + c * dy,
        )
    }
}

/// The noiseless attenuation image of a case, before findings and exposure.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    /// Attenuation (larger = more), output size.
    pub atten: Grid,
    /// Lung depth 0..1, output size.
    pub lung: Grid,
    /// Attenuation removed by a full lung: the lung contrast scale.
    pub air: f32,
    /// Anatomy → output mapping.
    pub place: Placement,
    /// Frontal anatomy parameters (None for a lateral).
    pub frontal: Option<Frontal>,
}

/// Renders the anatomy of a planned case.
pub(crate) fn render_scene(plan: &Plan, seed: u64, index: u64) -> Scene {
    let mut rng = case_rng(seed, index, Purpose::Anatomy);
    let angle = uniform(&mut rng, -4.0, 4.0) * PI / 180.0;
    let canvas = canvas_for(plan, angle, &mut rng);
    let mut atten = Grid::new(canvas.w, canvas.h);
    let mut lung = Grid::new(canvas.w, canvas.h);
    let (air, frontal) = if plan.view == View::Lateral {
        let p = Lateral::sample(&mut rng);
        body_and_lung(&p, &canvas, &mut atten, &mut lung);
        bones_and_airway(&p, &canvas, &mut rng, &mut atten);
        texture(p.air, &canvas, &mut rng, &mut atten, &lung);
        (p.air, None)
    } else {
        let f = Frontal::sample(&mut rng, plan.view);
        draw_frontal(&f, &canvas, &mut rng, &mut atten, &mut lung);
        (f.air, Some(f))
    };
    let (w, h) = (plan.width as usize, plan.height as usize);
    let (cx, cy) = (canvas.w as f32 / 2.0, canvas.h as f32 / 2.0);
    let (atten, lung) = rotate_pair(&atten, &lung, w, h, angle, cx, cy);
    let place = Placement {
        canvas,
        angle,
        out_w: w,
        out_h: h,
    };
    Scene {
        atten,
        lung,
        air,
        place,
        frontal,
    }
}

/// A canvas that covers the output image rotated by `angle`, with the
/// anatomy shifted sideways a little and the lung apices 5–11 % below the
/// top of the image.
fn canvas_for<R: rand::Rng>(plan: &Plan, angle: f32, rng: &mut R) -> Canvas {
    let shift_mm = normal(rng, 0.0, 8.0).clamp(-20.0, 20.0);
    let apex_frac = uniform(rng, 0.05, 0.11);
    let (w, h) = (plan.width as f32, plan.height as f32);
    let (s, c) = (angle.sin().abs(), angle.cos());
    let cw = (w * c + h * s).ceil() as usize + 4;
    let ch = (w * s + h * c).ceil() as usize + 4;
    let k = 1.0 / plan.spacing_mm;
    let top = (ch as f32 - h) / 2.0;
    let apex = if plan.view == View::Lateral {
        apex_frac + 0.03
    } else {
        apex_frac
    };
    Canvas {
        w: cw,
        h: ch,
        k,
        ox: cw as f32 / 2.0 + shift_mm * k,
        oy: top + apex * h,
    }
}

/// All layers of a frontal chest, in drawing order.
fn draw_frontal<R: rand::Rng>(
    f: &Frontal,
    c: &Canvas,
    rng: &mut R,
    atten: &mut Grid,
    lung: &mut Grid,
) {
    body_and_lungs(f, c, atten, lung);
    airways(f, c, atten);
    soft_extras(f, c, rng, atten);
    let bones = Skeleton::sample(rng, f);
    spine(&bones, c, atten);
    ribs(&bones, f, c, atten, lung);
    clavicles(&bones, f, c, atten, lung);
    shoulders(f, c, rng, atten);
    vessels(f, c, rng, atten, lung);
    texture(f.air, c, rng, atten, lung);
}
