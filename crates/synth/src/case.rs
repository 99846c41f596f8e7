//! A generated case: stored pixel values, the metadata its DICOM headers are
//! written from, and the ground truth.

use serde::Serialize;

use super::spec::{Margin, Modality, Photometric, View};

/// One synthetic radiograph with its metadata and ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticCase {
    /// Everything the DICOM headers are written from.
    pub meta: CaseMeta,
    /// Stored values, row-major, `width × height`, in `0 ..= 2^bits − 1`
    /// as written with Pixel Representation 0 and in the case's Photometric
    /// Interpretation (so MONOCHROME1 values are already inverted). With
    /// `meta.signed`, the file holds `value − 2^(bits−1)` instead.
    pub pixels: Vec<u16>,
    /// Findings and labels; boxes are in stored-image pixels.
    pub truth: GroundTruth,
    /// Lung-field mask, row-major, same size as the image (true = lung).
    pub lung_mask: Vec<bool>,
}

impl SyntheticCase {
    /// Stored values in MONOCHROME2 sense (larger = more attenuation),
    /// whatever the case's Photometric Interpretation.
    pub fn monochrome2_values(&self) -> Vec<u16> {
        match self.meta.photometric {
            Photometric::Monochrome2 => self.pixels.clone(),
            Photometric::Monochrome1 => {
                let max = self.meta.max_value();
                self.pixels.iter().map(|&v| max - v).collect()
            }
        }
    }

    /// True when pixel (x, y) lies in a lung field (false outside the image).
    pub fn in_lung(&self, x: i64, y: i64) -> bool {
        let (w, h) = (self.meta.width as i64, self.meta.height as i64);
        x >= 0 && y >= 0 && x < w && y < h && self.lung_mask[(y * w + x) as usize]
    }
}

/// Metadata of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseMeta {
    /// Run seed.
    pub seed: u64,
    /// Index of the case within the run (file `NNNNNN.dcm`).
    pub index: u64,
    /// Projection.
    pub view: View,
    /// Modality / IOD.
    pub modality: Modality,
    /// Photometric Interpretation of `pixels`.
    pub photometric: Photometric,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Square pixel spacing in mm (ImagerPixelSpacing, and PixelSpacing for DX).
    pub pixel_spacing_mm: f64,
    /// Bits Stored (8 only for JPEG baseline output); Bits Allocated is 8 or 16.
    pub bits_stored: u8,
    /// Pixel Representation 1.
    pub signed: bool,
    /// Window Center, in rescaled (= unsigned stored) units.
    pub window_center: f64,
    /// Window Width.
    pub window_width: f64,
    /// Patient module values.
    pub patient: Patient,
    /// Study, series and instance identifiers.
    pub study: Study,
    /// Technique values.
    pub acquisition: Acquisition,
}

impl CaseMeta {
    /// Largest stored value, `2^bits − 1`.
    pub fn max_value(&self) -> u16 {
        ((1u32 << self.bits_stored) - 1) as u16
    }

    /// Bits Allocated: 8 when Bits Stored is 8, else 16.
    pub fn bits_allocated(&self) -> u16 {
        if self.bits_stored <= 8 {
            8
        } else {
            16
        }
    }
}

/// Fake but well-formed patient data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patient {
    /// `SYNTH^0001` style.
    pub name: String,
    /// Patient ID.
    pub id: String,
    /// YYYYMMDD.
    pub birth_date: String,
    /// `M` or `F`.
    pub sex: char,
    /// Age in years at the study date.
    pub age_years: u32,
}

/// Study, series and instance identifiers and dates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Study {
    /// Study Instance UID (`2.25.…`).
    pub study_uid: String,
    /// Series Instance UID.
    pub series_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// YYYYMMDD.
    pub date: String,
    /// HHMMSS.
    pub time: String,
    /// Accession Number (16 characters at most).
    pub accession: String,
}

/// Technique values written to the headers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acquisition {
    /// Peak kilovoltage.
    pub kvp: f32,
    /// Exposure in mAs.
    pub mas: f32,
    /// Exposure time in ms.
    pub exposure_time_ms: u32,
    /// Source–image distance in mm.
    pub sid_mm: u32,
}

/// Ground truth of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundTruth {
    /// Findings drawn into the image (empty for negatives and laterals).
    pub findings: Vec<Finding>,
    /// Image-level labels.
    pub labels: Labels,
}

/// Image-level labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Labels {
    /// Any TB pattern present.
    pub tuberculosis: bool,
    /// Any malignant-looking nodule present: spiculated, or ≥ 10 mm.
    pub malignant_nodule: bool,
}

/// Finding type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// Solitary pulmonary nodule.
    Nodule,
    /// Tuberculosis-like upper-zone pattern.
    Tb,
}

/// Patient side (image left is patient right on frontal views).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Patient right (image left).
    Right,
    /// Patient left (image right).
    Left,
}

/// One finding with its bounding box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Nodule or TB.
    #[serde(rename = "type")]
    pub kind: FindingKind,
    /// `[x0, y0, x1, y1]` in stored-image pixels, half-open
    /// (x0 ≤ x < x1, y0 ≤ y < y1).
    pub bbox: [u32; 4],
    /// Lung the finding is in.
    pub side: Side,
    /// Peak added attenuation as a fraction of the case's lung contrast
    /// (soft tissue minus aerated lung).
    pub contrast: f32,
    /// Nodule details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodule: Option<NoduleInfo>,
    /// TB details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tb: Option<TbInfo>,
}

/// Nodule details.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NoduleInfo {
    /// Diameter of the solid core in mm.
    pub diameter_mm: f32,
    /// Margin.
    pub margin: Margin,
    /// Centre in stored-image pixels.
    pub center: [f32; 2],
    /// Spiculated or ≥ 10 mm.
    pub malignant_looking: bool,
}

/// TB pattern details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TbInfo {
    /// Confluent consolidation besides patchy nodular opacities.
    pub confluent: bool,
    /// A thick-walled cavity.
    pub cavity: bool,
    /// Fibrotic streaks toward the hilum.
    pub fibrosis: bool,
}
