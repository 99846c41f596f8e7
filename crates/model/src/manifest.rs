//! Model manifests: the TOML file beside each `.onnx` that says what the
//! model expects, what it outputs, and which outputs make which finding.
//!
//! A manifest is checked twice: on its own here ([`Manifest::load`]: syntax,
//! unknown fields, labels that do not exist, thresholds out of range), and
//! against the ONNX graph when the session is created (names, shapes, dtypes).
//! Both happen at start-up, so a bad manifest never reaches a request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::preprocess::{InputSpec, Interpolation, Layout, Normalization, ResizeMode};

/// A finding's id, as manifests, results, the worklist, metrics, CSV
/// columns and SR codes name it: `tuberculosis`, `malignant_nodule`,
/// `pneumothorax`, … Findings are data: any id a manifest declares flows
/// through the pipeline without code changes.
///
/// An id is 1–64 characters of lower-case ASCII letters, digits and `_`,
/// starting with a letter. Ids order with the reference findings first
/// (tuberculosis, then malignant nodule), then the others by name, so that
/// reports and tables keep a stable column order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FindingId(std::sync::Arc<str>);

impl FindingId {
    /// The reference model's tuberculosis finding.
    pub const TUBERCULOSIS: &'static str = "tuberculosis";
    /// The reference model's malignant nodule finding.
    pub const MALIGNANT_NODULE: &'static str = "malignant_nodule";

    /// Checks and wraps an id.
    pub fn new(id: &str) -> Result<FindingId, String> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(FindingId(id.into()))
        } else {
            Err(format!(
                "`{id}` is not a finding id (1–64 of a-z, 0-9 and _, starting with a letter)"
            ))
        }
    }

    /// `tuberculosis`.
    pub fn tuberculosis() -> FindingId {
        FindingId(Self::TUBERCULOSIS.into())
    }

    /// `malignant_nodule`.
    pub fn malignant_nodule() -> FindingId {
        FindingId(Self::MALIGNANT_NODULE.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A readable name for the id when the manifest gives none:
    /// `malignant_nodule` → `Malignant nodule`.
    pub fn default_display_name(&self) -> String {
        let text = self.0.replace('_', " ");
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
            None => String::new(),
        }
    }

    fn rank(&self) -> u8 {
        match &*self.0 {
            Self::TUBERCULOSIS => 0,
            Self::MALIGNANT_NODULE => 1,
            _ => 2,
        }
    }
}

impl Ord for FindingId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.rank(), &*self.0).cmp(&(other.rank(), &*other.0))
    }
}

impl PartialOrd for FindingId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TryFrom<String> for FindingId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FindingId::new(&s)
    }
}

impl From<FindingId> for String {
    fn from(id: FindingId) -> String {
        id.0.to_string()
    }
}

impl std::str::FromStr for FindingId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FindingId::new(s)
    }
}

impl PartialEq<str> for FindingId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for FindingId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::fmt::Display for FindingId {
    /// The id; honours width and alignment (`{:<17}`), so ids line up in
    /// tables.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// A parsed and self-consistent manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Identity and intended use.
    pub model: ModelSection,
    /// The input tensor.
    pub input: InputSection,
    /// The score tensor.
    pub output: OutputSection,
    /// An optional heatmap tensor.
    #[serde(default)]
    pub heatmap: Option<HeatmapSection>,
    /// How labels become findings, per finding.
    pub findings: BTreeMap<FindingId, FindingSection>,
}

/// `[model]`: identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Stable identifier, reported with every result.
    pub id: String,
    /// Version, reported with every result.
    pub version: String,
    /// What the model is for (and, for reference models, that it is not for
    /// clinical use).
    pub intended_use: String,
    /// Licence of the weights.
    pub licence: String,
    /// ONNX file, relative to the manifest (default: the manifest's name
    /// with `.onnx`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An optional half-precision variant used on CUDA/TensorRT.
    #[serde(default)]
    pub fp16_file: Option<PathBuf>,
}

/// `[input]`: what the model expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// Input tensor name.
    pub tensor: String,
    /// `NCHW` or `NHWC`.
    pub layout: Layout,
    /// 1, or 3 for grey replicated into RGB.
    pub channels: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `letterbox`, `center_crop` or `stretch`.
    pub resize: ResizeMode,
    /// `area`, `bilinear` or `nearest`.
    pub interpolation: Interpolation,
    /// `{ kind = "zero_one" | "minus_one_one" | "xrv" }` or
    /// `{ kind = "mean_std", mean = [...], std = [...] }`.
    pub normalization: Normalization,
}

/// Output activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The tensor already holds probabilities.
    None,
    /// Logistic per value.
    Sigmoid,
    /// Softmax across the labels (scores) or maps (heatmaps, per cell).
    Softmax,
}

/// `[output]`: the score tensor, `[N, labels]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Output tensor name.
    pub tensor: String,
    /// Activation applied to get probabilities.
    pub activation: Activation,
    /// One name per score, in tensor order.
    pub labels: Vec<String>,
}

/// `[heatmap]`: a class-activation tensor, `[N, maps, h, w]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapSection {
    /// Output tensor name.
    pub tensor: String,
    /// Activation applied to get values in `[0, 1]`.
    pub activation: Activation,
    /// The label each map belongs to, in tensor order.
    pub labels: Vec<String>,
}

/// How several labels combine into one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The largest label probability (e.g. Nodule, Mass).
    Max,
    /// The mean of the label probabilities.
    Mean,
}

/// Mapping from a raw probability to a calibrated one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Calibration {
    /// Calibrated = raw.
    None,
    /// `sigmoid(slope · logit(p) + intercept)`.
    Platt {
        /// Multiplier of the raw logit.
        slope: f64,
        /// Offset of the raw logit.
        intercept: f64,
    },
    /// Linear interpolation through `[raw, calibrated]` points with
    /// increasing raw values (e.g. from isotonic regression).
    PiecewiseLinear {
        /// `[raw, calibrated]` pairs.
        points: Vec<[f64; 2]>,
    },
}

impl Calibration {
    /// The calibrated probability of raw probability `p`.
    pub fn apply(&self, p: f64) -> f64 {
        match self {
            Calibration::None => p,
            Calibration::Platt { slope, intercept } => {
                let q = p.clamp(1e-7, 1.0 - 1e-7);
                let logit = (q / (1.0 - q)).ln();
                1.0 / (1.0 + (-(slope * logit + intercept)).exp())
            }
            Calibration::PiecewiseLinear { points } => {
                let (Some(first), Some(last)) = (points.first(), points.last()) else {
                    return p;
                };
                if p <= first[0] {
                    return first[1];
                }
                if p >= last[0] {
                    return last[1];
                }
                let i = points.partition_point(|pt| pt[0] <= p);
                let (a, b) = (points[i - 1], points[i]);
                let t = (p - a[0]) / (b[0] - a[0]);
                a[1] + t * (b[1] - a[1])
            }
        }
    }
}

/// `[findings.NAME]`: one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingSection {
    /// How people read it, e.g. "Pulmonary tuberculosis" (default: the id
    /// with spaces, capitalised).
    #[serde(default)]
    pub display_name: Option<String>,
    /// A standard code for it (SNOMED CT, RadLex, DCM) used in DICOM SR and
    /// HL7/FHIR results; findings without one are coded in the project's
    /// private scheme.
    #[serde(default)]
    pub code: Option<FindingCode>,
    /// Output labels that make this finding.
    pub labels: Vec<String>,
    /// How they combine (default `max`).
    #[serde(default = "default_combine")]
    pub combine: Combine,
    /// Optional calibration of the combined probability.
    #[serde(default = "default_calibration")]
    pub calibration: Calibration,
    /// Named thresholds on the calibrated probability, e.g. `screening`,
    /// `high_specificity`. A score at or above the threshold is positive.
    pub operating_points: BTreeMap<String, f64>,
    /// The operating point used unless the site configuration picks another.
    pub default_operating_point: String,
}

/// A coded concept (DICOM PS3.16 code sequence item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingCode {
    /// Coding scheme designator, e.g. `SCT`, `RADLEX`, `DCM`.
    pub scheme: String,
    /// Code value.
    pub value: String,
    /// Code meaning.
    pub meaning: String,
}

fn default_combine() -> Combine {
    Combine::Max
}

fn default_calibration() -> Calibration {
    Calibration::None
}

/// Why a manifest was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: cannot read manifest: {source}")]
    Read {
        /// Manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown field, a wrong type.
    #[error("{path}: {message}")]
    Syntax {
        /// Manifest path.
        path: PathBuf,
        /// The parser's message (with line, column and field).
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// Manifest path.
        path: PathBuf,
        /// Dotted field path, e.g. `findings.tuberculosis.labels`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// The ONNX file this manifest describes.
    pub fn onnx_path(&self, manifest_path: &Path) -> PathBuf {
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        match &self.model.file {
            Some(file) => dir.join(file),
            None => manifest_path.with_extension("onnx"),
        }
    }

    /// The preprocessing this model expects.
    pub fn input_spec(&self) -> InputSpec {
        InputSpec {
            width: self.input.width,
            height: self.input.height,
            channels: self.input.channels,
            layout: self.input.layout,
            resize: self.input.resize,
            interpolation: self.input.interpolation,
            normalization: self.input.normalization.clone(),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |field: &str, message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        for (field, value) in [
            ("model.id", &self.model.id),
            ("model.version", &self.model.version),
            ("input.tensor", &self.input.tensor),
            ("output.tensor", &self.output.tensor),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field, "must not be empty".into()));
            }
        }
        if !self
            .model
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "model.id",
                "use letters, digits, '-', '_' and '.' only".into(),
            ));
        }
        if !matches!(self.input.channels, 1 | 3) {
            return Err(invalid(
                "input.channels",
                format!("{} (must be 1 or 3)", self.input.channels),
            ));
        }
        for (field, v) in [
            ("input.width", self.input.width),
            ("input.height", self.input.height),
        ] {
            if !(8..=4096).contains(&v) {
                return Err(invalid(field, format!("{v} (must be 8–4096)")));
            }
        }
        if let Normalization::MeanStd { mean, std } = &self.input.normalization {
            let ok_len = |n: usize| n == 1 || n == self.input.channels as usize;
            if !ok_len(mean.len()) || !ok_len(std.len()) {
                return Err(invalid(
                    "input.normalization",
                    "mean and std need one value or one per channel".into(),
                ));
            }
            if std.iter().any(|s| !s.is_finite() || *s <= 0.0)
                || mean.iter().any(|m| !m.is_finite())
            {
                return Err(invalid(
                    "input.normalization",
                    "std must be positive and finite, mean finite".into(),
                ));
            }
        }
        check_labels("output.labels", &self.output.labels, &invalid)?;
        if let Some(heatmap) = &self.heatmap {
            if heatmap.tensor.trim().is_empty() {
                return Err(invalid("heatmap.tensor", "must not be empty".into()));
            }
            check_labels("heatmap.labels", &heatmap.labels, &invalid)?;
            if let Some(unknown) = heatmap
                .labels
                .iter()
                .find(|l| !self.output.labels.contains(l))
            {
                return Err(invalid(
                    "heatmap.labels",
                    format!("`{unknown}` is not one of output.labels"),
                ));
            }
        }
        if self.findings.is_empty() {
            return Err(invalid(
                "findings",
                "declare at least one finding, e.g. [findings.tuberculosis]".into(),
            ));
        }
        for (kind, finding) in &self.findings {
            let field = |f: &str| format!("findings.{kind}.{f}");
            if finding.labels.is_empty() {
                return Err(invalid(
                    &field("labels"),
                    "must name at least one label".into(),
                ));
            }
            if let Some(unknown) = finding
                .labels
                .iter()
                .find(|l| !self.output.labels.contains(l))
            {
                return Err(invalid(
                    &field("labels"),
                    format!("`{unknown}` is not one of output.labels"),
                ));
            }
            if finding.operating_points.is_empty() {
                return Err(invalid(
                    &field("operating_points"),
                    "name at least one threshold".into(),
                ));
            }
            for (name, t) in &finding.operating_points {
                if !t.is_finite() || !(0.0..=1.0).contains(t) {
                    return Err(invalid(
                        &field(&format!("operating_points.{name}")),
                        format!("{t} (a threshold on a probability must be in 0–1)"),
                    ));
                }
            }
            if !finding
                .operating_points
                .contains_key(&finding.default_operating_point)
            {
                return Err(invalid(
                    &field("default_operating_point"),
                    format!(
                        "`{}` is not one of its operating_points",
                        finding.default_operating_point
                    ),
                ));
            }
            match &finding.calibration {
                Calibration::None => {}
                Calibration::Platt { slope, intercept } => {
                    if !slope.is_finite() || !intercept.is_finite() || *slope <= 0.0 {
                        return Err(invalid(
                            &field("calibration"),
                            "platt needs a positive finite slope and a finite intercept".into(),
                        ));
                    }
                }
                Calibration::PiecewiseLinear { points } => {
                    let increasing = points
                        .windows(2)
                        .all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1]);
                    let finite = points.iter().flatten().all(|v| v.is_finite());
                    if points.len() < 2 || !increasing || !finite {
                        return Err(invalid(
                            &field("calibration"),
                            "piecewise_linear needs ≥ 2 finite points, raw strictly and calibrated weakly increasing".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Indices into `output.labels` of each finding's labels.
    pub fn label_indices(&self, kind: &FindingId) -> Vec<usize> {
        self.findings
            .get(kind)
            .map(|f| {
                f.labels
                    .iter()
                    .filter_map(|l| self.output.labels.iter().position(|o| o == l))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Indices into the heatmap tensor's maps of each finding's labels.
    pub fn heatmap_indices(&self, kind: &FindingId) -> Vec<usize> {
        match (&self.heatmap, self.findings.get(kind)) {
            (Some(h), Some(f)) => f
                .labels
                .iter()
                .filter_map(|l| h.labels.iter().position(|o| o == l))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn check_labels(
    field: &str,
    labels: &[String],
    invalid: &impl Fn(&str, String) -> ManifestError,
) -> Result<(), ManifestError> {
    if labels.is_empty() {
        return Err(invalid(field, "must list at least one label".into()));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(invalid(field, format!("`{dup}` appears twice")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
[model]
id = "test-model"
version = "1.0.0"
intended_use = "tests"
licence = "Apache-2.0"

[input]
tensor = "image"
layout = "NCHW"
channels = 1
width = 64
height = 64
resize = "letterbox"
interpolation = "area"
normalization = { kind = "minus_one_one" }

[output]
tensor = "scores"
activation = "sigmoid"
labels = ["Nodule", "Mass", "TB"]

[heatmap]
tensor = "maps"
activation = "sigmoid"
labels = ["TB", "Nodule"]

[findings.tuberculosis]
labels = ["TB"]
default_operating_point = "screening"
operating_points = { screening = 0.2, high_specificity = 0.7 }

[findings.malignant_nodule]
labels = ["Nodule", "Mass"]
combine = "max"
calibration = { kind = "platt", slope = 1.0, intercept = 0.0 }
default_operating_point = "screening"
operating_points = { screening = 0.3 }
"#;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("models/x.toml"))
    }

    #[test]
    fn a_good_manifest_parses_with_label_indices() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.label_indices(&FindingId::malignant_nodule()), vec![0, 1]);
        assert_eq!(m.heatmap_indices(&FindingId::malignant_nodule()), vec![1]);
        assert_eq!(m.heatmap_indices(&FindingId::tuberculosis()), vec![0]);
        assert_eq!(
            m.onnx_path(Path::new("models/x.toml")),
            Path::new("models/x.onnx")
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                GOOD.replace(
                    "labels = [\"Nodule\", \"Mass\"]",
                    "labels = [\"Nodule\", \"Lesion\"]",
                ),
                "findings.malignant_nodule.labels",
            ),
            (
                GOOD.replace("screening = 0.3", "screening = 1.3"),
                "findings.malignant_nodule.operating_points.screening",
            ),
            (
                GOOD.replace("channels = 1", "channels = 2"),
                "input.channels",
            ),
            (
                GOOD.replace(
                    "labels = [\"TB\", \"Nodule\"]",
                    "labels = [\"TB\", \"Lung\"]",
                ),
                "heatmap.labels",
            ),
            (
                GOOD.replacen(
                    "default_operating_point = \"screening\"",
                    "default_operating_point = \"triage\"",
                    1,
                ),
                "findings.tuberculosis.default_operating_point",
            ),
            (
                GOOD.replace("slope = 1.0", "slope = -1.0"),
                "findings.malignant_nodule.calibration",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("models/x.toml: field `"), "{err}");
            assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_syntax_errors_with_a_line() {
        let err = parse(&GOOD.replace("resize = \"letterbox\"", "resize = \"pad\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("models/x.toml") && err.contains("line") && err.contains("pad"),
            "{err}"
        );
        let err = parse(&GOOD.replace("[output]", "[output]\nthreshold = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `threshold`"), "{err}");
        // Any finding id is data, but it must be a well-formed one.
        let m = parse(&GOOD.replace("[findings.tuberculosis]", "[findings.pneumonia]")).unwrap();
        assert!(m
            .findings
            .contains_key(&FindingId::new("pneumonia").unwrap()));
        let err = parse(&GOOD.replace("[findings.tuberculosis]", "[findings.Pneumonia]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Pneumonia") && err.contains("finding id"),
            "{err}"
        );
    }

    #[test]
    fn calibrations_are_monotone_maps_of_probability() {
        let platt = Calibration::Platt {
            slope: 2.0,
            intercept: 0.0,
        };
        assert!((platt.apply(0.5) - 0.5).abs() < 1e-12);
        assert!(platt.apply(0.8) > 0.8);
        let table = Calibration::PiecewiseLinear {
            points: vec![[0.0, 0.0], [0.5, 0.2], [1.0, 1.0]],
        };
        assert!((table.apply(0.25) - 0.1).abs() < 1e-12);
        assert!((table.apply(0.75) - 0.6).abs() < 1e-12);
        assert_eq!(table.apply(2.0), 1.0);
    }
}
