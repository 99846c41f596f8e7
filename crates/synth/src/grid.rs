//! Float rasters and the drawing primitives the renderer composes images
//! from: strokes (tubes along a segment), bands (curves `y = f(x)`), blobs,
//! value noise, rotation and separable blur. Coordinates are pixels, x right
//! and y down; pixel (i, j) is sampled at its centre (i, j).

use rand::Rng;

/// A row-major raster of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// `w * h` values, row after row.
    pub data: Vec<f32>,
}

impl Grid {
    /// A `w` × `h` raster of zeros.
    pub fn new(w: usize, h: usize) -> Grid {
        Grid {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }

    /// The value at (x, y); callers keep x < w and y < h.
    #[inline]
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }

    /// The value at the nearest pixel to (x, y), 0 outside the raster.
    pub fn nearest(&self, x: f32, y: f32) -> f32 {
        let (xi, yi) = (x.round(), y.round());
        if xi < 0.0 || yi < 0.0 || xi >= self.w as f32 || yi >= self.h as f32 {
            return 0.0;
        }
        self.at(xi as usize, yi as usize)
    }

    /// Row `y`, mutable.
    #[inline]
    pub fn row_mut(&mut self, y: usize) -> &mut [f32] {
        &mut self.data[y * self.w..(y + 1) * self.w]
    }

    /// Row `y`.
    #[inline]
    pub fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.w..(y + 1) * self.w]
    }
}

/// Cross-section of a drawn shape as a function of the squared normalised
/// distance `d2` from its axis or centre (0 at the centre, 1 at the edge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Profile {
    /// Path length through a cylinder or sphere: `sqrt(1 − d²)`.
    Tube,
    /// A soft bump, `(1 − d²)²`, for diffuse opacities.
    Soft,
    /// A plateau with a soft rim, `1 − d⁸`, for flat plates.
    Plateau,
    /// Bone: a tube with a denser cortical rim.
    Cortical,
}

impl Profile {
    /// The profile at squared normalised distance `d2` (0 outside).
    #[inline]
    pub fn eval(self, d2: f32) -> f32 {
        if d2 >= 1.0 {
            return 0.0;
        }
        match self {
            Profile::Tube => (1.0 - d2).sqrt(),
            Profile::Soft => (1.0 - d2) * (1.0 - d2),
            Profile::Plateau => {
                let d4 = d2 * d2;
                1.0 - d4 * d4
            }
            Profile::Cortical => {
                let d = d2.sqrt();
                let rim = ((d - 0.72) / 0.28).max(0.0);
                0.65 * (1.0 - d2).sqrt() + 0.45 * rim * rim * (1.0 - d2).sqrt().max(0.3)
            }
        }
    }
}

/// How a stroke's amplitude is weighted per pixel.
#[derive(Clone, Copy)]
pub(crate) enum Weight<'a> {
    /// Same amplitude everywhere.
    One,
    /// Multiplied by another raster of the same size (e.g. lung depth).
    By(&'a Grid),
    /// `floor` outside the lungs rising to 1 where the lung depth (the
    /// raster) reaches 0.3: bones seen through soft tissue are fainter.
    Lung(&'a Grid, f32),
}

impl Weight<'_> {
    #[inline]
    fn at(&self, x: usize, y: usize) -> f32 {
        match self {
            Weight::One => 1.0,
            Weight::By(g) => g.at(x, y),
            Weight::Lung(g, floor) => floor + (1.0 - floor) * (g.at(x, y) * 3.3).min(1.0),
        }
    }
}

/// How a primitive is laid down: peak value, cross-section, per-pixel
/// weight, and whether it adds to the raster or keeps the larger value
/// (so that overlapping pieces of one vessel tree do not double up).
#[derive(Clone, Copy)]
pub(crate) struct Ink<'a> {
    pub amp: f32,
    pub profile: Profile,
    pub weight: Weight<'a>,
    pub max: bool,
    /// `amp` is per pixel of local radius (strokes): the peak follows the
    /// path length through a tapering tube instead of staying constant.
    pub per_radius: bool,
}

impl Ink<'static> {
    /// Adds `amp × profile`, unweighted.
    pub fn new(amp: f32, profile: Profile) -> Ink<'static> {
        Ink {
            amp,
            profile,
            weight: Weight::One,
            max: false,
            per_radius: false,
        }
    }
}

impl Ink<'_> {
    /// The same ink, weighted per pixel.
    pub fn weighted(self, weight: Weight<'_>) -> Ink<'_> {
        Ink {
            amp: self.amp,
            profile: self.profile,
            weight,
            max: self.max,
            per_radius: self.per_radius,
        }
    }

    /// The same ink, keeping the maximum instead of adding.
    pub fn maxed(self) -> Self {
        Ink { max: true, ..self }
    }

    /// The same ink with `amp` per pixel of local stroke radius.
    pub fn per_radius(self) -> Self {
        Ink {
            per_radius: true,
            ..self
        }
    }

    /// The same ink with its amplitude scaled.
    pub fn scaled(self, factor: f32) -> Self {
        Ink {
            amp: self.amp * factor,
            ..self
        }
    }

    #[inline]
    fn lay(&self, g: &mut Grid, x: usize, y: usize, d2: f32) {
        let v = self.amp * self.profile.eval(d2) * self.weight.at(x, y);
        let cell = &mut g.data[y * g.w + x];
        if !self.max {
            *cell += v;
        } else if v > *cell {
            *cell = v;
        }
    }
}

/// A tube from `p0` to `p1` whose radius goes from `radii.0` to `radii.1`.
/// Rasterised along the major axis, so the cost is proportional to length ×
/// width, not to the bounding box.
pub(crate) fn stroke(g: &mut Grid, p0: (f32, f32), p1: (f32, f32), radii: (f32, f32), ink: Ink) {
    let (dx, dy) = (p1.0 - p0.0, p1.1 - p0.1);
    if dx.abs() >= dy.abs() {
        stroke_major(g, (p0, p1), radii, ink, false);
    } else {
        let swap = |p: (f32, f32)| (p.1, p.0);
        stroke_major(g, (swap(p0), swap(p1)), radii, ink, true);
    }
}

/// `stroke` for a segment whose major axis is x (or y when `transposed`,
/// in which case the points come in as (y, x)).
fn stroke_major(
    g: &mut Grid,
    ends: ((f32, f32), (f32, f32)),
    radii: (f32, f32),
    ink: Ink,
    transposed: bool,
) {
    let (major_len, minor_len) = if transposed { (g.h, g.w) } else { (g.w, g.h) };
    let (p0, p1) = ends;
    let (a, b, ra, rb) = if p0.0 <= p1.0 {
        (p0, p1, radii.0, radii.1)
    } else {
        (p1, p0, radii.1, radii.0)
    };
    let span = (b.0 - a.0).max(1e-3);
    let slope = (b.1 - a.1) / span;
    let stretch = (1.0 + slope * slope).sqrt();
    let first = a.0.ceil().max(0.0) as i64;
    let last = (b.0.floor() as i64).min(major_len as i64 - 1);
    for i in first..=last {
        let t = (i as f32 - a.0) / span;
        let centre = a.1 + slope * (i as f32 - a.0);
        let half = (ra + (rb - ra) * t) * stretch;
        if half <= 0.0 {
            continue;
        }
        let lo = (centre - half).ceil().max(0.0) as i64;
        let hi = ((centre + half).floor() as i64).min(minor_len as i64 - 1);
        let inv = 1.0 / (half * half);
        let ink = if ink.per_radius {
            ink.scaled(half / stretch)
        } else {
            ink
        };
        for j in lo..=hi {
            let d = j as f32 - centre;
            let (x, y) = if transposed { (j, i) } else { (i, j) };
            ink.lay(g, x as usize, y as usize, d * d * inv);
        }
    }
}

/// A band along the curve `y = centre(x)` for `x` between `xs.0` and `xs.1`,
/// whose (perpendicular) half-thickness and amplitude factor are given by
/// `shape(x)`. Used for ribs and clavicles, which are graphs of x.
pub(crate) fn band(
    g: &mut Grid,
    xs: (f32, f32),
    centre: impl Fn(f32) -> f32,
    shape: impl Fn(f32) -> (f32, f32),
    ink: Ink,
) {
    let first = xs.0.min(xs.1).ceil().max(0.0) as i64;
    let last = (xs.0.max(xs.1).floor() as i64).min(g.w as i64 - 1);
    for i in first..=last {
        let x = i as f32;
        let yc = centre(x);
        let slope = centre(x + 0.5) - centre(x - 0.5);
        let (half, factor) = shape(x);
        let vhalf = half * (1.0 + slope * slope).sqrt();
        if vhalf <= 0.0 {
            continue;
        }
        let lo = (yc - vhalf).ceil().max(0.0) as i64;
        let hi = ((yc + vhalf).floor() as i64).min(g.h as i64 - 1);
        let inv = 1.0 / (vhalf * vhalf);
        let ink = ink.scaled(factor);
        for j in lo..=hi {
            let d = j as f32 - yc;
            ink.lay(g, i as usize, j as usize, d * d * inv);
        }
    }
}

/// An axis-aligned elliptical blob centred at `c` with radii `r`.
pub(crate) fn blob(g: &mut Grid, c: (f32, f32), r: (f32, f32), ink: Ink) {
    let ((cx, cy), (rx, ry)) = (c, r);
    if rx <= 0.0 || ry <= 0.0 {
        return;
    }
    let x0 = (cx - rx).ceil().max(0.0) as i64;
    let x1 = ((cx + rx).floor() as i64).min(g.w as i64 - 1);
    let y0 = (cy - ry).ceil().max(0.0) as i64;
    let y1 = ((cy + ry).floor() as i64).min(g.h as i64 - 1);
    let (irx2, iry2) = (1.0 / (rx * rx), 1.0 / (ry * ry));
    for y in y0..=y1 {
        let dy = y as f32 - cy;
        let dy2 = dy * dy * iry2;
        for x in x0..=x1 {
            let dx = x as f32 - cx;
            let d2 = dx * dx * irx2 + dy2;
            if d2 < 1.0 {
                ink.lay(g, x as usize, y as usize, d2);
            }
        }
    }
}

/// A rounded rectangle centred at (cx, cy) with half-sizes (hx, hy): the
/// product of two plateau profiles.
pub(crate) fn rect(g: &mut Grid, cx: f32, cy: f32, hx: f32, hy: f32, amp: f32) {
    if hx <= 0.0 || hy <= 0.0 {
        return;
    }
    let x0 = (cx - hx).ceil().max(0.0) as usize;
    let x1 = ((cx + hx).floor().max(0.0) as usize).min(g.w.saturating_sub(1));
    let y0 = (cy - hy).ceil().max(0.0) as usize;
    let y1 = ((cy + hy).floor().max(0.0) as usize).min(g.h.saturating_sub(1));
    for y in y0..=y1 {
        let dy = (y as f32 - cy) / hy;
        let py = amp * Profile::Plateau.eval(dy * dy);
        let w = g.w;
        for (x, v) in g.data[y * w..(y + 1) * w]
            .iter_mut()
            .enumerate()
            .take(x1 + 1)
            .skip(x0)
        {
            let dx = (x as f32 - cx) / hx;
            *v += py * Profile::Plateau.eval(dx * dx);
        }
    }
}

/// Smooth value noise in about [−1, 1]: a random lattice every `cell`
/// pixels, interpolated with a smoothstep. Per-column lattice positions are
/// tabulated so the inner loop is two lerps.
pub(crate) fn value_noise<R: Rng>(w: usize, h: usize, cell: f32, rng: &mut R) -> Grid {
    let cell = cell.max(1.0);
    let gw = (w as f32 / cell).ceil() as usize + 2;
    let gh = (h as f32 / cell).ceil() as usize + 2;
    let lattice: Vec<f32> = (0..gw * gh)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
    let cols: Vec<(usize, f32)> = (0..w)
        .map(|x| {
            let f = x as f32 / cell;
            (f as usize, smooth(f.fract()))
        })
        .collect();
    let mut out = Grid::new(w, h);
    for y in 0..h {
        let f = y as f32 / cell;
        let (gy, ty) = (f as usize, smooth(f.fract()));
        let r0 = &lattice[gy * gw..(gy + 1) * gw];
        let r1 = &lattice[(gy + 1) * gw..(gy + 2) * gw];
        for (o, &(gx, tx)) in out.row_mut(y).iter_mut().zip(&cols) {
            let top = r0[gx] + (r0[gx + 1] - r0[gx]) * tx;
            let bottom = r1[gx] + (r1[gx + 1] - r1[gx]) * tx;
            *o = top + (bottom - top) * ty;
        }
    }
    out
}

/// Adds `amp × src` to `dst`, where `src` is `factor` times smaller and
/// upsampled bilinearly; optionally weighted by another raster of dst's size.
pub(crate) fn add_upsampled(dst: &mut Grid, src: &Grid, factor: usize, amp: f32, weight: Weight) {
    let f = factor as f32;
    let cols: Vec<(usize, usize, f32)> = (0..dst.w)
        .map(|x| {
            let s = ((x as f32 + 0.5) / f - 0.5).clamp(0.0, (src.w - 1) as f32);
            let i = s as usize;
            (i, (i + 1).min(src.w - 1), s - i as f32)
        })
        .collect();
    let w = dst.w;
    let mut line = vec![0.0f32; w];
    for y in 0..dst.h {
        let s = ((y as f32 + 0.5) / f - 0.5).clamp(0.0, (src.h - 1) as f32);
        let j = s as usize;
        let (j1, ty) = ((j + 1).min(src.h - 1), s - j as f32);
        let (r0, r1) = (src.row(j), src.row(j1));
        for (o, &(i0, i1, tx)) in line.iter_mut().zip(&cols) {
            let top = r0[i0] + (r0[i1] - r0[i0]) * tx;
            let bottom = r1[i0] + (r1[i1] - r1[i0]) * tx;
            *o = amp * (top + (bottom - top) * ty);
        }
        let out = &mut dst.data[y * w..(y + 1) * w];
        match weight {
            Weight::One => out.iter_mut().zip(&line).for_each(|(o, v)| *o += v),
            _ => {
                for (x, (o, v)) in out.iter_mut().zip(&line).enumerate() {
                    *o += v * weight.at(x, y);
                }
            }
        }
    }
}

/// Resamples `a` and `b` (same size) into `w` × `h` rasters rotated by
/// `angle` (radians) about the output centre, which maps to `(cx, cy)` in
/// the sources. Bilinear; 0 where the source is not covered. The covered
/// span of each output row is solved for once, so the inner loop has no
/// coverage tests.
pub(crate) fn rotate_pair(
    a: &Grid,
    b: &Grid,
    w: usize,
    h: usize,
    angle: f32,
    cx: f32,
    cy: f32,
) -> (Grid, Grid) {
    debug_assert!(a.w == b.w && a.h == b.h);
    let (s, c) = angle.sin_cos();
    let (ox, oy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (mut out_a, mut out_b) = (Grid::new(w, h), Grid::new(w, h));
    let (max_x, max_y) = (a.w as f32 - 1.001, a.h as f32 - 1.001);
    for y in 0..h {
        let dy = y as f32 - oy;
        let sx0 = cx - c * ox - s * dy;
        let sy0 = cy - s * ox + c * dy;
        let (lo, hi) = covered_span(sx0, c, max_x, sy0, s, max_y, w);
        let (ra, rb) = (out_a.row_mut(y), &mut out_b.data[y * w..(y + 1) * w]);
        for x in lo..hi {
            let (sx, sy) = (sx0 + c * x as f32, sy0 + s * x as f32);
            let (i, j) = (sx as usize, sy as usize);
            let (tx, ty) = (sx - i as f32, sy - j as f32);
            let k = j * a.w + i;
            ra[x] = lerp2(&a.data, k, a.w, tx, ty);
            rb[x] = lerp2(&b.data, k, a.w, tx, ty);
        }
    }
    (out_a, out_b)
}

/// Output columns `lo..hi` whose source point `(sx0 + dx·x, sy0 + dy·x)`
/// lies in `[0, max_x] × [0, max_y]`.
fn covered_span(
    sx0: f32,
    dx: f32,
    max_x: f32,
    sy0: f32,
    dy: f32,
    max_y: f32,
    w: usize,
) -> (usize, usize) {
    let mut lo = 0.0f32;
    let mut hi = w as f32;
    for (start, step, max) in [(sx0, dx, max_x), (sy0, dy, max_y)] {
        if step.abs() < 1e-9 {
            if start < 0.0 || start > max {
                return (0, 0);
            }
            continue;
        }
        let (t0, t1) = ((0.0 - start) / step, (max - start) / step);
        lo = lo.max(t0.min(t1));
        hi = hi.min(t0.max(t1));
    }
    let lo = lo.max(0.0).ceil() as usize;
    let hi = (hi.floor() as i64 + 1).clamp(0, w as i64) as usize;
    (lo.min(hi), hi)
}

#[inline]
fn lerp2(d: &[f32], k: usize, stride: usize, tx: f32, ty: f32) -> f32 {
    let top = d[k] + (d[k + 1] - d[k]) * tx;
    let bottom = d[k + stride] + (d[k + stride + 1] - d[k + stride]) * tx;
    top + (bottom - top) * ty
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (edges
/// clamped). No-op for sigma below 0.2.
pub(crate) fn blur(g: &mut Grid, sigma: f32) {
    if sigma < 0.2 {
        return;
    }
    let kernel = gaussian_kernel(sigma);
    blur_rows(g, &kernel);
    blur_columns(g, &kernel);
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (2.5 * sigma).ceil() as i32;
    let raw: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = raw.iter().sum();
    raw.into_iter().map(|v| v / sum).collect()
}

fn blur_rows(g: &mut Grid, kernel: &[f32]) {
    let r = kernel.len() / 2;
    let w = g.w;
    let mut padded = vec![0.0f32; w + 2 * r];
    for y in 0..g.h {
        let row = g.row_mut(y);
        padded[r..r + w].copy_from_slice(row);
        let (first, last) = (row[0], row[w - 1]);
        padded[..r].fill(first);
        padded[r + w..].fill(last);
        for (x, o) in row.iter_mut().enumerate() {
            let window = &padded[x..x + kernel.len()];
            *o = window.iter().zip(kernel).map(|(a, b)| a * b).sum();
        }
    }
}

fn blur_columns(g: &mut Grid, kernel: &[f32]) {
    let r = kernel.len() as i64 / 2;
    let mut out = Grid::new(g.w, g.h);
    for y in 0..g.h {
        let dst = &mut out.data[y * g.w..(y + 1) * g.w];
        for (k, &kv) in kernel.iter().enumerate() {
            let sy = (y as i64 + k as i64 - r).clamp(0, g.h as i64 - 1) as usize;
            let src = &g.data[sy * g.w..(sy + 1) * g.w];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += kv * s;
            }
        }
    }
    *g = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stroke_peaks_on_its_axis() {
        let mut g = Grid::new(50, 50);
        stroke(
            &mut g,
            (5.0, 25.0),
            (45.0, 25.0),
            (4.0, 4.0),
            Ink::new(1.0, Profile::Tube),
        );
        assert!((g.at(25, 25) - 1.0).abs() < 1e-5);
        assert_eq!(g.at(25, 30), 0.0);
        // a steep stroke is rasterised along y
        let mut v = Grid::new(50, 50);
        stroke(
            &mut v,
            (25.0, 5.0),
            (27.0, 45.0),
            (3.0, 3.0),
            Ink::new(1.0, Profile::Tube),
        );
        assert!(v.at(26, 25) > 0.9);
    }

    #[test]
    fn blur_preserves_mean_of_flat_image() {
        let mut g = Grid::new(20, 10);
        g.data.fill(3.0);
        blur(&mut g, 1.3);
        assert!(g.data.iter().all(|v| (v - 3.0).abs() < 1e-4));
    }

    #[test]
    fn zero_rotation_is_identity_inside() {
        let mut g = Grid::new(16, 12);
        for (i, v) in g.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let (r, _) = rotate_pair(&g, &g, 16, 12, 0.0, 8.0, 6.0);
        assert!((r.at(5, 5) - g.at(5, 5)).abs() < 1e-3);
    }

    #[test]
    fn rotation_moves_points_as_placement_expects() {
        // a bright pixel at source (30, 20) of a 60 × 40 canvas, output
        // 50 × 30 rotated by 0.1 rad about the centres
        let mut g = Grid::new(60, 40);
        blob(
            &mut g,
            (42.0, 27.0),
            (2.5, 2.5),
            Ink::new(1.0, Profile::Soft),
        );
        let angle = 0.1f32;
        let (r, _) = rotate_pair(&g, &g, 50, 30, angle, 30.0, 20.0);
        let (s, c) = angle.sin_cos();
        let (dx, dy) = (42.0 - 30.0, 27.0 - 20.0);
        let (ox, oy) = (25.0 + c * dx + s * dy, 15.0 - s * dx + c * dy);
        let peak = r.data.iter().cloned().fold(0.0, f32::max);
        assert!(r.at(ox.round() as usize, oy.round() as usize) > 0.8 * peak);
        // and a rotation off the canvas leaves zeros, not garbage
        let (far, _) = rotate_pair(&g, &g, 50, 30, angle, 500.0, 20.0);
        assert!(far.data.iter().all(|&v| v == 0.0));
    }
}
