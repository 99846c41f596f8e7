//! What to generate: the per-run options ([`CaseSpec`]) and the small enums
//! they are made of. A spec with "mixed" choices is resolved per image from
//! the case's random stream.

use clap::ValueEnum;
use serde::Serialize;

use super::syntax::OutputSyntax;

/// Radiographic projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum View {
    /// Postero-anterior frontal chest.
    #[serde(rename = "PA")]
    Pa,
    /// Antero-posterior frontal chest (bedside/portable): larger heart, higher clavicles.
    #[serde(rename = "AP")]
    Ap,
    /// Left lateral chest.
    #[serde(rename = "LATERAL")]
    Lateral,
}

impl View {
    /// The DICOM View Position (0018,5101) value.
    pub fn dicom(self) -> &'static str {
        match self {
            View::Pa => "PA",
            View::Ap => "AP",
            View::Lateral => "LATERAL",
        }
    }

    /// True for PA and AP.
    pub fn is_frontal(self) -> bool {
        self != View::Lateral
    }
}

/// Which view(s) to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewChoice {
    /// Postero-anterior only.
    #[value(name = "PA")]
    Pa,
    /// Antero-posterior only.
    #[value(name = "AP")]
    Ap,
    /// Lateral only (no findings are placed on laterals).
    #[value(name = "LATERAL")]
    Lateral,
    /// 70 % PA, 30 % AP.
    #[value(name = "frontal")]
    Frontal,
    /// 60 % PA, 30 % AP, 10 % lateral.
    #[value(name = "mixed")]
    Mixed,
}

/// Acquisition modality and IOD of the written object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Modality {
    /// Computed Radiography Image Storage (1.2.840.10008.5.1.4.1.1.1).
    #[serde(rename = "CR")]
    Cr,
    /// Digital X-Ray Image Storage – For Presentation (…1.1.1.1).
    #[serde(rename = "DX")]
    Dx,
    /// Digital X-Ray Image Storage – For Processing (…1.1.1.1.1): unprocessed,
    /// linear tone, PresentationIntentType FOR PROCESSING.
    #[serde(rename = "DX-PROCESSING")]
    DxForProcessing,
}

impl Modality {
    /// The SOP Class UID of the IOD.
    pub fn sop_class_uid(self) -> &'static str {
        match self {
            Modality::Cr => "1.2.840.10008.5.1.4.1.1.1",
            Modality::Dx => "1.2.840.10008.5.1.4.1.1.1.1",
            Modality::DxForProcessing => "1.2.840.10008.5.1.4.1.1.1.1.1",
        }
    }

    /// The DICOM Modality (0008,0060) value.
    pub fn dicom(self) -> &'static str {
        match self {
            Modality::Cr => "CR",
            Modality::Dx | Modality::DxForProcessing => "DX",
        }
    }
}

/// Which modality/IOD(s) to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModalityChoice {
    /// Computed radiography.
    #[value(name = "CR")]
    Cr,
    /// Digital X-ray, for presentation.
    #[value(name = "DX")]
    Dx,
    /// Digital X-ray, for processing (raw, linear; ingest windows it itself).
    #[value(name = "DX-PROCESSING")]
    DxForProcessing,
    /// Half CR, half DX for presentation.
    #[value(name = "mixed")]
    Mixed,
}

/// Photometric Interpretation of the stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Photometric {
    /// Larger stored value = darker (inverted stored values, as CR readers write).
    #[serde(rename = "MONOCHROME1")]
    Monochrome1,
    /// Larger stored value = brighter = more attenuation.
    #[serde(rename = "MONOCHROME2")]
    Monochrome2,
}

impl Photometric {
    /// The DICOM (0028,0004) value.
    pub fn dicom(self) -> &'static str {
        match self {
            Photometric::Monochrome1 => "MONOCHROME1",
            Photometric::Monochrome2 => "MONOCHROME2",
        }
    }
}

/// Which Photometric Interpretation(s) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhotometricChoice {
    /// MONOCHROME1 for CR, MONOCHROME2 for DX.
    #[value(name = "auto")]
    Auto,
    /// Always MONOCHROME1 (inverted stored values).
    #[value(name = "MONOCHROME1")]
    Monochrome1,
    /// Always MONOCHROME2.
    #[value(name = "MONOCHROME2")]
    Monochrome2,
    /// Either, 50/50 per image.
    #[value(name = "mixed")]
    Mixed,
}

/// Nodule margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Margin {
    /// Round, well defined.
    Smooth,
    /// Lobulated with radiating strands (corona radiata).
    Spiculated,
}

/// Which finding types positive images may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingSet {
    /// Solitary pulmonary nodules.
    pub nodule: bool,
    /// Tuberculosis-like upper-zone patterns.
    pub tb: bool,
}

/// Everything that decides what [`generate_case`](super::generate_case)
/// renders for a given (seed, index).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseSpec {
    /// View(s).
    pub view: ViewChoice,
    /// Modality / IOD.
    pub modality: ModalityChoice,
    /// Photometric Interpretation.
    pub photometric: PhotometricChoice,
    /// Bits Stored, 10–16; `None` picks 10–16 per image. Capped by
    /// [`OutputSyntax::max_bits`] (8 for JPEG baseline, 12 for JPEG extended).
    pub bits: Option<u8>,
    /// Columns × rows; `None` picks a detector (35–43 cm per side at
    /// 0.10–0.20 mm, at most 3000 px per side) per image. With a fixed size
    /// the field of view is still 35–43 cm, so the pixel spacing follows.
    pub size: Option<(u32, u32)>,
    /// Fraction of frontal images that carry at least one finding.
    pub positive_rate: f64,
    /// Finding types allowed on positive images.
    pub findings: FindingSet,
    /// Nodule diameter range in mm.
    pub nodule_mm: (f32, f32),
    /// Multiplier of nodule contrast (1 = the default, subtle like real
    /// films; larger makes nodules more conspicuous).
    pub nodule_contrast: f32,
    /// Write Pixel Representation 1 (two's complement) with a Rescale
    /// Intercept of 2^(bits−1), so that rescaled values equal the unsigned ones.
    pub signed: bool,
    /// The transfer syntax the cases are meant for (sets the bits cap).
    pub syntax: OutputSyntax,
}

impl Default for CaseSpec {
    fn default() -> Self {
        CaseSpec {
            view: ViewChoice::Frontal,
            modality: ModalityChoice::Mixed,
            photometric: PhotometricChoice::Auto,
            bits: None,
            size: None,
            positive_rate: 0.5,
            findings: FindingSet {
                nodule: true,
                tb: true,
            },
            nodule_mm: (5.0, 30.0),
            nodule_contrast: 1.0,
            signed: false,
            syntax: OutputSyntax::ExplicitLe,
        }
    }
}

/// A spec that cannot be generated, with the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid synth options: {0}")]
pub struct SpecError(pub String);

impl CaseSpec {
    /// A fast spec for tests and training: 512 × 512, PA, DX, MONOCHROME2,
    /// 12 bits, Explicit VR Little Endian.
    pub fn small() -> CaseSpec {
        CaseSpec {
            view: ViewChoice::Pa,
            modality: ModalityChoice::Dx,
            photometric: PhotometricChoice::Monochrome2,
            bits: Some(12),
            size: Some((512, 512)),
            ..CaseSpec::default()
        }
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |m: String| Err(SpecError(m));
        if let Some(b) = self.bits {
            if !(8..=16).contains(&b) {
                return err(format!(
                    "bits stored must be 10–16 (8 for JPEG baseline), got {b}"
                ));
            }
        }
        if let Some((w, h)) = self.size {
            if !(64..=8192).contains(&w) || !(64..=8192).contains(&h) {
                return err(format!("size must be 64–8192 px per side, got {w}x{h}"));
            }
        }
        if !(0.0..=1.0).contains(&self.positive_rate) {
            return err(format!(
                "positive rate must be in [0, 1], got {}",
                self.positive_rate
            ));
        }
        if self.positive_rate > 0.0 && !self.findings.nodule && !self.findings.tb {
            return err("a positive rate above 0 needs at least one finding type".into());
        }
        let (lo, hi) = self.nodule_mm;
        if !(lo >= 3.0 && lo <= hi && hi <= 40.0) {
            return err(format!(
                "nodule diameter range must lie in 3–40 mm, got {lo}–{hi}"
            ));
        }
        if !(0.25..=5.0).contains(&self.nodule_contrast) {
            return err(format!(
                "nodule contrast multiplier must be 0.25–5, got {}",
                self.nodule_contrast
            ));
        }
        if self.signed && !self.syntax.supports_signed() {
            return err(format!(
                "signed pixels are written only with native transfer syntaxes or RLE, not {}",
                self.syntax.name()
            ));
        }
        Ok(())
    }

    /// Bits Stored for one image: the requested (or drawn) value capped by
    /// the transfer syntax.
    pub(crate) fn bits_for(&self, drawn: u8) -> u8 {
        let wanted = self.bits.unwrap_or(drawn);
        match self.syntax.max_bits() {
            8 => 8,
            cap => wanted.min(cap),
        }
    }
}
