//! Preprocessing: a [`GreyImage`] becomes the tensor a model expects, and a
//! [`Geometry`] records how model coordinates map back to image pixels.
//!
//! In: the presented image of a [`Radiograph`](cxr_ingest::Radiograph)
//! (16-bit grey, 0 = black) and an [`InputSpec`] from a model manifest.
//! Out: `channels × height × width` floats written into a caller's buffer (so a
//! batch is filled in place, in parallel) plus the [`Geometry`].
//!
//! The three resize modes are one affine map `model = image · scale + offset`
//! per axis: *letterbox* fits the whole image and pads with black, *centre
//! crop* fills the model input and cuts the long side, *stretch* scales each
//! axis on its own. Resampling is separable — cxr-triage's area, bilinear
//! or nearest, or a training framework's convention (Pillow, OpenCV, torch,
//! TensorFlow; see [`Interpolation`]); pixels outside the image are black.

mod geometry;
mod resample;

pub use geometry::Geometry;
pub use resample::resample;

use serde::{Deserialize, Serialize};

use cxr_ingest::GreyImage;

/// How the image is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale to fit inside, keep the aspect ratio, pad with black, centred.
    Letterbox,
    /// Scale to cover, keep the aspect ratio, cut the long side, centred.
    CenterCrop,
    /// Scale each axis independently to the input size.
    Stretch,
}

/// Resampling filter.
///
/// `nearest`, `bilinear` and `area` are cxr-triage's own (exact geometry,
/// sub-pixel letterbox). The others reproduce a training framework's resize
/// so that a model sees the pixels its training pipeline produced: with
/// `resize = "stretch"` (what Keras' `load_img`, torchvision's `Resize` on a
/// square input and `cv2.resize` do) they pick the same source pixels and
/// weights as the framework; with a letterbox the padding is rounded to
/// whole pixels, as such pipelines pad. See the README's "Writing a
/// manifest for a model trained elsewhere".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Nearest neighbour at the exact pixel centre.
    Nearest,
    /// Two-tap linear per axis (no anti-aliasing, as OpenCV's `INTER_LINEAR`).
    Bilinear,
    /// Box filter over each output pixel's footprint (anti-aliased
    /// down-scaling, as OpenCV's `INTER_AREA`); linear when up-scaling.
    Area,
    /// Pillow's `Image.NEAREST` (and so Keras' `load_img(target_size=…)`):
    /// the sample point advanced by the scale one output pixel at a time, in
    /// double precision, truncated — a point on a pixel boundary takes the
    /// lower pixel. Tested equal to Pillow.
    PilNearest,
    /// Pillow's `BILINEAR` (triangle filter widened by the scale when
    /// down-scaling: anti-aliased). Also torch's `bilinear` with
    /// `antialias=True` (`torch_bilinear_antialias`), which follows Pillow.
    #[serde(alias = "torch_bilinear_antialias")]
    PilBilinear,
    /// Pillow's `BICUBIC` (a = −0.5, anti-aliased).
    PilBicubic,
    /// Pillow's `BOX`.
    PilBox,
    /// Pillow's `HAMMING`.
    PilHamming,
    /// Pillow's `LANCZOS` (a = 3, anti-aliased).
    PilLanczos,
    /// OpenCV's `INTER_NEAREST`: `floor(x · in/out)` (top-left rule).
    OpencvNearest,
    /// OpenCV's `INTER_NEAREST_EXACT`: the same pixels as Pillow's NEAREST
    /// (tested).
    OpencvNearestExact,
    /// OpenCV's `INTER_LINEAR` (half-pixel centres, edge clamped, no
    /// anti-aliasing). Also torch's `bilinear` (`align_corners=False`,
    /// `antialias=False`: `torch_bilinear`) and TensorFlow's `bilinear`
    /// (`tf_bilinear`).
    #[serde(alias = "torch_bilinear", alias = "tf_bilinear")]
    OpencvLinear,
    /// OpenCV's `INTER_AREA` when down-scaling (box average); when
    /// up-scaling, `INTER_LINEAR`'s weights (OpenCV's own up-scaling rule
    /// differs slightly). Also TensorFlow's `area` (`tf_area`).
    #[serde(alias = "tf_area")]
    OpencvArea,
    /// OpenCV's `INTER_CUBIC` (a = −0.75, no anti-aliasing). Also torch's
    /// `bicubic` (`align_corners=False`, `antialias=False`:
    /// `torch_bicubic`).
    #[serde(alias = "torch_bicubic")]
    OpencvCubic,
    /// torch `F.interpolate(mode="nearest")`: `floor(x · in/out)` in single
    /// precision (a reimplementation of ATen's rule, documented as such).
    TorchNearest,
    /// torch `mode="nearest-exact"` and TensorFlow's `nearest`
    /// (`tf_nearest`): `floor((x + ½) · in/out)` in single precision
    /// (reimplementation).
    #[serde(alias = "tf_nearest")]
    TorchNearestExact,
    /// scikit-image `transform.resize(img, shape, mode="constant",
    /// preserve_range=True)` — order 1 with its default anti-aliasing, as
    /// TorchXRayVision's `XRayResizer` calls it: a Gaussian of
    /// σ = (in/out − 1)/2 per axis (zeros beyond the edge, truncated at 4σ),
    /// then linear interpolation at half-pixel centres. Tested equal to
    /// scikit-image within 1e-5.
    Skimage,
}

impl Interpolation {
    /// Every name a manifest may use.
    pub const NAMES: &'static [&'static str] = &[
        "nearest",
        "bilinear",
        "area",
        "pil_nearest",
        "pil_bilinear",
        "pil_bicubic",
        "pil_box",
        "pil_hamming",
        "pil_lanczos",
        "opencv_nearest",
        "opencv_nearest_exact",
        "opencv_linear",
        "opencv_area",
        "opencv_cubic",
        "torch_nearest",
        "torch_nearest_exact",
        "torch_bilinear",
        "torch_bilinear_antialias",
        "torch_bicubic",
        "tf_bilinear",
        "tf_nearest",
        "tf_area",
        "skimage",
    ];
}

/// Tensor memory layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Batch, channels, rows, columns.
    #[serde(rename = "NCHW")]
    Nchw,
    /// Batch, rows, columns, channels.
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// How grey values in `[0, 1]` (0 = black) become model input values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// `g` in `[0, 1]`.
    ZeroOne,
    /// `2g − 1`, in `[-1, 1]`.
    MinusOneOne,
    /// TorchXRayVision's convention: `2048g − 1024`, in `[-1024, 1024]`.
    Xrv,
    /// `(g − mean[c]) / std[c]` per channel (ImageNet-style).
    MeanStd {
        /// Per-channel mean (one value, or one per channel).
        mean: Vec<f32>,
        /// Per-channel standard deviation (one value, or one per channel).
        std: Vec<f32>,
    },
}

impl Normalization {
    /// The affine map `g ↦ g · a + b` for channel `c`.
    fn affine(&self, c: usize) -> (f32, f32) {
        match self {
            Normalization::ZeroOne => (1.0, 0.0),
            Normalization::MinusOneOne => (2.0, -1.0),
            Normalization::Xrv => (2048.0, -1024.0),
            Normalization::MeanStd { mean, std } => {
                let m = mean.get(c).or(mean.first()).copied().unwrap_or(0.0);
                let s = std.get(c).or(std.first()).copied().unwrap_or(1.0);
                (1.0 / s, -m / s)
            }
        }
    }
}

/// What a model's input looks like (from its manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Input columns.
    pub width: u32,
    /// Input rows.
    pub height: u32,
    /// 1 (grey) or 3 (grey replicated into three channels).
    pub channels: u32,
    /// Tensor layout.
    pub layout: Layout,
    /// Fitting.
    pub resize: ResizeMode,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Value normalisation.
    pub normalization: Normalization,
}

impl InputSpec {
    /// Number of floats one image occupies in the input tensor.
    pub fn image_len(&self) -> usize {
        self.width as usize * self.height as usize * self.channels as usize
    }

    /// The input tensor's shape for a batch of `n`.
    pub fn shape(&self, n: usize) -> [usize; 4] {
        let (w, h, c) = (
            self.width as usize,
            self.height as usize,
            self.channels as usize,
        );
        match self.layout {
            Layout::Nchw => [n, c, h, w],
            Layout::Nhwc => [n, h, w, c],
        }
    }

    /// The geometry for an image of `width × height`.
    pub fn geometry(&self, width: u32, height: u32) -> Geometry {
        Geometry::fit(width, height, self.width, self.height, self.resize)
    }
}

/// Resamples and normalises `image` into `out` (length
/// [`InputSpec::image_len`]) and returns the geometry used.
///
/// # Panics
/// If `out` has the wrong length (a programming error, not an input error).
pub fn write_input(spec: &InputSpec, image: &GreyImage, out: &mut [f32]) -> Geometry {
    assert_eq!(out.len(), spec.image_len(), "input buffer length");
    let geometry = spec.geometry(image.width, image.height);
    let plane = resample(image, &geometry, spec.interpolation);
    let channels = spec.channels as usize;
    match spec.layout {
        Layout::Nchw => {
            for (c, dst) in out.chunks_exact_mut(plane.len()).enumerate() {
                let (a, b) = spec.normalization.affine(c);
                for (d, &g) in dst.iter_mut().zip(&plane) {
                    *d = g * a + b;
                }
            }
        }
        Layout::Nhwc => {
            let affine: Vec<(f32, f32)> = (0..channels)
                .map(|c| spec.normalization.affine(c))
                .collect();
            for (px, &g) in out.chunks_exact_mut(channels).zip(&plane) {
                for (d, &(a, b)) in px.iter_mut().zip(&affine) {
                    *d = g * a + b;
                }
            }
        }
    }
    geometry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, channels: u32, normalization: Normalization) -> InputSpec {
        InputSpec {
            width: 4,
            height: 2,
            channels,
            layout,
            resize: ResizeMode::Stretch,
            interpolation: Interpolation::Nearest,
            normalization,
        }
    }

    fn ramp() -> GreyImage {
        GreyImage {
            width: 4,
            height: 2,
            pixels: vec![0, 65535, 0, 65535, 65535, 0, 65535, 0],
        }
    }

    #[test]
    fn nchw_replicates_grey_and_normalises_per_channel() {
        let norm = Normalization::MeanStd {
            mean: vec![0.5, 0.0, 1.0],
            std: vec![0.5, 1.0, 2.0],
        };
        let s = spec(Layout::Nchw, 3, norm);
        let mut out = vec![0.0; s.image_len()];
        write_input(&s, &ramp(), &mut out);
        assert_eq!(&out[0..4], &[-1.0, 1.0, -1.0, 1.0]);
        assert_eq!(&out[8..12], &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(&out[16..20], &[-0.5, 0.0, -0.5, 0.0]);
    }

    #[test]
    fn nhwc_interleaves_channels() {
        let s = spec(Layout::Nhwc, 3, Normalization::Xrv);
        let mut out = vec![0.0; s.image_len()];
        write_input(&s, &ramp(), &mut out);
        assert_eq!(
            &out[0..6],
            &[-1024.0, -1024.0, -1024.0, 1024.0, 1024.0, 1024.0]
        );
        assert_eq!(s.shape(5), [5, 2, 4, 3]);
    }

    #[test]
    fn minus_one_one_maps_black_and_white() {
        let s = spec(Layout::Nchw, 1, Normalization::MinusOneOne);
        let mut out = vec![0.0; s.image_len()];
        write_input(&s, &ramp(), &mut out);
        assert_eq!(&out[4..8], &[1.0, -1.0, 1.0, -1.0]);
    }
}
