//! Stored values → presentation-ready grey image.
//!
//! The DICOM greyscale pipeline, in order: Modality LUT (Rescale Slope and
//! Intercept), VOI LUT (a VOI LUT Sequence, else Window Center/Width with its
//! VOI LUT Function, else an automatic window), then MONOCHROME1 inversion so
//! that the output always reads "higher is whiter". Pixel padding becomes
//! black. Because stored values have at most 16 bits, the whole pipeline is
//! folded into one lookup table over every possible stored value and applied
//! in one pass.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::Serialize;

use super::meta::{numbers, text};
use super::pixels::{PixelModule, StoredFrame};

/// A presentation-ready greyscale image: `pixels[row * width + column]`,
/// 0 is black and 65535 is white (MONOCHROME2 sense, whatever the source's
/// photometric interpretation), the VOI transformation already applied.
#[derive(Clone, PartialEq)]
pub struct GreyImage {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Row-major display values.
    pub pixels: Vec<u16>,
}

impl std::fmt::Debug for GreyImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GreyImage {{ {}x{} }}", self.width, self.height)
    }
}

/// The VOI transformation that produced a [`GreyImage`].
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum VoiSource {
    /// The first item of the VOI LUT Sequence (0028,3010).
    LutSequence {
        /// Number of entries.
        entries: u32,
        /// First stored (modality) value mapped.
        first_mapped: i32,
    },
    /// Window Center/Width from the header (the first pair when several are given).
    Window {
        /// Window Center.
        center: f64,
        /// Window Width.
        width: f64,
        /// VOI LUT Function: `LINEAR`, `LINEAR_EXACT` or `SIGMOID`.
        function: String,
        /// How many windows the header offered.
        offered: usize,
    },
    /// A window computed from the image: its 0.5th to 99.5th percentile of
    /// modality values, padding excluded. Used when the header has no VOI, and
    /// always for FOR PROCESSING images, whose values are raw detector
    /// signal rather than a picture meant to be looked at.
    Automatic {
        /// Lower end (black, before inversion).
        low: f64,
        /// Upper end (white, before inversion).
        high: f64,
        /// Why the header's VOI was not used.
        why: &'static str,
    },
}

/// A Modality LUT (the first item of the Modality LUT Sequence, 0028,3000).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModalityLut {
    /// Number of entries.
    pub entries: u32,
    /// First stored value mapped.
    pub first_mapped: i32,
    /// Bits per entry (8 or 16).
    pub bits: u32,
}

/// What the presentation pipeline did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Presentation {
    /// Rescale Slope (1 when absent; not applied when a Modality LUT is).
    pub rescale_slope: f64,
    /// Rescale Intercept (0 when absent; not applied when a Modality LUT is).
    pub rescale_intercept: f64,
    /// The Modality LUT applied instead of Rescale Slope/Intercept, when the
    /// header has one.
    pub modality_lut: Option<ModalityLut>,
    /// The VOI transformation.
    pub voi: VoiSource,
    /// MONOCHROME1 was inverted.
    pub inverted: bool,
    /// Pixels equal to the Pixel Padding Value (or inside its range), shown black.
    pub padding_pixels: u64,
}

/// The attributes of the presentation pipeline, read from the header.
struct PipelineAttributes {
    slope: f64,
    intercept: f64,
    /// The Modality LUT Sequence's table: it replaces slope and intercept.
    modality_lut: Option<VoiLutTable>,
    lut: Option<VoiLutTable>,
    windows: Vec<(f64, f64)>,
    function: String,
    padding: Option<(i32, i32)>,
    for_processing: bool,
}

struct VoiLutTable {
    first_mapped: i32,
    bits: u32,
    data: Vec<u16>,
    /// The output value that means white.
    full_scale: f64,
}

impl VoiLutTable {
    fn new(first_mapped: i32, bits: u32, data: Vec<u16>) -> Self {
        // Some vendors declare 16 bits but fill 12; scale by what the table
        // really uses when it uses far less than declared.
        let declared = ((1u64 << bits) - 1) as f64;
        let used = f64::from(data.iter().copied().max().unwrap_or(1).max(1));
        let full_scale = if bits == 16 && used <= declared / 16.0 {
            ((used + 1.0).log2().ceil().exp2() - 1.0).max(1.0)
        } else {
            declared
        };
        VoiLutTable {
            first_mapped,
            bits,
            data,
            full_scale,
        }
    }

    /// The entry for `x`, inputs outside the table taking its first or
    /// last entry (PS3.3 C.11.1.1).
    fn entry(&self, x: i64) -> u16 {
        let last = self.data.len() as i64 - 1;
        let index = x
            .saturating_sub(i64::from(self.first_mapped))
            .clamp(0, last);
        self.data[index as usize]
    }
}

/// Applies the greyscale pipeline to frame 1.
pub(crate) fn present(
    obj: &DefaultDicomObject,
    module: &PixelModule,
    frame: &StoredFrame,
) -> (GreyImage, Presentation) {
    let attrs = read_attributes(obj, module);
    let domain = StoredDomain::of(frame);
    let padded = |v: i32| attrs.padding.is_some_and(|(lo, hi)| v >= lo && v <= hi);

    let modality = |v: i32| match &attrs.modality_lut {
        Some(lut) => f64::from(lut.entry(i64::from(v))),
        None => f64::from(v) * attrs.slope + attrs.intercept,
    };
    let voi = choose_voi(&attrs, frame, &domain, &padded, &modality);
    let inverted = module.is_inverted();

    let mut table = vec![0u16; domain.len()];
    for (slot, out) in table.iter_mut().enumerate() {
        let stored = domain.value_at(slot);
        if padded(stored) {
            continue;
        }
        let y = apply_voi(&voi, &attrs, modality(stored)).clamp(0.0, 1.0);
        let y = if inverted { 1.0 - y } else { y };
        *out = (y * 65535.0).round() as u16;
    }
    // The table indexed by the stored 16-bit pattern itself (sign and
    // clamping folded in), so the per-pixel pass is one lookup that needs
    // no bounds check.
    let by_raw: Box<[u16; 1 << 16]> = {
        let mut t = Box::new([0u16; 1 << 16]);
        for (raw, out) in t.iter_mut().enumerate() {
            *out = table[domain.slot_of_raw(raw as u16)];
        }
        t
    };
    let pixels = frame
        .values
        .iter()
        .map(|&raw| by_raw[usize::from(raw)])
        .collect();
    let padding_pixels = if attrs.padding.is_some() {
        frame
            .values
            .iter()
            .filter(|&&raw| padded(domain.value_at(domain.slot_of_raw(raw))))
            .count() as u64
    } else {
        0
    };
    let image = GreyImage {
        width: frame.columns,
        height: frame.rows,
        pixels,
    };
    let presentation = Presentation {
        rescale_slope: attrs.slope,
        rescale_intercept: attrs.intercept,
        modality_lut: attrs.modality_lut.as_ref().map(|l| ModalityLut {
            entries: l.data.len() as u32,
            first_mapped: l.first_mapped,
            bits: l.bits,
        }),
        voi,
        inverted,
        padding_pixels,
    };
    (image, presentation)
}

/// The set of values Bits Stored allows, indexed 0..len.
struct StoredDomain {
    signed: bool,
    bits: u16,
}

impl StoredDomain {
    fn of(frame: &StoredFrame) -> Self {
        StoredDomain {
            signed: frame.signed,
            bits: frame.bits_stored.clamp(1, 16),
        }
    }
    fn len(&self) -> usize {
        1usize << self.bits
    }
    fn offset(&self) -> i32 {
        if self.signed {
            1 << (self.bits - 1)
        } else {
            0
        }
    }
    fn value_at(&self, slot: usize) -> i32 {
        slot as i32 - self.offset()
    }
    /// Stored values are already masked / sign-extended to Bits Stored.
    fn slot_of_raw(&self, raw: u16) -> usize {
        let v = if self.signed {
            i32::from(raw as i16)
        } else {
            i32::from(raw)
        };
        ((v + self.offset()) as usize).min(self.len() - 1)
    }
}

fn read_attributes(obj: &DefaultDicomObject, module: &PixelModule) -> PipelineAttributes {
    let first = |tag| numbers(obj, tag).map(|v| v[0]).filter(|x| x.is_finite());
    let slope = first(tags::RESCALE_SLOPE)
        .filter(|s| *s != 0.0)
        .unwrap_or(1.0);
    let intercept = first(tags::RESCALE_INTERCEPT).unwrap_or(0.0);
    let centers = numbers(obj, tags::WINDOW_CENTER).unwrap_or_default();
    let widths = numbers(obj, tags::WINDOW_WIDTH).unwrap_or_default();
    let windows = centers
        .iter()
        .zip(&widths)
        .map(|(c, w)| (*c, *w))
        .filter(|(c, w)| c.is_finite() && w.is_finite() && *w > 0.0)
        .collect();
    let function = text(obj, tags::VOILUT_FUNCTION).unwrap_or_else(|| "LINEAR".into());
    let padding = padding_range(obj, module);
    let for_processing = text(obj, tags::PRESENTATION_INTENT_TYPE)
        .is_some_and(|t| t.eq_ignore_ascii_case("FOR PROCESSING"));
    PipelineAttributes {
        slope,
        intercept,
        modality_lut: lut_sequence(obj, tags::MODALITY_LUT_SEQUENCE, Some(module.signed)),
        lut: lut_sequence(obj, tags::VOILUT_SEQUENCE, None),
        windows,
        function,
        padding,
        for_processing,
    }
}

/// Pixel Padding Value (and Range Limit) as an inclusive range of stored values.
fn padding_range(obj: &DefaultDicomObject, module: &PixelModule) -> Option<(i32, i32)> {
    let read = |tag| {
        let element = obj.element_opt(tag).ok().flatten()?;
        let raw: i64 = element.to_int().ok()?;
        // US/SS ambiguity: reinterpret by Pixel Representation.
        Some(if module.signed {
            i32::from(raw as u16 as i16)
        } else {
            i32::from(raw as u16)
        })
    };
    let value = read(tags::PIXEL_PADDING_VALUE)?;
    let limit = read(tags::PIXEL_PADDING_RANGE_LIMIT).unwrap_or(value);
    Some((value.min(limit), value.max(limit)))
}

/// The first item of a LUT sequence (Modality or VOI): descriptor and data
/// (PS3.3 C.11.1.1, C.11.2.1.1). `signed_input` is the image's Pixel
/// Representation for a Modality LUT, whose first mapped value is US or SS
/// accordingly; `None` for a VOI LUT, whose input is modality values.
fn lut_sequence(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    signed_input: Option<bool>,
) -> Option<VoiLutTable> {
    let items = obj.element_opt(tag).ok().flatten()?.items()?;
    let item = items.first()?;
    let descriptor: Vec<i64> = item
        .element_opt(tags::LUT_DESCRIPTOR)
        .ok()
        .flatten()?
        .to_multi_int()
        .ok()?;
    let [count, first, bits, ..] = descriptor[..] else {
        return None;
    };
    let mut data: Vec<u16> = item
        .element_opt(tags::LUT_DATA)
        .ok()
        .flatten()?
        .to_multi_int::<i64>()
        .ok()?
        .into_iter()
        .map(|v| v as u16)
        .collect();
    // The number of entries: 0 means 2^16.
    let entries = if count == 0 { 65536 } else { count as usize };
    if bits == 8 && data.len() < entries && data.len() * 2 >= entries {
        // 8-bit entries packed two to a 16-bit word (LUT Data as OW).
        data = data
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(u16::from)
            .collect();
    }
    if data.len() < entries || !(8..=16).contains(&bits) {
        return None;
    }
    let first_mapped = match signed_input {
        // Modality LUT: the first mapped value is a stored value, US or SS
        // as the image's Pixel Representation says.
        Some(true) => i32::from(first as u16 as i16),
        Some(false) => i32::from(first as u16),
        // VOI LUT: a value over 32767 in a US descriptor is a negative
        // modality value.
        None => (if first > 32767 { first - 65536 } else { first }) as i32,
    };
    Some(VoiLutTable::new(
        first_mapped,
        bits as u32,
        data[..entries].to_vec(),
    ))
}

fn choose_voi(
    attrs: &PipelineAttributes,
    frame: &StoredFrame,
    domain: &StoredDomain,
    padded: &dyn Fn(i32) -> bool,
    modality: &dyn Fn(i32) -> f64,
) -> VoiSource {
    let why = if attrs.for_processing {
        "FOR PROCESSING image: raw detector values need their own window"
    } else if let Some(lut) = &attrs.lut {
        return VoiSource::LutSequence {
            entries: lut.data.len() as u32,
            first_mapped: lut.first_mapped,
        };
    } else if let Some((center, width)) = attrs.windows.first() {
        return VoiSource::Window {
            center: *center,
            width: *width,
            function: attrs.function.clone(),
            offered: attrs.windows.len(),
        };
    } else {
        "no VOI LUT or window in the header"
    };
    let (low, high) = percentile_window(frame, domain, padded, modality);
    VoiSource::Automatic { low, high, why }
}

/// The 0.5th and 99.5th percentiles of modality values, padding excluded.
fn percentile_window(
    frame: &StoredFrame,
    domain: &StoredDomain,
    padded: &dyn Fn(i32) -> bool,
    modality: &dyn Fn(i32) -> f64,
) -> (f64, f64) {
    let mut histogram = vec![0u64; domain.len()];
    for raw in &frame.values {
        histogram[domain.slot_of_raw(*raw)] += 1;
    }
    let mut total = 0u64;
    for (slot, count) in histogram.iter_mut().enumerate() {
        if padded(domain.value_at(slot)) {
            *count = 0;
        }
        total += *count;
    }
    if total == 0 {
        return (0.0, 1.0);
    }
    let quantile = |q: f64| {
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (slot, count) in histogram.iter().enumerate() {
            seen += count;
            if seen >= target {
                return domain.value_at(slot);
            }
        }
        domain.value_at(domain.len() - 1)
    };
    let (a, b) = (modality(quantile(0.005)), modality(quantile(0.995)));
    let (low, high) = (a.min(b), a.max(b));
    if high > low {
        (low, high)
    } else {
        (low - 0.5, low + 0.5)
    }
}

/// VOI output in [0, 1] for a modality value.
fn apply_voi(voi: &VoiSource, attrs: &PipelineAttributes, x: f64) -> f64 {
    match voi {
        VoiSource::LutSequence { .. } => match &attrs.lut {
            Some(lut) => lut_lookup(lut, x),
            None => 0.0,
        },
        VoiSource::Window {
            center,
            width,
            function,
            ..
        } => window(*center, *width, function, x),
        VoiSource::Automatic { low, high, .. } => (x - low) / (high - low),
    }
}

fn lut_lookup(lut: &VoiLutTable, x: f64) -> f64 {
    let last = lut.data.len() as i64 - 1;
    // `as` saturates (a huge Rescale Slope can put x anywhere, NaN at 0);
    // the subtraction must not overflow either.
    let index = (x.round() as i64)
        .saturating_sub(i64::from(lut.first_mapped))
        .clamp(0, last) as usize;
    f64::from(lut.data[index]) / lut.full_scale
}

/// The window functions of PS3.3 C.11.2.1.2.
fn window(center: f64, width: f64, function: &str, x: f64) -> f64 {
    match function {
        "SIGMOID" => 1.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
        "LINEAR_EXACT" => {
            if x <= center - width / 2.0 {
                0.0
            } else if x > center + width / 2.0 {
                1.0
            } else {
                (x - center) / width + 0.5
            }
        }
        // LINEAR, and the default for unknown functions.
        _ => {
            if width <= 1.0 {
                return if x < center - 0.5 { 0.0 } else { 1.0 };
            }
            let lower = center - 0.5 - (width - 1.0) / 2.0;
            let upper = center - 0.5 + (width - 1.0) / 2.0;
            if x <= lower {
                0.0
            } else if x > upper {
                1.0
            } else {
                (x - (center - 0.5)) / (width - 1.0) + 0.5
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        // PS3.3 example: center 2048, width 4096 maps 0 to black, 4095 to white.
        assert_eq!(window(2048.0, 4096.0, "LINEAR", -1.0), 0.0);
        assert!((window(2048.0, 4096.0, "LINEAR", 2047.5) - 0.5).abs() < 1e-9);
        assert_eq!(window(2048.0, 4096.0, "LINEAR", 5000.0), 1.0);
    }

    #[test]
    fn linear_exact_and_sigmoid_are_centred() {
        assert!((window(100.0, 50.0, "LINEAR_EXACT", 100.0) - 0.5).abs() < 1e-12);
        assert_eq!(window(100.0, 50.0, "LINEAR_EXACT", 75.0), 0.0);
        assert!((window(100.0, 50.0, "SIGMOID", 100.0) - 0.5).abs() < 1e-12);
        assert!(window(100.0, 50.0, "SIGMOID", 150.0) > 0.98);
    }

    #[test]
    fn signed_domain_round_trips() {
        let d = StoredDomain {
            signed: true,
            bits: 12,
        };
        assert_eq!(d.len(), 4096);
        assert_eq!(d.value_at(d.slot_of_raw((-2048i16) as u16)), -2048);
        assert_eq!(d.value_at(d.slot_of_raw(2047)), 2047);
    }

    #[test]
    fn lut_lookup_clamps_and_scales() {
        let lut = VoiLutTable::new(10, 8, vec![0, 128, 255]);
        assert_eq!(lut_lookup(&lut, 0.0), 0.0);
        assert!((lut_lookup(&lut, 11.0) - 128.0 / 255.0).abs() < 1e-12);
        assert_eq!(lut_lookup(&lut, 1000.0), 1.0);
        // Values a huge Rescale Slope produces: saturate, never overflow.
        let negative_first = VoiLutTable::new(-100, 8, vec![0, 128, 255]);
        assert_eq!(lut_lookup(&negative_first, f64::MAX), 1.0);
        assert_eq!(lut_lookup(&negative_first, f64::INFINITY), 1.0);
        assert_eq!(lut_lookup(&lut, f64::MIN), 0.0);
        assert_eq!(lut_lookup(&lut, f64::NEG_INFINITY), 0.0);
        assert_eq!(lut_lookup(&lut, f64::NAN), 0.0);
    }
}
