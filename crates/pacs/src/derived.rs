//! What every result object sent back to PACS shares: the patient and study
//! modules copied from the analysed image (so PACS files the result under
//! the original study), a new series and instance with UIDs derived from
//! the image and the model, this node as the equipment, and the algorithm
//! named in the Contributing Equipment Sequence as the IHE AI Results (AIR)
//! profile asks.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};

use super::uids;
use cxr_model::Provenance;
use cxr_pipeline::Outcome;

/// Manufacturer (0008,0070) of the objects this service makes.
pub const MANUFACTURER: &str = "cxr-triage";

/// Attributes copied from the analysed image when present: SOP Common's
/// character set, the Patient, General Study and Patient Study modules.
const COPIED: [Tag; 24] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::OTHER_PATIENT_I_DS_SEQUENCE,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::PATIENT_IDENTITY_REMOVED,
    tags::DEIDENTIFICATION_METHOD,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
    tags::STUDY_DESCRIPTION,
    tags::PROCEDURE_CODE_SEQUENCE,
    tags::INSTITUTION_NAME,
];

/// Type 2 attributes of those modules: written empty when the image lacks them.
const REQUIRED_EMPTY: [(Tag, VR); 9] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

/// Why a result object could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The image lacks something the result must reference.
    #[error("the analysed image has no {0}")]
    MissingInSource(&'static str),
    /// The image was not analysed, or has no preview to draw on.
    #[error("nothing to report: {0}")]
    NothingToReport(String),
    /// dicom-rs could not write the object.
    #[error("writing the result object: {0}")]
    Write(String),
}

/// The analysed image and its result, as every result object needs them.
pub struct ResultInput<'a> {
    /// The image's header (pixel data not needed).
    pub source: &'a InMemDicomObject,
    /// Its analysis.
    pub outcome: &'a Outcome,
    /// This node's AE title (Station Name).
    pub station: &'a str,
    /// When the result is made, ms since the epoch.
    pub now_ms: i64,
}

/// A result object ready to send: a DICOM Part 10 file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultObject {
    /// `sc` or `sr`.
    pub kind: &'static str,
    /// Its SOP Class UID.
    pub sop_class_uid: String,
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// The file (Explicit VR Little Endian).
    pub file: Vec<u8>,
}

/// Identity of the analysed image that results reference.
pub struct SourceRef {
    /// SOP Class UID.
    pub sop_class: String,
    /// SOP Instance UID.
    pub sop_instance: String,
    /// Series Instance UID.
    pub series: String,
    /// Study Instance UID.
    pub study: String,
    /// Instance Number, when present.
    pub instance_number: Option<String>,
}

impl SourceRef {
    /// Reads the references from the image's header.
    pub fn of(source: &InMemDicomObject) -> Result<SourceRef, ResultError> {
        let get = |tag, what| text(source, tag).ok_or(ResultError::MissingInSource(what));
        Ok(SourceRef {
            sop_class: get(tags::SOP_CLASS_UID, "SOP Class UID")?,
            sop_instance: get(tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
            series: get(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
            study: get(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
            instance_number: text(source, tags::INSTANCE_NUMBER),
        })
    }
}

/// A non-empty string value, trimmed.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let v = obj.get(tag)?.to_str().ok()?;
    let v = v.trim_end_matches(['\0', ' ']).trim_start();
    (!v.is_empty()).then(|| v.to_string())
}

/// Puts a string element.
pub fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Puts an empty element (type 2): no value, or a sequence of no items.
pub fn put_empty(obj: &mut InMemDicomObject, tag: Tag, vr: VR) {
    if vr == VR::SQ {
        put_seq(obj, tag, Vec::new());
    } else {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
}

/// `text` in the default character repertoire, which every Specific
/// Character Set a copied header may declare can encode: common symbols
/// spelled out, anything else as `?`.
pub fn ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_ascii() && (!c.is_ascii_control() || c == '\n') => out.push(c),
            '≥' => out.push_str(">="),
            '≤' => out.push_str("<="),
            '→' => out.push_str("->"),
            '–' | '—' | '−' => out.push('-'),
            '×' => out.push('x'),
            '·' => out.push('.'),
            _ => out.push('?'),
        }
    }
    out
}

/// An error with its causes, `outer: inner: ...`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Puts an unsigned short.
pub fn put_us(obj: &mut InMemDicomObject, tag: Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Puts a sequence.
pub fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A code sequence item: (value, scheme, meaning).
pub fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    put_str(&mut c, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut c, tags::CODE_MEANING, VR::LO, meaning);
    c
}

/// A DS value: at most 16 characters.
pub fn ds(v: f64) -> String {
    for digits in (0..=6).rev() {
        let s = format!("{v:.digits$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.0}")
}

/// `(YYYYMMDD, HHMMSS.fff, ±HHMM)` in this host's local time for `ms` since
/// the epoch. Result objects carry local times like the images they sit
/// beside (a site's modalities and this service share a time zone).
pub fn local_date_time(ms: i64) -> (String, String, String) {
    use chrono::TimeZone as _;
    let t = chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(chrono::Local::now);
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S%.3f").to_string(),
        t.format("%z").to_string(),
    )
}

/// The parts that make a result's UIDs: the same image analysed by the same
/// models at the same operating points gives the same result instance.
pub fn result_identity(outcome: &Outcome) -> Vec<String> {
    let mut parts = Vec::new();
    for p in &outcome.provenance {
        parts.push(p.model_id.clone());
        parts.push(p.model_version.clone());
    }
    for f in &outcome.findings {
        parts.push(f.finding.as_str().to_string());
        for op in &f.operating_points {
            parts.push(format!("{}={:.6}", op.name, op.threshold));
        }
        parts.push(format!("in-use={}", f.operating_point));
    }
    parts
}

/// The algorithm as one line: `model version` for each model.
pub fn algorithm_names(provenance: &[Provenance]) -> (String, String) {
    let names: Vec<&str> = provenance.iter().map(|p| p.model_id.as_str()).collect();
    let versions: Vec<&str> = provenance
        .iter()
        .map(|p| p.model_version.as_str())
        .collect();
    (ascii(&names.join(", ")), ascii(&versions.join(", ")))
}

/// Starts a result object: SOP common, copied patient and study, the new
/// series, equipment and contributing equipment.
pub struct SeriesSpec<'a> {
    /// `sc` or `sr` (part of the UIDs).
    pub kind: &'static str,
    /// SOP Class UID.
    pub sop_class: &'a str,
    /// Modality.
    pub modality: &'a str,
    /// Series Number.
    pub series_number: &'a str,
    /// Series Description.
    pub series_description: &'a str,
}

/// The object's dataset so far and its UIDs.
pub struct Started {
    /// The dataset.
    pub obj: InMemDicomObject,
    /// Its SOP Instance UID.
    pub sop_instance: String,
    /// Its Series Instance UID.
    pub series_instance: String,
    /// The image it reports on.
    pub source: SourceRef,
}

/// Builds the common part of a result object.
pub fn start(input: &ResultInput<'_>, spec: &SeriesSpec<'_>) -> Result<Started, ResultError> {
    let source = SourceRef::of(input.source)?;
    let identity = result_identity(input.outcome);
    let mut instance_parts = vec![spec.kind, "instance", source.sop_instance.as_str()];
    instance_parts.extend(identity.iter().map(String::as_str));
    let sop_instance = uids::derived_uid(&instance_parts);
    let mut series_parts = vec![spec.kind, "series", source.study.as_str()];
    series_parts.extend(
        input
            .outcome
            .provenance
            .iter()
            .flat_map(|p| [p.model_id.as_str(), p.model_version.as_str()]),
    );
    let series_instance = uids::derived_uid(&series_parts);

    let mut obj = InMemDicomObject::new_empty();
    for tag in COPIED {
        if let Some(e) = input.source.get(tag) {
            obj.put(e.clone());
        }
    }
    for (tag, vr) in REQUIRED_EMPTY {
        if obj.get(tag).is_none() {
            put_empty(&mut obj, tag, vr);
        }
    }
    let (date, time, offset) = local_date_time(input.now_ms);
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, spec.sop_class);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop_instance);
    put_str(&mut obj, tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    put_str(&mut obj, tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    put_str(
        &mut obj,
        tags::INSTANCE_CREATOR_UID,
        VR::UI,
        uids::IMPLEMENTATION_CLASS_UID,
    );
    // General / SR Document Series.
    put_str(&mut obj, tags::MODALITY, VR::CS, spec.modality);
    put_str(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &series_instance,
    );
    put_str(&mut obj, tags::SERIES_NUMBER, VR::IS, spec.series_number);
    put_str(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        spec.series_description,
    );
    put_str(&mut obj, tags::SERIES_DATE, VR::DA, &date);
    put_str(&mut obj, tags::SERIES_TIME, VR::TM, &time);
    if spec.kind == "sc" {
        // General Series: Laterality is type 2C, needed for paired body
        // parts; the source's Body Part Examined shows a chest needs none
        // (dciodvfy cannot tell otherwise).
        if let Some(e) = input.source.get(tags::BODY_PART_EXAMINED) {
            obj.put(e.clone());
        }
    }
    put_str(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        source.instance_number.as_deref().unwrap_or("1"),
    );
    // General and Enhanced General Equipment: this service.
    let (model_names, model_versions) = algorithm_names(&input.outcome.provenance);
    put_str(&mut obj, tags::MANUFACTURER, VR::LO, MANUFACTURER);
    put_str(&mut obj, tags::STATION_NAME, VR::SH, input.station);
    put_str(
        &mut obj,
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        "cxr-triage",
    );
    put_str(&mut obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, input.station);
    obj.put(DataElement::new(
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        PrimitiveValue::Strs(
            vec![
                format!("cxr-triage {}", env!("CARGO_PKG_VERSION")),
                format!("{model_names} {model_versions}"),
            ]
            .into(),
        ),
    ));
    // IHE AIR: the algorithm in Contributing Equipment, one item per model.
    let findings: Vec<&str> = input
        .outcome
        .findings
        .iter()
        .map(|f| f.display_name.as_str())
        .collect();
    let findings = findings.join(", ");
    let contributed = format!("{date}{time}{offset}");
    let equipment = |model: &str, version: &str, device: Option<String>, description: &str| {
        let mut item = InMemDicomObject::new_empty();
        put_seq(
            &mut item,
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![code("109102", "DCM", "Processing Equipment")],
        );
        put_str(&mut item, tags::MANUFACTURER, VR::LO, MANUFACTURER);
        put_str(&mut item, tags::MANUFACTURER_MODEL_NAME, VR::LO, model);
        put_str(&mut item, tags::SOFTWARE_VERSIONS, VR::LO, version);
        if let Some(uid) = device {
            put_str(&mut item, tags::DEVICE_UID, VR::UI, &uid);
        }
        put_str(&mut item, tags::STATION_NAME, VR::SH, input.station);
        put_str(
            &mut item,
            tags::CONTRIBUTION_DATE_TIME,
            VR::DT,
            &contributed,
        );
        put_str(
            &mut item,
            tags::CONTRIBUTION_DESCRIPTION,
            VR::ST,
            &ascii(description),
        );
        item
    };
    let mut contributing: Vec<InMemDicomObject> = input
        .outcome
        .provenance
        .iter()
        .map(|p| {
            equipment(
                &p.model_id,
                &p.model_version,
                Some(uids::derived_uid(&["model", &p.model_id, &p.model_version])),
                &format!(
                    "AI analysis ({findings}) by {} {} on {}",
                    p.model_id,
                    p.model_version,
                    p.provider.as_str()
                ),
            )
        })
        .collect();
    if contributing.is_empty() {
        // Not analysed: the sequence, when present, needs an item; this
        // service is the equipment that made the notice.
        contributing.push(equipment(
            "cxr-triage",
            env!("CARGO_PKG_VERSION"),
            None,
            "Image not analysed by AI; read without AI assistance",
        ));
    }
    put_seq(
        &mut obj,
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        contributing,
    );
    Ok(Started {
        obj,
        sop_instance,
        series_instance,
        source,
    })
}

/// A reference to the analysed image: (0008,1150) and (0008,1155).
pub fn image_reference(source: &SourceRef) -> InMemDicomObject {
    let mut r = InMemDicomObject::new_empty();
    put_str(
        &mut r,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        &source.sop_class,
    );
    put_str(
        &mut r,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &source.sop_instance,
    );
    r
}

/// Writes the finished dataset as a Part 10 file, Explicit VR Little Endian.
pub fn finish(
    kind: &'static str,
    sop_class: &str,
    started: Started,
) -> Result<ResultObject, ResultError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(started.sop_instance.as_str())
        .transfer_syntax(uids::EXPLICIT_VR_LE)
        .implementation_class_uid(uids::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(uids::IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| ResultError::Write(chain(&e)))?;
    let file: FileDicomObject<InMemDicomObject> = started.obj.with_exact_meta(meta);
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|e| ResultError::Write(chain(&e)))?;
    Ok(ResultObject {
        kind,
        sop_class_uid: sop_class.to_string(),
        sop_instance_uid: started.sop_instance,
        file: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dates_and_times_have_dicom_form() {
        let (d, t, z) = local_date_time(1_795_398_307_250);
        assert_eq!(d.len(), 8);
        assert!(d.starts_with("2026112"));
        assert_eq!(t.len(), 10);
        assert_eq!(&t[6..7], ".");
        assert!(z.starts_with('+') || z.starts_with('-'));
        assert_eq!(z.len(), 5);
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(ds(0.5), "0.5");
        assert_eq!(ds(42.0), "42");
        assert_eq!(ds(1.0 / 3.0), "0.333333");
        assert!(ds(123_456_789.123_456).len() <= 16);
    }
}
