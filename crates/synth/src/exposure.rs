//! Exposure and detector: quantum noise (variance grows with attenuation,
//! as for Poisson counts behind the patient) plus electronic noise, a mild
//! detector blur, a faint large-scale non-uniformity, dynamic-range
//! compression (for-presentation images), a per-image tone curve (gain,
//! offset, gamma) and quantisation to Bits Stored. Output is in MONOCHROME2
//! sense.

use std::sync::OnceLock;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::grid::{add_upsampled, blur, value_noise, Grid, Weight};
use super::plan::Plan;
use super::rng::{case_rng, normal, uniform, Purpose};
use super::spec::Modality;

/// Stored values (MONOCHROME2 sense) and the VOI window that shows them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exposed {
    pub pixels: Vec<u16>,
    pub window_center: f64,
    pub window_width: f64,
}

/// Per-image exposure and processing parameters.
#[derive(Debug, Clone, PartialEq)]
struct Exposure {
    /// Detected quanta per mm² behind zero attenuation.
    dose_per_mm2: f32,
    /// Electronic noise relative to the unattenuated signal.
    electronic: f32,
    /// Detector blur, pixels.
    blur_px: f32,
    gamma: f32,
    /// Output offset and gain as fractions of the stored range.
    offset: f32,
    gain: f32,
    /// Dynamic-range compression: this fraction of the large-scale
    /// attenuation (Gaussian of `equalize_mm`) is subtracted, as processed
    /// chest films do; 0 for unprocessed (for-processing) images.
    equalize: f32,
    equalize_mm: f32,
}

impl Exposure {
    fn sample<R: Rng>(rng: &mut R, modality: Modality) -> Exposure {
        let dose = uniform(rng, 30_000f32.ln(), 150_000f32.ln()).exp();
        let mut e = Exposure {
            dose_per_mm2: dose,
            electronic: uniform(rng, 0.001, 0.003),
            blur_px: uniform(rng, 0.55, 1.1),
            gamma: normal(rng, 1.0, 0.12).clamp(0.75, 1.3),
            offset: uniform(rng, 0.03, 0.12),
            gain: uniform(rng, 0.68, 0.86),
            equalize: uniform(rng, 0.15, 0.3),
            equalize_mm: uniform(rng, 30.0, 50.0),
        };
        if modality == Modality::DxForProcessing {
            e.equalize = 0.0;
            e.gamma = 1.0;
            e.offset = 0.15;
            e.gain = 0.55;
        }
        e
    }
}

/// Turns a noiseless attenuation map into stored values.
pub(crate) fn expose(mut atten: Grid, plan: &Plan, seed: u64, index: u64) -> Exposed {
    let mut rng = case_rng(seed, index, Purpose::Exposure);
    let e = Exposure::sample(&mut rng, plan.modality);
    let mut shift = low_pass(&atten, e.equalize_mm / plan.spacing_mm);
    shift.data.iter_mut().for_each(|v| *v *= -e.equalize);
    let (lo, hi) = body_range(&atten, &shift);
    let cell = 150.0 / plan.spacing_mm / LOW_PASS_FACTOR as f32;
    let uneven = value_noise(shift.w, shift.h, cell, &mut rng);
    for (s, u) in shift.data.iter_mut().zip(&uneven.data) {
        *s += 0.03 * (hi - lo) * u;
    }
    let quanta = e.dose_per_mm2 * plan.spacing_mm * plan.spacing_mm;
    add_noise(&mut atten, quanta, e.electronic, &mut rng);
    blur(&mut atten, e.blur_px);
    add_upsampled(&mut atten, &shift, LOW_PASS_FACTOR, 1.0, Weight::One);
    let max = ((1u32 << plan.bits) - 1) as f32;
    let tone = ToneCurve::new(&e, lo, hi, max);
    let pixels = atten.data.iter().map(|&a| tone.apply(a)).collect();
    let (v0, v1) = (max * e.offset, max * (e.offset + e.gain));
    Exposed {
        pixels,
        window_center: ((v0 + v1) / 2.0).round() as f64,
        window_width: ((v1 - v0) * 1.05).round().max(2.0) as f64,
    }
}

/// Downsampling factor of the large-scale attenuation.
const LOW_PASS_FACTOR: usize = 8;

/// The large-scale attenuation: box average over 8 × 8 pixels, then a
/// Gaussian of `sigma_px` (full-resolution pixels).
fn low_pass(atten: &Grid, sigma_px: f32) -> Grid {
    let f = LOW_PASS_FACTOR;
    let mut small = Grid::new(atten.w.div_ceil(f), atten.h.div_ceil(f));
    let mut counts = vec![0u32; small.w * small.h];
    for y in 0..atten.h {
        let row = atten.row(y);
        let base = (y / f) * small.w;
        for (x, &a) in row.iter().enumerate() {
            small.data[base + x / f] += a;
            counts[base + x / f] += 1;
        }
    }
    for (v, &n) in small.data.iter_mut().zip(&counts) {
        *v /= n.max(1) as f32;
    }
    blur(&mut small, sigma_px / f as f32);
    small
}

/// The 0.5 % quantile and 6 % above the 99.9 % quantile of attenuation plus
/// the large-scale `shift` inside the body (pixels with attenuation above
/// 0.3, every third one): what the tone curve maps to its ends.
fn body_range(atten: &Grid, shift: &Grid) -> (f32, f32) {
    const BINS: usize = 4096;
    const BOTTOM: f32 = -3.0;
    const TOP: f32 = 6.0;
    let scale = BINS as f32 / (TOP - BOTTOM);
    let mut hist = vec![0u32; BINS];
    let mut n = 0u32;
    for (i, &a) in atten.data.iter().enumerate().step_by(3) {
        if a <= 0.3 {
            continue;
        }
        let (x, y) = (i % atten.w / LOW_PASS_FACTOR, i / atten.w / LOW_PASS_FACTOR);
        let v = a + shift.at(x.min(shift.w - 1), y.min(shift.h - 1));
        hist[(((v - BOTTOM) * scale).max(0.0) as usize).min(BINS - 1)] += 1;
        n += 1;
    }
    let quantile = |q: f32| {
        let target = (q * n as f32) as u32;
        let mut sum = 0;
        for (i, &c) in hist.iter().enumerate() {
            sum += c;
            if sum > target {
                return BOTTOM + (i as f32 + 0.5) / scale;
            }
        }
        TOP
    };
    let (lo, hi) = (quantile(0.005), quantile(0.999));
    let hi = hi + 0.06 * (hi - lo);
    (lo, hi.max(lo + 0.1))
}

/// 65 536 standard normal samples, made once from a fixed seed, indexed by
/// random 16-bit numbers: four noise samples per 64 random bits.
fn normal_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_0FC0_FFEE);
        (0..65_536).map(|_| normal(&mut rng, 0.0, 1.0)).collect()
    })
}

/// Adds noise with standard deviation σ(A) = sqrt(e^A / N + (ε e^A)²): the
/// log of Poisson counts N e^−A plus electronic noise ε. σ is tabulated.
fn add_noise<R: RngCore>(atten: &mut Grid, quanta: f32, electronic: f32, rng: &mut R) {
    const STEPS: usize = 1024;
    const TOP: f32 = 6.0;
    let sigma: Vec<f32> = (0..=STEPS)
        .map(|i| {
            let t = (i as f32 * TOP / STEPS as f32).exp();
            (t / quanta + (electronic * t).powi(2)).sqrt()
        })
        .collect();
    let table = normal_table();
    let scale = STEPS as f32 / TOP;
    for chunk in atten.data.chunks_mut(4) {
        let bits = rng.next_u64();
        for (n, a) in chunk.iter_mut().enumerate() {
            let z = table[((bits >> (16 * n)) & 0xFFFF) as usize];
            let s = sigma[((a.max(0.0) * scale) as usize).min(STEPS)];
            *a += z * s;
        }
    }
}

/// Attenuation → stored value: `max × (offset + gain × curve(t))` with
/// `t = (A − lo) / (hi − lo)` and `curve = t^γ` on [0, 1], extended with
/// shallow slopes beyond; tabulated over t ∈ [−0.6, 1.6].
struct ToneCurve {
    lut: Vec<f32>,
    lo: f32,
    inv_span: f32,
}

impl ToneCurve {
    const STEPS: usize = 8192;
    const T0: f32 = -0.6;
    const T1: f32 = 1.6;

    fn new(e: &Exposure, lo: f32, hi: f32, max: f32) -> ToneCurve {
        let lut = (0..=Self::STEPS)
            .map(|i| {
                let t = Self::T0 + (Self::T1 - Self::T0) * i as f32 / Self::STEPS as f32;
                let curve = if t < 0.0 {
                    0.2 * t
                } else if t > 1.0 {
                    1.0 + 0.15 * (t - 1.0)
                } else {
                    t.powf(e.gamma)
                };
                (max * (e.offset + e.gain * curve)).clamp(0.0, max)
            })
            .collect();
        ToneCurve {
            lut,
            lo,
            inv_span: 1.0 / (hi - lo),
        }
    }

    #[inline]
    fn apply(&self, a: f32) -> u16 {
        let t = (a - self.lo) * self.inv_span;
        let pos = ((t - Self::T0) / (Self::T1 - Self::T0) * Self::STEPS as f32)
            .clamp(0.0, Self::STEPS as f32 - 1e-3);
        let i = pos as usize;
        let v = self.lut[i] + (self.lut[i + 1] - self.lut[i]) * (pos - i as f32);
        (v + 0.5) as u16
    }
}
