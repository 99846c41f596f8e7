//! The header attributes triage needs, read once from a parsed object.

use std::fmt;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::Serialize;

use dicom_core::Tag;

/// Identity and acquisition metadata of a radiograph (no patient data here:
/// that lives in [`Patient`], which never prints its values).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RadiographMeta {
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// SOP Instance UID (0008,0018): the key of an image everywhere in the service.
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Accession Number (0008,0050), when present.
    pub accession_number: Option<String>,
    /// Modality (0008,0060), e.g. `CR`, `DX`.
    pub modality: Option<String>,
    /// View Position (0018,5101), e.g. `PA`, `AP`, `LL`.
    pub view_position: Option<String>,
    /// Image Laterality (0020,0062) or Laterality (0020,0060).
    pub laterality: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part_examined: Option<String>,
    /// Pixel spacing in mm as (row spacing, column spacing), from Pixel
    /// Spacing (0028,0030), else Imager Pixel Spacing (0018,1164). Zero or
    /// unparsable values are dropped.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Which attribute `pixel_spacing_mm` came from.
    pub pixel_spacing_source: Option<&'static str>,
    /// Study Date (0008,0020), `YYYYMMDD` as sent.
    pub study_date: Option<String>,
    /// Study Time (0008,0030), `HHMMSS.frac` as sent.
    pub study_time: Option<String>,
    /// Manufacturer (0008,0070).
    pub manufacturer: Option<String>,
    /// Presentation Intent Type (0008,0068): `FOR PRESENTATION` or `FOR PROCESSING`.
    pub presentation_intent: Option<String>,
    /// Whether the object has Pixel Data (7FE0,0010): an image object
    /// without it is not an image anyone can read.
    pub has_pixel_data: bool,
}

/// Patient attributes. They are needed to show a worklist to a radiologist
/// but must never reach logs or metrics, so `Debug` redacts them and they are
/// serialised only on explicit request (`inspect --phi`).
#[derive(Clone, Default, Serialize, PartialEq)]
pub struct Patient {
    /// Patient ID (0010,0020).
    pub id: Option<String>,
    /// Patient's Name (0010,0010), DICOM PN form.
    pub name: Option<String>,
    /// Patient's Sex (0010,0040).
    pub sex: Option<String>,
    /// Patient's Age (0010,1010), e.g. `045Y`.
    pub age: Option<String>,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Patient { <redacted> }")
    }
}

/// Reads a string attribute, trimmed of DICOM padding; `None` when absent or empty.
pub(crate) fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let value = element.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Reads a multi-valued numeric (DS/IS/US…) attribute as floats.
pub(crate) fn numbers(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let values = element.to_multi_float64().ok()?;
    (!values.is_empty()).then_some(values)
}

impl RadiographMeta {
    /// Reads the metadata from a parsed object. Absent attributes stay `None`;
    /// the gate decides what their absence means.
    pub(crate) fn from_object(obj: &DefaultDicomObject) -> Self {
        let (pixel_spacing_mm, pixel_spacing_source) = spacing(obj);
        RadiographMeta {
            sop_class_uid: text(obj, tags::SOP_CLASS_UID)
                .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string()),
            sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID)
                .unwrap_or_else(|| obj.meta().media_storage_sop_instance_uid().to_string()),
            study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            modality: text(obj, tags::MODALITY),
            view_position: text(obj, tags::VIEW_POSITION),
            laterality: text(obj, tags::IMAGE_LATERALITY).or_else(|| text(obj, tags::LATERALITY)),
            body_part_examined: text(obj, tags::BODY_PART_EXAMINED),
            pixel_spacing_mm,
            pixel_spacing_source,
            study_date: text(obj, tags::STUDY_DATE),
            study_time: text(obj, tags::STUDY_TIME),
            manufacturer: text(obj, tags::MANUFACTURER),
            presentation_intent: text(obj, tags::PRESENTATION_INTENT_TYPE),
            has_pixel_data: obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_some(),
        }
    }
}

impl Patient {
    /// Reads the patient attributes from a parsed object.
    pub(crate) fn from_object(obj: &DefaultDicomObject) -> Self {
        Patient {
            id: text(obj, tags::PATIENT_ID),
            name: text(obj, tags::PATIENT_NAME),
            sex: text(obj, tags::PATIENT_SEX),
            age: text(obj, tags::PATIENT_AGE),
        }
    }
}

fn spacing(obj: &DefaultDicomObject) -> (Option<[f64; 2]>, Option<&'static str>) {
    let candidates = [
        (tags::PIXEL_SPACING, "PixelSpacing"),
        (tags::IMAGER_PIXEL_SPACING, "ImagerPixelSpacing"),
    ];
    for (tag, name) in candidates {
        if let Some(v) = numbers(obj, tag) {
            let pair = match v.as_slice() {
                [r, c, ..] => [*r, *c],
                [s] => [*s, *s],
                [] => continue,
            };
            if pair.iter().all(|x| x.is_finite() && *x > 0.0) {
                return (Some(pair), Some(name));
            }
        }
    }
    (None, None)
}
