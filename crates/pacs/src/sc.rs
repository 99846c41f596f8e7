//! The AI result as a picture for any PACS viewer: a Secondary Capture
//! image (RGB) of the radiograph's preview with the heatmaps of positive
//! findings blended in, their regions outlined and labelled, and banners
//! above and below saying that this is AI output, which model made it, and
//! every finding's score and verdict. Burned In Annotation is YES.
//!
//! An image the AI could not read (a lateral, an unreadable pixel stream, a
//! failed inference) gets a notice instead, in its own series: the image
//! (when it could be decoded) under a banner saying it was *not* analysed,
//! why, and that it must be read without AI assistance — so that in PACS
//! "no AI mark" is never mistaken for "AI found nothing".

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use super::derived::{
    self, ds, image_reference, put_seq, put_str, put_us, ResultError, ResultInput, ResultObject,
    SeriesSpec,
};
use super::font::{self, Canvas};
use super::uids;
use cxr_findings::overlay::{heat_colour, Preview};
use cxr_findings::FindingResult;
use cxr_model::FindingId;

/// Series Number of the Secondary Capture series.
pub const SERIES_NUMBER: &str = "9901";
/// Series Number of the "not analysed" notices.
pub const NOTICE_SERIES_NUMBER: &str = "9903";
/// Width of a notice for an image that could not be decoded (text only).
const TEXT_ONLY_WIDTH: u32 = 1024;

const BANNER: [u8; 3] = [0, 0, 0];
const WARNING: [u8; 3] = [255, 200, 0];
const WHITE: [u8; 3] = [255, 255, 255];
const POSITIVE: [u8; 3] = [255, 80, 80];
const NEGATIVE: [u8; 3] = [140, 220, 140];

/// Outline colour per finding: the reference findings keep theirs, any
/// other finding gets one of a few distinct colours by its id.
fn finding_colour(kind: &FindingId) -> [u8; 3] {
    const OTHERS: [[u8; 3]; 4] = [
        [0, 220, 255],
        [255, 140, 0],
        [120, 255, 60],
        [200, 160, 255],
    ];
    match kind.as_str() {
        FindingId::TUBERCULOSIS => [255, 230, 0],
        FindingId::MALIGNANT_NODULE => [255, 0, 255],
        other => {
            let h = other.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            });
            OTHERS[h % OTHERS.len()]
        }
    }
}

/// The finding's name in the banner (upper-case ASCII, as the font has it).
fn label(f: &FindingResult) -> String {
    derived::ascii(&f.display_name).to_uppercase()
}

/// The short tag beside a region.
fn tag(f: &FindingResult) -> String {
    match f.finding.as_str() {
        FindingId::TUBERCULOSIS => "TB".into(),
        FindingId::MALIGNANT_NODULE => "NODULE".into(),
        _ => label(f),
    }
}

/// Text lines of the top banner.
fn banner_lines(input: &ResultInput<'_>) -> Vec<(String, [u8; 3])> {
    let outcome = input.outcome;
    let (names, versions) = derived::algorithm_names(&outcome.provenance);
    let mut lines = vec![
        ("AI RESULT - NOT FOR PRIMARY DIAGNOSIS".to_string(), WARNING),
        (format!("CXR-TRIAGE {names} {versions}"), WHITE),
        (
            format!("PRIORITY {}", outcome.image_priority.priority.as_str()),
            WHITE,
        ),
    ];
    for f in &outcome.findings {
        lines.push(finding_line(f));
    }
    lines
}

/// Text lines of a notice for an image the AI did not analyse.
fn notice_lines(input: &ResultInput<'_>) -> Vec<(String, [u8; 3])> {
    let (code, message) = input
        .outcome
        .reason
        .as_ref()
        .map(|r| (r.code().to_string(), r.to_string()))
        .unwrap_or_else(|| ("not_analyzed".into(), "not analysed".into()));
    vec![
        ("AI RESULT - IMAGE NOT ANALYSED BY AI".to_string(), WARNING),
        ("READ WITHOUT AI ASSISTANCE".to_string(), WARNING),
        (
            format!(
                "CXR-TRIAGE {} REASON {}",
                env!("CARGO_PKG_VERSION"),
                code.to_uppercase()
            ),
            WHITE,
        ),
        (derived::ascii(&message), WHITE),
    ]
}

/// Breaks `text` into lines of at most `max` characters, at spaces where
/// it can.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > max {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..max).collect());
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > max && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn finding_line(f: &FindingResult) -> (String, [u8; 3]) {
    let verdict = if f.positive { "POSITIVE" } else { "NEGATIVE" };
    (
        format!(
            "{} {}% {} AT {} ({}%)",
            label(f),
            ds((f64::from(f.score) * 1000.0).round() / 10.0),
            verdict,
            f.operating_point.to_uppercase(),
            ds((f.threshold * 1000.0).round() / 10.0)
        ),
        if f.positive { POSITIVE } else { NEGATIVE },
    )
}

/// The picture: banners (`lines`, wrapped to the width) around the preview
/// with the overlay.
fn render(
    input: &ResultInput<'_>,
    preview: &Preview,
    image_width: u32,
    lines: Vec<(String, [u8; 3])>,
) -> Canvas {
    let (w, h) = (preview.width, preview.height);
    // Text scale: about 56 characters across a 1024-pixel preview.
    let scale = (w / 340).clamp(1, 4);
    let line_h = (font::HEIGHT + 3) * scale;
    let pad = 2 * scale;
    let max_chars = ((w.saturating_sub(2 * pad)) / (font::ADVANCE * scale)).max(1) as usize;
    let lines: Vec<(String, [u8; 3])> = lines
        .into_iter()
        .flat_map(|(text, colour)| wrap(&text, max_chars).into_iter().map(move |l| (l, colour)))
        .collect();
    let top = pad * 2 + line_h * lines.len() as u32;
    let bottom = pad * 2 + line_h;
    let mut canvas = Canvas::new(w, h + top + bottom, BANNER);

    // The image with the heatmaps of positive findings: per pixel the
    // hottest of them; cold areas stay grey so the anatomy shows.
    let heats: Vec<Vec<f32>> = input
        .outcome
        .findings
        .iter()
        .filter(|f| f.positive)
        .filter_map(|f| f.heatmap.as_ref().map(|hm| hm.render(w, h)))
        .collect();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let g = f32::from(preview.pixels[i]) / 255.0;
            let v = heats.iter().map(|m| m[i]).fold(0.0f32, f32::max);
            let alpha = (0.6 * (v - 0.2) / 0.8).clamp(0.0, 0.6);
            let c = heat_colour(v);
            let rgb = c.map(|k| (((1.0 - alpha) * g + alpha * k) * 255.0).round() as u8);
            canvas.set(i64::from(x), i64::from(y + top), rgb);
        }
    }
    // Regions of positive findings, outlined and labelled.
    let s = f64::from(w) / f64::from(image_width.max(1));
    for f in input.outcome.findings.iter().filter(|f| f.positive) {
        let colour = finding_colour(&f.finding);
        for r in &f.regions {
            let [x0, y0, x1, y1] = r.bbox.map(|v| (f64::from(v) * s).round() as i64);
            let (y0, y1) = (y0 + i64::from(top), y1 + i64::from(top));
            canvas.outline(
                x0,
                y0,
                x1.max(x0 + 2),
                y1.max(y0 + 2),
                i64::from(scale),
                colour,
            );
            let tag = tag(f);
            let ty = (y0 - i64::from(line_h)).max(i64::from(top));
            canvas.text(x0, ty, &tag, scale, colour);
        }
    }
    // Banners.
    for (n, (text, colour)) in lines.iter().enumerate() {
        canvas.text(
            i64::from(pad),
            i64::from(pad + n as u32 * line_h),
            text,
            scale,
            *colour,
        );
    }
    let footer: String = "AI GENERATED IMAGE - NOT THE ORIGINAL RADIOGRAPH"
        .chars()
        .take(max_chars)
        .collect();
    canvas.text(
        i64::from(pad),
        i64::from(top + h + pad),
        &footer,
        scale,
        WARNING,
    );
    canvas
}

/// The Secondary Capture for one image: the heatmap and findings of an
/// analysed image, or the notice for an image the AI did not analyse.
pub fn build(input: &ResultInput<'_>) -> Result<ResultObject, ResultError> {
    let outcome = input.outcome;
    let notice = !outcome.analyzable();
    if !notice && outcome.findings.is_empty() {
        return Err(ResultError::NothingToReport("no findings".into()));
    }
    let blank;
    let preview = match (outcome.preview.as_ref().map(|p| &p.0), notice) {
        (Some(p), _) => p,
        (None, true) => {
            blank = Preview {
                width: TEXT_ONLY_WIDTH,
                height: TEXT_ONLY_WIDTH / 8,
                pixels: vec![0; (TEXT_ONLY_WIDTH * TEXT_ONLY_WIDTH / 8) as usize],
            };
            &blank
        }
        (None, false) => {
            return Err(ResultError::NothingToReport(
                "no preview of the image".into(),
            ))
        }
    };
    let columns = input
        .source
        .get(tags::COLUMNS)
        .and_then(|e| e.to_int::<u32>().ok());
    let image_width = match (columns, notice) {
        (Some(c), _) => c,
        (None, true) => preview.width,
        (None, false) => return Err(ResultError::MissingInSource("Columns")),
    };
    let (lines, series_number, series_description, comments) = if notice {
        (
            notice_lines(input),
            NOTICE_SERIES_NUMBER,
            "AI RESULT cxr-triage: image NOT analysed, read without AI",
            "AI RESULT: this image was NOT analysed by cxr-triage (see the reason burned in); read it without AI assistance. Not the original radiograph.",
        )
    } else {
        (
            banner_lines(input),
            SERIES_NUMBER,
            "AI RESULT cxr-triage heatmap (not for primary diagnosis)",
            "AI RESULT: heatmap and findings burned in by cxr-triage. Not the original radiograph; not for primary diagnosis.",
        )
    };
    let canvas = render(input, preview, image_width, lines);

    let mut started = derived::start(
        input,
        &SeriesSpec {
            kind: "sc",
            sop_class: uids::SECONDARY_CAPTURE,
            modality: "OT",
            series_number,
            series_description,
        },
    )?;
    let (date, time, _) = derived::local_date_time(input.now_ms);
    let source_ref = image_reference(&started.source);
    let obj = &mut started.obj;
    // General Image and SC Image.
    obj.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(vec!["DERIVED".to_string(), "SECONDARY".to_string()].into()),
    ));
    put_str(obj, tags::CONTENT_DATE, VR::DA, &date);
    put_str(obj, tags::CONTENT_TIME, VR::TM, &time);
    obj.put(DataElement::new(
        tags::PATIENT_ORIENTATION,
        VR::CS,
        PrimitiveValue::Empty,
    ));
    put_str(obj, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    put_str(obj, tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO");
    put_str(obj, tags::IMAGE_COMMENTS, VR::LT, comments);
    put_str(
        obj,
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        if notice {
            "Downscaled copy of the source image (blank when it could not be decoded) with a notice that the AI did not analyse it"
        } else {
            "Downscaled copy of the source image with AI heatmap overlay, regions and findings text burned in"
        },
    );
    put_seq(obj, tags::SOURCE_IMAGE_SEQUENCE, vec![source_ref]);
    let lossy = input
        .source
        .get(tags::LOSSY_IMAGE_COMPRESSION)
        .and_then(|e| e.to_str().ok())
        .is_some_and(|v| v.trim() == "01");
    put_str(
        obj,
        tags::LOSSY_IMAGE_COMPRESSION,
        VR::CS,
        if lossy { "01" } else { "00" },
    );
    // SC Equipment.
    put_str(obj, tags::CONVERSION_TYPE, VR::CS, "WSD");
    put_str(
        obj,
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER,
        VR::LO,
        derived::MANUFACTURER,
    );
    put_str(
        obj,
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER_MODEL_NAME,
        VR::LO,
        "cxr-triage",
    );
    put_str(
        obj,
        tags::SECONDARY_CAPTURE_DEVICE_SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    );
    // Image Pixel.
    put_us(obj, tags::SAMPLES_PER_PIXEL, 3);
    put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
    put_us(obj, tags::PLANAR_CONFIGURATION, 0);
    put_us(obj, tags::ROWS, canvas.height as u16);
    put_us(obj, tags::COLUMNS, canvas.width as u16);
    put_us(obj, tags::BITS_ALLOCATED, 8);
    put_us(obj, tags::BITS_STORED, 8);
    put_us(obj, tags::HIGH_BIT, 7);
    put_us(obj, tags::PIXEL_REPRESENTATION, 0);
    let mut pixels = canvas.rgb;
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    derived::finish("sc", uids::SECONDARY_CAPTURE, started)
}
