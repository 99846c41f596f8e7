//! The affine map between image pixels and model-input pixels.

use serde::{Deserialize, Serialize};

use super::ResizeMode;

/// How an image of `image_width × image_height` sits in a model input of
/// `model_width × model_height`: `model = image · scale + offset` per axis.
///
/// Coordinates are continuous with pixel `i` covering `[i, i + 1)`, so the
/// centre of pixel `i` is `i + 0.5` and boxes map by their edges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Image columns.
    pub image_width: u32,
    /// Image rows.
    pub image_height: u32,
    /// Model input columns.
    pub model_width: u32,
    /// Model input rows.
    pub model_height: u32,
    /// Horizontal scale, model pixels per image pixel.
    pub scale_x: f64,
    /// Vertical scale, model pixels per image pixel.
    pub scale_y: f64,
    /// Model x of image x = 0.
    pub offset_x: f64,
    /// Model y of image y = 0.
    pub offset_y: f64,
}

impl Geometry {
    /// The same mapping for the image `factor` times larger (`width ×
    /// height`, each pixel of this image covering `factor × factor` of
    /// it): what a reduced JPEG 2000 resolution level is to its film.
    pub fn upscaled(self, factor: u32, width: u32, height: u32) -> Geometry {
        let f = f64::from(factor.max(1));
        Geometry {
            image_width: width,
            image_height: height,
            scale_x: self.scale_x / f,
            scale_y: self.scale_y / f,
            ..self
        }
    }

    /// The geometry `mode` gives for an image of `w × h` and a model input of
    /// `mw × mh`. All sizes must be non-zero (ingest guarantees it for images,
    /// manifest validation for models).
    pub fn fit(w: u32, h: u32, mw: u32, mh: u32, mode: ResizeMode) -> Geometry {
        let (fw, fh) = (f64::from(w.max(1)), f64::from(h.max(1)));
        let (fmw, fmh) = (f64::from(mw), f64::from(mh));
        let (sx, sy) = match mode {
            ResizeMode::Letterbox => {
                let s = (fmw / fw).min(fmh / fh);
                (s, s)
            }
            ResizeMode::CenterCrop => {
                let s = (fmw / fw).max(fmh / fh);
                (s, s)
            }
            ResizeMode::Stretch => (fmw / fw, fmh / fh),
        };
        Geometry {
            image_width: w,
            image_height: h,
            model_width: mw,
            model_height: mh,
            scale_x: sx,
            scale_y: sy,
            offset_x: (fmw - fw * sx) / 2.0,
            offset_y: (fmh - fh * sy) / 2.0,
        }
    }

    /// Image point → model point.
    pub fn to_model(&self, x: f64, y: f64) -> (f64, f64) {
        (
            x * self.scale_x + self.offset_x,
            y * self.scale_y + self.offset_y,
        )
    }

    /// Model point → image point.
    pub fn to_image(&self, mx: f64, my: f64) -> (f64, f64) {
        (
            (mx - self.offset_x) / self.scale_x,
            (my - self.offset_y) / self.scale_y,
        )
    }

    /// A model-space box `[x0, y0, x1, y1]` as an image-pixel box, clamped to
    /// the image and rounded outwards (half-open, like ground-truth boxes).
    pub fn box_to_image(&self, b: [f64; 4]) -> [u32; 4] {
        let (x0, y0) = self.to_image(b[0], b[1]);
        let (x1, y1) = self.to_image(b[2], b[3]);
        let clamp = |v: f64, max: u32| v.clamp(0.0, f64::from(max)) as u32;
        [
            clamp(x0.floor(), self.image_width),
            clamp(y0.floor(), self.image_height),
            clamp(x1.ceil(), self.image_width),
            clamp(y1.ceil(), self.image_height),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_of_a_tall_image_pads_left_and_right() {
        let g = Geometry::fit(1000, 2000, 256, 256, ResizeMode::Letterbox);
        assert_eq!(g.scale_x, 0.128);
        assert_eq!(g.offset_x, 64.0);
        assert_eq!(g.offset_y, 0.0);
        let (x, y) = g.to_image(128.0, 128.0);
        assert!((x - 500.0).abs() < 1e-9 && (y - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn center_crop_of_a_wide_image_cuts_the_sides() {
        let g = Geometry::fit(3000, 2000, 224, 224, ResizeMode::CenterCrop);
        assert_eq!(g.scale_x, 0.112);
        assert!((g.offset_x + 56.0).abs() < 1e-9);
        assert_eq!(g.offset_y, 0.0);
        assert_eq!(
            g.box_to_image([0.0, 0.0, 224.0, 224.0]),
            [500, 0, 2500, 2000]
        );
    }

    #[test]
    fn stretch_scales_axes_independently_and_round_trips() {
        let g = Geometry::fit(300, 600, 100, 100, ResizeMode::Stretch);
        let (mx, my) = g.to_model(150.0, 150.0);
        assert!((mx - 50.0).abs() < 1e-9 && (my - 25.0).abs() < 1e-9);
        let (x, y) = g.to_image(mx, my);
        assert!((x - 150.0).abs() < 1e-9 && (y - 150.0).abs() < 1e-9);
    }
}
