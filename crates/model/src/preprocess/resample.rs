//! Separable resampling of a grey image through a [`Geometry`].

use super::{Geometry, Interpolation};
use cxr_ingest::GreyImage;

/// Source taps of one output pixel along one axis: `(first index, weights)`.
type Taps = (usize, Vec<f32>);

/// The model-input plane (`model_height × model_width`, row-major) of
/// `image` under `geometry`, grey in `[0, 1]` with 0 = black. Output pixels
/// whose centre falls outside the image are black.
pub fn resample(image: &GreyImage, geometry: &Geometry, interpolation: Interpolation) -> Vec<f32> {
    let (mw, mh) = (
        geometry.model_width as usize,
        geometry.model_height as usize,
    );
    let (w, h) = (image.width as usize, image.height as usize);
    let xs = axis_taps(mw, w, geometry.scale_x, geometry.offset_x, interpolation);
    let ys = axis_taps(mh, h, geometry.scale_y, geometry.offset_y, interpolation);
    let mut out = vec![0.0f32; mw * mh];

    // The source columns the horizontal taps read.
    let col_lo = xs.iter().filter(|t| !t.1.is_empty()).map(|t| t.0).min();
    let col_hi = xs
        .iter()
        .filter(|t| !t.1.is_empty())
        .map(|t| t.0 + t.1.len())
        .max();
    let (Some(col_lo), Some(col_hi)) = (col_lo, col_hi) else {
        return out;
    };
    // Vertical pass first, one output row at a time: a weighted sum of
    // whole source rows (contiguous, so it vectorises) over the columns
    // used; then the horizontal taps over that one row. The sums are the
    // same as horizontal-then-vertical, in another order (f32 rounding
    // differs by well under 1e-6 of the output range; tested).
    let unit = 1.0 / 65535.0;
    let mut column_sums = vec![0.0f32; col_hi - col_lo];
    for (dst, (first, weights)) in out.chunks_exact_mut(mw).zip(&ys) {
        if weights.is_empty() {
            continue;
        }
        column_sums.fill(0.0);
        for (k, &wt) in weights.iter().enumerate() {
            let r = first + k;
            let src = &image.pixels[r * w + col_lo..r * w + col_hi];
            for (acc, &p) in column_sums.iter_mut().zip(src) {
                *acc += wt * f32::from(p);
            }
        }
        for (d, (first, weights)) in dst.iter_mut().zip(&xs) {
            let v: f32 = weights
                .iter()
                .zip(&column_sums[first.saturating_sub(col_lo)..])
                .map(|(wt, &s)| wt * s)
                .sum();
            *d = (v * unit).clamp(0.0, 1.0);
        }
    }
    out
}

/// Taps of every output index `0..out_len` along an axis of `src_len` source
/// pixels, for `out = src · scale + offset`.
fn axis_taps(
    out_len: usize,
    src_len: usize,
    scale: f64,
    offset: f64,
    interpolation: Interpolation,
) -> Vec<Taps> {
    if interpolation.is_convention() {
        return convention_taps(out_len, src_len, scale, offset, interpolation);
    }
    let n = src_len as f64;
    (0..out_len)
        .map(|o| {
            let centre = (o as f64 + 0.5 - offset) / scale;
            if !(0.0..n).contains(&centre) {
                return (0, Vec::new());
            }
            match interpolation {
                Interpolation::Nearest => ((centre.floor() as usize).min(src_len - 1), vec![1.0]),
                Interpolation::Area if scale < 1.0 => {
                    let a = (o as f64 - offset) / scale;
                    let b = (o as f64 + 1.0 - offset) / scale;
                    box_taps(a, b, src_len)
                }
                Interpolation::Bilinear | Interpolation::Area => linear_taps(centre, src_len),
                _ => unreachable!("conventions take their own taps"),
            }
        })
        .collect()
}

impl Interpolation {
    /// A training framework's resize rule (rather than cxr-triage's own).
    fn is_convention(self) -> bool {
        !matches!(
            self,
            Interpolation::Nearest | Interpolation::Bilinear | Interpolation::Area
        )
    }
}

/// Taps of a framework's resize. The framework maps `content` output
/// pixels onto the `src_len` source pixels (`content` = the scaled length,
/// whole pixels; output pixels before `offset`, rounded, or past the
/// content are padding: black), with its own arithmetic.
fn convention_taps(
    out_len: usize,
    src_len: usize,
    scale: f64,
    offset: f64,
    interpolation: Interpolation,
) -> Vec<Taps> {
    let content = (src_len as f64 * scale).round().max(1.0) as usize;
    // Where the content starts: after the padding (letterbox), or before
    // the input (a centre crop cuts `-start` output pixels).
    let start = offset.round() as i64;
    // Source pixels per output pixel, as the frameworks compute it.
    let s = src_len as f64 / content as f64;
    let last = src_len - 1;
    let single = |i: usize| (i.min(last), vec![1.0f32]);
    // Pillow's NEAREST advances the sample point by `s` per output pixel.
    // (`pil_x` is the point of output pixel `pil_k`.)
    let (mut pil_x, mut pil_k) = (s * 0.5, 0usize);
    (0..out_len)
        .map(|o| {
            let k = o as i64 - start;
            if k < 0 || k >= content as i64 {
                return (0, Vec::new());
            }
            let k = k as usize;
            match interpolation {
                Interpolation::PilNearest | Interpolation::OpencvNearestExact => {
                    while pil_k < k {
                        pil_x += s;
                        pil_k += 1;
                    }
                    single(pil_x as usize)
                }
                Interpolation::OpencvNearest => {
                    // OpenCV: the inverse of dsize/ssize, then floor.
                    let ifx = 1.0 / (content as f64 / src_len as f64);
                    single((k as f64 * ifx).floor() as usize)
                }
                Interpolation::TorchNearest => {
                    let scale32 = src_len as f32 / content as f32;
                    single((k as f32 * scale32).floor() as usize)
                }
                Interpolation::TorchNearestExact => {
                    let scale32 = src_len as f32 / content as f32;
                    single(((k as f32 + 0.5) * scale32).floor() as usize)
                }
                Interpolation::OpencvArea if s > 1.0 => {
                    box_taps(k as f64 * s, (k + 1) as f64 * s, src_len)
                }
                Interpolation::OpencvLinear | Interpolation::OpencvArea => {
                    half_pixel_linear_taps(k, s, src_len)
                }
                Interpolation::OpencvCubic => cubic_taps(k, s, src_len),
                Interpolation::Skimage => skimage_taps(k, s, src_len),
                _ => pil_taps(k, s, src_len, interpolation),
            }
        })
        .collect()
}

/// OpenCV's `INTER_LINEAR` (torch's and TensorFlow's `bilinear`): the
/// half-pixel centre, clamped at 0, two taps, the last pixel replicated.
fn half_pixel_linear_taps(k: usize, s: f64, src_len: usize) -> Taps {
    let last = src_len - 1;
    let f = ((k as f64 + 0.5) * s - 0.5).max(0.0);
    let i = f.floor() as usize;
    if i >= last {
        (last, vec![1.0])
    } else {
        let t = (f - i as f64) as f32;
        (i, vec![1.0 - t, t])
    }
}

/// scikit-image's `resize` (order 1, `mode="constant"`, anti-aliased):
/// SciPy's `gaussian_filter1d` (σ = max(0, (s − 1)/2), radius
/// ⌊4σ + ½⌋, zeros outside) composed with `ndimage.zoom`'s linear
/// interpolation at `(k + ½)·s − ½` (`grid_mode=True`, zeros outside).
fn skimage_taps(k: usize, s: f64, src_len: usize) -> Taps {
    let sigma = ((s - 1.0) / 2.0).max(0.0);
    let kernel: Vec<f64> = if sigma > 1e-15 {
        let radius = (4.0 * sigma + 0.5) as i64;
        let raw: Vec<f64> = (-radius..=radius)
            .map(|x| (-0.5 * (x as f64 / sigma).powi(2)).exp())
            .collect();
        let total: f64 = raw.iter().sum();
        raw.into_iter().map(|w| w / total).collect()
    } else {
        vec![1.0]
    };
    let radius = (kernel.len() / 2) as i64;
    let f = (k as f64 + 0.5) * s - 0.5;
    let j0 = f.floor() as i64;
    let t = f - j0 as f64;
    let n = src_len as i64;
    // Source pixel i contributes through filtered samples j0 and j0 + 1.
    let lo = (j0 - radius).max(0);
    let hi = (j0 + 1 + radius).min(n - 1);
    if hi < lo {
        return (0, Vec::new());
    }
    let mut weights = vec![0.0f64; (hi - lo + 1) as usize];
    for (j, wj) in [(j0, 1.0 - t), (j0 + 1, t)] {
        if wj == 0.0 || j < 0 || j >= n {
            continue;
        }
        for (d, g) in kernel.iter().enumerate() {
            let i = j + d as i64 - radius;
            if (lo..=hi).contains(&i) {
                weights[(i - lo) as usize] += wj * g;
            }
        }
    }
    (lo as usize, weights.into_iter().map(|w| w as f32).collect())
}

/// OpenCV's `INTER_CUBIC` (and torch's `bicubic`): a = −0.75, four taps
/// around the half-pixel centre, edge pixels replicated.
fn cubic_taps(k: usize, s: f64, src_len: usize) -> Taps {
    const A: f64 = -0.75;
    let w = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    let f = (k as f64 + 0.5) * s - 0.5;
    let i = f.floor();
    let t = f - i;
    // Taps i−1 ..= i+2, clamped to the image: gather them per source pixel.
    let last = src_len as i64 - 1;
    let idx: Vec<usize> = (-1..=2)
        .map(|d| (i as i64 + d).clamp(0, last) as usize)
        .collect();
    let weights = [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)];
    let first = idx[0];
    let mut taps = vec![0.0f32; idx[3] - first + 1];
    for (&j, &wt) in idx.iter().zip(&weights) {
        taps[j - first] += wt as f32;
    }
    (first, taps)
}

/// Pillow's separable resampling filters (`Resample.c`'s coefficients):
/// the filter is widened by the scale when down-scaling (anti-aliasing),
/// its support cut to the image, and the weights normalised.
fn pil_taps(k: usize, s: f64, src_len: usize, interpolation: Interpolation) -> Taps {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    };
    let (support, filter): (f64, &dyn Fn(f64) -> f64) = match interpolation {
        Interpolation::PilBox => (0.5, &|x: f64| if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 }),
        Interpolation::PilBilinear => (1.0, &|x: f64| (1.0 - x.abs()).max(0.0)),
        Interpolation::PilHamming => (1.0, &|x: f64| {
            let x = x.abs();
            if x >= 1.0 {
                0.0
            } else if x == 0.0 {
                1.0
            } else {
                let p = x * std::f64::consts::PI;
                p.sin() / p * (0.54 + 0.46 * p.cos())
            }
        }),
        Interpolation::PilBicubic => (2.0, &|x: f64| {
            const A: f64 = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            } else {
                0.0
            }
        }),
        _ => (3.0, &|x: f64| {
            if (-3.0..3.0).contains(&x) {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }),
    };
    let filterscale = s.max(1.0);
    let support = support * filterscale;
    let centre = (k as f64 + 0.5) * s;
    // Pillow truncates toward zero, then clamps.
    let xmin = ((centre - support + 0.5) as i64).max(0) as usize;
    let xmax = ((centre + support + 0.5) as i64).clamp(0, src_len as i64) as usize;
    let raw: Vec<f64> = (xmin..xmax.max(xmin))
        .map(|x| filter((x as f64 - centre + 0.5) / filterscale))
        .collect();
    let total: f64 = raw.iter().sum();
    let weights = raw
        .iter()
        .map(|w| {
            if total != 0.0 {
                (w / total) as f32
            } else {
                0.0
            }
        })
        .collect();
    (xmin, weights)
}

/// Two taps around `centre` (edge pixels replicated).
fn linear_taps(centre: f64, src_len: usize) -> Taps {
    let c = (centre - 0.5).max(0.0);
    let i0 = (c.floor() as usize).min(src_len - 1);
    let t = (c - i0 as f64) as f32;
    if i0 + 1 >= src_len || t == 0.0 {
        (i0, vec![1.0])
    } else {
        (i0, vec![1.0 - t, t])
    }
}

/// Box filter over the footprint `[a, b)`; the part outside the image
/// contributes black.
fn box_taps(a: f64, b: f64, src_len: usize) -> Taps {
    let first = a.floor().max(0.0) as usize;
    let last = (b.ceil().max(0.0) as usize).min(src_len);
    let width = b - a;
    let weights = (first..last)
        .map(|i| {
            let cover = b.min(i as f64 + 1.0) - a.max(i as f64);
            (cover.max(0.0) / width) as f32
        })
        .collect();
    (first, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ResizeMode;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> GreyImage {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        GreyImage {
            width: w,
            height: h,
            pixels,
        }
    }

    /// The resampler as it was (horizontal pass, then vertical): the
    /// model contract the faster one must reproduce within 1e-6.
    fn resample_reference(
        image: &GreyImage,
        geometry: &Geometry,
        interpolation: Interpolation,
    ) -> Vec<f32> {
        let (mw, mh) = (
            geometry.model_width as usize,
            geometry.model_height as usize,
        );
        let (w, h) = (image.width as usize, image.height as usize);
        let xs = axis_taps(mw, w, geometry.scale_x, geometry.offset_x, interpolation);
        let ys = axis_taps(mh, h, geometry.scale_y, geometry.offset_y, interpolation);
        let row_lo = ys.iter().filter(|t| !t.1.is_empty()).map(|t| t.0).min();
        let row_hi = ys
            .iter()
            .filter(|t| !t.1.is_empty())
            .map(|t| t.0 + t.1.len())
            .max();
        let mut out = vec![0.0f32; mw * mh];
        let (Some(row_lo), Some(row_hi)) = (row_lo, row_hi) else {
            return out;
        };
        let mut rows = vec![0.0f32; (row_hi - row_lo) * mw];
        for (r, dst) in (row_lo..row_hi).zip(rows.chunks_exact_mut(mw)) {
            let src = &image.pixels[r * w..(r + 1) * w];
            for (d, (first, weights)) in dst.iter_mut().zip(&xs) {
                *d = weights
                    .iter()
                    .zip(&src[*first..])
                    .map(|(wt, &p)| wt * f32::from(p))
                    .sum();
            }
        }
        let unit = 1.0 / 65535.0;
        for (dst, (first, weights)) in out.chunks_exact_mut(mw).zip(&ys) {
            for (k, wt) in weights.iter().enumerate() {
                let src = &rows[(first + k - row_lo) * mw..(first + k - row_lo + 1) * mw];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += wt * s;
                }
            }
            for d in dst.iter_mut() {
                *d = (*d * unit).clamp(0.0, 1.0);
            }
        }
        out
    }

    /// Noise with structure: what a film's values look like to the sums.
    fn film_like(w: u32, h: u32, seed: u64) -> GreyImage {
        image(w, h, |x, y| {
            // A hash of the position: reproducible noise.
            let mut z = (u64::from(x) << 32 | u64::from(y)) ^ seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let base = ((f64::from(x) / f64::from(w) * 3.0).sin()
                * (f64::from(y) / f64::from(h) * 2.0).cos()
                * 20000.0
                + 30000.0) as i64;
            (base + (z % 8000) as i64 - 4000).clamp(0, 65535) as u16
        })
    }

    #[test]
    fn the_fast_resampler_reproduces_the_reference_within_1e_6() {
        let modes = [
            ResizeMode::Letterbox,
            ResizeMode::Stretch,
            ResizeMode::CenterCrop,
        ];
        let interpolations = [
            Interpolation::Area,
            Interpolation::Bilinear,
            Interpolation::Nearest,
        ];
        let mut worst = 0.0f32;
        for (i, (w, h)) in [
            (2560, 2440),
            (1841, 1955),
            (3000, 2900),
            (300, 200),
            (97, 301),
        ]
        .into_iter()
        .enumerate()
        {
            let img = film_like(w, h, 7 + i as u64);
            for (ow, oh) in [(256, 256), (224, 224), (512, 384)] {
                for mode in modes {
                    let g = Geometry::fit(w, h, ow, oh, mode);
                    for interpolation in interpolations {
                        let fast = resample(&img, &g, interpolation);
                        let reference = resample_reference(&img, &g, interpolation);
                        for (a, b) in fast.iter().zip(&reference) {
                            worst = worst.max((a - b).abs());
                        }
                    }
                }
            }
        }
        assert!(worst <= 1e-6, "largest difference {worst}");
    }

    #[test]
    fn area_halving_averages_two_by_two_blocks() {
        let img = image(4, 4, |x, y| if (x + y) % 2 == 0 { 65535 } else { 0 });
        let g = Geometry::fit(4, 4, 2, 2, ResizeMode::Stretch);
        let out = resample(&img, &g, Interpolation::Area);
        for v in out {
            assert!((v - 0.5).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn letterbox_pads_black_and_keeps_white_inside() {
        let img = image(100, 200, |_, _| 65535);
        let g = Geometry::fit(100, 200, 64, 64, ResizeMode::Letterbox);
        for interp in [
            Interpolation::Area,
            Interpolation::Bilinear,
            Interpolation::Nearest,
        ] {
            let out = resample(&img, &g, interp);
            // 100 × 0.32 = 32 columns of image, 16 of padding each side.
            assert_eq!(out[32 * 64 + 5], 0.0, "{interp:?}");
            assert_eq!(out[32 * 64 + 58], 0.0, "{interp:?}");
            assert!((out[32 * 64 + 32] - 1.0).abs() < 1e-6, "{interp:?}");
            assert!((out[32 * 64 + 16] - 1.0).abs() < 1e-6, "{interp:?}");
        }
    }

    #[test]
    fn a_bright_spot_lands_where_the_geometry_says() {
        // A 10×10 white square at (700..710, 300..310) in a 1000×800 image.
        let img = image(1000, 800, |x, y| {
            if (700..710).contains(&x) && (300..310).contains(&y) {
                65535
            } else {
                0
            }
        });
        for mode in [
            ResizeMode::Letterbox,
            ResizeMode::CenterCrop,
            ResizeMode::Stretch,
        ] {
            let g = Geometry::fit(1000, 800, 128, 128, mode);
            let out = resample(&img, &g, Interpolation::Area);
            let (argmax, _) =
                out.iter().enumerate().fold(
                    (0, f32::MIN),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                );
            let (mx, my) = ((argmax % 128) as f64 + 0.5, (argmax / 128) as f64 + 0.5);
            let (x, y) = g.to_image(mx, my);
            assert!(
                (695.0..715.0).contains(&x) && (295.0..315.0).contains(&y),
                "{mode:?}: {x},{y}"
            );
        }
    }

    #[test]
    fn upscaling_interpolates_between_pixels() {
        let img = image(2, 1, |x, _| if x == 0 { 0 } else { 65535 });
        let g = Geometry::fit(2, 1, 4, 1, ResizeMode::Stretch);
        let out = resample(&img, &g, Interpolation::Area);
        assert_eq!(out[0], 0.0);
        assert!(
            (out[1] - 0.25).abs() < 1e-6 && (out[2] - 0.75).abs() < 1e-6,
            "{out:?}"
        );
        assert_eq!(out[3], 1.0);
    }
}
