//! Pictures for people: a downscaled grey preview of the radiograph, and
//! heatmaps rendered as PNG — blended over the preview, or alone.

use super::Heatmap;
use cxr_ingest::GreyImage;
use cxr_model::preprocess::{resample, Geometry, Interpolation, ResizeMode};

/// A small 8-bit copy of the image (what overlays are drawn on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Row-major grey, 0 = black.
    pub pixels: Vec<u8>,
}

/// The size of a copy of a `w × h` image whose longer side is `max_side`
/// (never enlarged, never below 1 pixel).
pub fn fit(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    if w.max(h) <= max_side {
        return (w.max(1), h.max(1));
    }
    let s = f64::from(max_side) / f64::from(w.max(h));
    (
        ((f64::from(w) * s).round() as u32).max(1),
        ((f64::from(h) * s).round() as u32).max(1),
    )
}

/// An anti-aliased preview of `image` with its longer side at most `max_side`.
pub fn preview(image: &GreyImage, max_side: u32) -> Preview {
    let (w, h) = fit(image.width, image.height, max_side);
    let g = Geometry::fit(image.width, image.height, w, h, ResizeMode::Stretch);
    let plane = resample(image, &g, Interpolation::Area);
    Preview {
        width: w,
        height: h,
        pixels: plane.iter().map(|v| (v * 255.0).round() as u8).collect(),
    }
}

/// A preview rescaled to `w × h` (nearest; previews are already smooth).
fn scaled(p: &Preview, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h) as usize);
    for j in 0..h {
        let sy = ((u64::from(j) * u64::from(p.height)) / u64::from(h)) as usize;
        for i in 0..w {
            let sx = ((u64::from(i) * u64::from(p.width)) / u64::from(w)) as usize;
            out.push(p.pixels[sy * p.width as usize + sx]);
        }
    }
    out
}

/// The heatmap colour scale: blue → cyan → yellow → red for `v` in
/// `[0, 1]`, as RGB in `[0, 1]` (the overlay PNG and the DICOM Secondary
/// Capture share it).
pub fn heat_colour(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let stops = [
        (0.0, [0.0, 0.0, 1.0]),
        (0.35, [0.0, 1.0, 1.0]),
        (0.65, [1.0, 1.0, 0.0]),
        (1.0, [1.0, 0.0, 0.0]),
    ];
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            return [0, 1, 2].map(|k| ca[k] + t * (cb[k] - ca[k]));
        }
    }
    [1.0, 0.0, 0.0]
}

/// The heatmap blended over the preview at the preview's size, or at
/// `max_side` for the longer side; RGB PNG. Cold areas stay grey so the
/// anatomy shows; hot areas are coloured, more opaque the hotter.
pub fn overlay_png(preview: &Preview, heatmap: &Heatmap, max_side: u32) -> (Vec<u8>, u32, u32) {
    let (w, h) = fit(
        heatmap.geometry.image_width,
        heatmap.geometry.image_height,
        max_side,
    );
    let grey = scaled(preview, w, h);
    let heat = heatmap.render(w, h);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for (&g, &v) in grey.iter().zip(&heat) {
        let alpha = (0.65 * (v - 0.15) / 0.85).clamp(0.0, 0.65);
        let c = heat_colour(v);
        for k in c {
            let base = f32::from(g) / 255.0;
            rgb.push((((1.0 - alpha) * base + alpha * k) * 255.0).round() as u8);
        }
    }
    (encode_png(&rgb, w, h, png::ColorType::Rgb), w, h)
}

/// The heatmap alone over the whole image, grey PNG (white = 1).
pub fn heatmap_png(heatmap: &Heatmap, max_side: u32) -> (Vec<u8>, u32, u32) {
    let (w, h) = fit(
        heatmap.geometry.image_width,
        heatmap.geometry.image_height,
        max_side,
    );
    let grey: Vec<u8> = heatmap
        .render(w, h)
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    (encode_png(&grey, w, h, png::ColorType::Grayscale), w, h)
}

/// The preview as a grey PNG (for storage).
pub fn preview_png(preview: &Preview) -> Vec<u8> {
    encode_png(
        &preview.pixels,
        preview.width,
        preview.height,
        png::ColorType::Grayscale,
    )
}

/// A grey PNG made by [`preview_png`] read back; `None` if it is not one.
pub fn decode_preview(bytes: &[u8]) -> Option<Preview> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().ok()?;
    let info = reader.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return None;
    }
    let (width, height) = (info.width, info.height);
    if u64::from(width) * u64::from(height) > 64 << 20 {
        return None;
    }
    let mut pixels = vec![0u8; reader.output_buffer_size()?];
    reader.next_frame(&mut pixels).ok()?;
    pixels.truncate((width * height) as usize);
    Some(Preview {
        width,
        height,
        pixels,
    })
}

fn encode_png(data: &[u8], w: u32, h: u32, colour: png::ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        // Previews and overlays are made per request: speed over size.
        encoder.set_compression(png::Compression::Fast);
        // Writing into a Vec with a matching buffer cannot fail.
        if let Ok(mut writer) = encoder.write_header() {
            let _ = writer.write_image_data(data);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeatmapSource;

    #[test]
    fn previews_keep_the_aspect_and_round_trip_through_png() {
        let image = GreyImage {
            width: 2000,
            height: 1000,
            pixels: (0..2_000_000u32).map(|i| (i % 2000 * 32) as u16).collect(),
        };
        let p = preview(&image, 512);
        assert_eq!((p.width, p.height), (512, 256));
        assert!(p.pixels[0] < 5 && p.pixels[511] > 240);
        assert_eq!(decode_preview(&preview_png(&p)), Some(p));
        assert_eq!(fit(300, 200, 512), (300, 200));
        assert!(decode_preview(b"not a png").is_none());
    }

    #[test]
    fn the_overlay_is_coloured_where_the_heatmap_is_hot() {
        let image = GreyImage {
            width: 400,
            height: 400,
            pixels: vec![32768; 160_000],
        };
        let mut values = vec![0.0; 16];
        values[5] = 1.0; // cell (1, 1) of a 4×4 grid
        let heatmap = Heatmap {
            grid_width: 4,
            grid_height: 4,
            values,
            geometry: Geometry::fit(400, 400, 64, 64, ResizeMode::Stretch),
            source: HeatmapSource::Model,
        };
        let (bytes, w, h) = overlay_png(&preview(&image, 100), &heatmap, 100);
        assert_eq!((w, h), (100, 100));
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let px = |x: usize, y: usize| &buf[(y * 100 + x) * 3..(y * 100 + x) * 3 + 3];
        let hot = px(37, 37);
        assert!(hot[0] > 150 && hot[2] < 100, "hot pixel {hot:?}");
        let cold = px(90, 90);
        assert_eq!(cold[0], cold[1]);
        assert_eq!(cold[1], cold[2]);
    }
}
