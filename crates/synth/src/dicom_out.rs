//! DICOM headers of a synthetic case: a CR or DX (for presentation / for
//! processing) image object with patient, study, series, equipment,
//! technique, anatomy and pixel modules, with native pixel data.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};

use super::case::SyntheticCase;
use super::spec::{Modality, Photometric, View};
use super::WriteError;

/// Implementation Class UID of files written by `synth` (own 2.25 root).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.217466469208410680479654270095843603649";
/// Implementation Version Name of files written by `synth`.
pub const IMPLEMENTATION_VERSION: &str = "CXR_SYNTH_0_1";
/// Manufacturer (0008,0070).
pub const MANUFACTURER: &str = "cxr-triage synth";
/// Image Comments (0020,4000).
pub const IMAGE_COMMENTS: &str = "SYNTHETIC - NOT A PATIENT";

/// The case as a file object with native pixel data, Explicit VR Little
/// Endian in its meta group.
pub(crate) fn build_object(
    case: &SyntheticCase,
) -> Result<FileDicomObject<InMemDicomObject>, WriteError> {
    let mut obj = InMemDicomObject::new_empty();
    put_identity(&mut obj, case);
    put_equipment_and_technique(&mut obj, case);
    put_image(&mut obj, case);
    put_pixel_data(&mut obj, case);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(case.meta.modality.sop_class_uid())
        .media_storage_sop_instance_uid(case.meta.study.sop_instance_uid.as_str())
        .transfer_syntax("1.2.840.10008.1.2.1")
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION)
        .build()
        .map_err(|e| WriteError::Build(e.to_string()))?;
    Ok(obj.with_exact_meta(meta))
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

fn put_strs(obj: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[&str]) {
    let strs: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Strs(strs.into())));
}

fn put_us(obj: &mut InMemDicomObject, tag: Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// A DS value: at most 16 characters, no trailing zeros.
fn ds(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.chars().take(16).collect()
}

/// SOP common, patient, general study and series values.
fn put_identity(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    let m = &case.meta;
    let (p, s) = (&m.patient, &m.study);
    put_str(obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put_str(obj, tags::SOP_CLASS_UID, VR::UI, m.modality.sop_class_uid());
    put_str(obj, tags::SOP_INSTANCE_UID, VR::UI, &s.sop_instance_uid);
    for tag in [
        tags::STUDY_DATE,
        tags::SERIES_DATE,
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
    ] {
        put_str(obj, tag, VR::DA, &s.date);
    }
    for tag in [
        tags::STUDY_TIME,
        tags::SERIES_TIME,
        tags::ACQUISITION_TIME,
        tags::CONTENT_TIME,
    ] {
        put_str(obj, tag, VR::TM, &s.time);
    }
    put_str(obj, tags::ACCESSION_NUMBER, VR::SH, &s.accession);
    put_str(obj, tags::MODALITY, VR::CS, m.modality.dicom());
    put_str(obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    let view = m.view.dicom();
    put_str(
        obj,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        &format!("XR CHEST {view}"),
    );
    put_str(
        obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &format!("CHEST {view}"),
    );
    put_str(obj, tags::PATIENT_NAME, VR::PN, &p.name);
    put_str(obj, tags::PATIENT_ID, VR::LO, &p.id);
    put_str(obj, tags::PATIENT_BIRTH_DATE, VR::DA, &p.birth_date);
    put_str(obj, tags::PATIENT_SEX, VR::CS, &p.sex.to_string());
    put_str(
        obj,
        tags::PATIENT_AGE,
        VR::AS,
        &format!("{:03}Y", p.age_years),
    );
    put_str(obj, tags::STUDY_INSTANCE_UID, VR::UI, &s.study_uid);
    put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, &s.series_uid);
    put_str(obj, tags::STUDY_ID, VR::SH, "1");
    for tag in [
        tags::SERIES_NUMBER,
        tags::INSTANCE_NUMBER,
        tags::ACQUISITION_NUMBER,
    ] {
        put_str(obj, tag, VR::IS, "1");
    }
}

/// Equipment, technique and anatomy values.
fn put_equipment_and_technique(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    put_equipment(obj);
    put_technique(obj, case);
    put_anatomy(obj, case);
}

fn put_equipment(obj: &mut InMemDicomObject) {
    put_str(obj, tags::MANUFACTURER, VR::LO, MANUFACTURER);
    put_str(obj, tags::INSTITUTION_NAME, VR::LO, "SYNTHETIC");
    put_str(obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "synth");
    put_str(obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, "SYNTH-0001");
    let version = env!("CARGO_PKG_VERSION");
    put_str(obj, tags::SOFTWARE_VERSIONS, VR::LO, version);
}

/// kVp, SID, exposure and the imager pixel spacing.
fn put_technique(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    let m = &case.meta;
    let a = &m.acquisition;
    put_str(obj, tags::KVP, VR::DS, &ds(f64::from(a.kvp)));
    let sid = a.sid_mm.to_string();
    put_str(obj, tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, &sid);
    let time = a.exposure_time_ms.to_string();
    put_str(obj, tags::EXPOSURE_TIME, VR::IS, &time);
    let micro_as = (f64::from(a.mas) * 1000.0).round().to_string();
    put_str(obj, tags::EXPOSURE_INU_AS, VR::IS, &micro_as);
    let spacing = ds(m.pixel_spacing_mm);
    let pair = [spacing.as_str(), spacing.as_str()];
    put_strs(obj, tags::IMAGER_PIXEL_SPACING, VR::DS, &pair);
}

/// Body part, view, orientation, comments and the anatomic region code.
fn put_anatomy(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    let view = case.meta.view;
    put_str(obj, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    put_str(obj, tags::VIEW_POSITION, VR::CS, view.dicom());
    let orientation: &[&str] = if view == View::Lateral {
        &["P", "F"]
    } else {
        &["L", "F"]
    };
    put_strs(obj, tags::PATIENT_ORIENTATION, VR::CS, orientation);
    put_str(obj, tags::IMAGE_COMMENTS, VR::LT, IMAGE_COMMENTS);
    put_str(obj, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
    put_str(obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    let mut region = InMemDicomObject::new_empty();
    put_str(&mut region, tags::CODE_VALUE, VR::SH, "43799004");
    put_str(&mut region, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "SCT");
    put_str(&mut region, tags::CODE_MEANING, VR::LO, "Chest");
    let seq = DataSetSequence::from(vec![region]);
    obj.put(DataElement::new(
        tags::ANATOMIC_REGION_SEQUENCE,
        VR::SQ,
        seq,
    ));
}

/// Image type, DX-specific attributes, pixel description, rescale and VOI.
fn put_image(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    let m = &case.meta;
    put_strs(obj, tags::IMAGE_TYPE, VR::CS, &["ORIGINAL", "PRIMARY"]);
    if m.modality != Modality::Cr {
        let intent = if m.modality == Modality::Dx {
            "FOR PRESENTATION"
        } else {
            "FOR PROCESSING"
        };
        put_str(obj, tags::PRESENTATION_INTENT_TYPE, VR::CS, intent);
        let spacing = ds(m.pixel_spacing_mm);
        put_strs(obj, tags::PIXEL_SPACING, VR::DS, &[&spacing, &spacing]);
        put_str(obj, tags::IMAGE_LATERALITY, VR::CS, "U");
        put_str(obj, tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
        put_str(obj, tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
        let sign: i16 = if m.photometric == Photometric::Monochrome2 {
            -1
        } else {
            1
        };
        let sign = PrimitiveValue::from(sign);
        obj.put(DataElement::new(
            tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN,
            VR::SS,
            sign,
        ));
    }
    put_us(obj, tags::SAMPLES_PER_PIXEL, 1);
    put_str(
        obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        m.photometric.dicom(),
    );
    put_us(obj, tags::ROWS, m.height as u16);
    put_us(obj, tags::COLUMNS, m.width as u16);
    put_us(obj, tags::BITS_ALLOCATED, m.bits_allocated());
    put_us(obj, tags::BITS_STORED, u16::from(m.bits_stored));
    put_us(obj, tags::HIGH_BIT, u16::from(m.bits_stored) - 1);
    put_us(obj, tags::PIXEL_REPRESENTATION, u16::from(m.signed));
    if m.modality != Modality::Cr || m.signed {
        let intercept = if m.signed {
            1u32 << (m.bits_stored - 1)
        } else {
            0
        };
        put_str(obj, tags::RESCALE_INTERCEPT, VR::DS, &intercept.to_string());
        put_str(obj, tags::RESCALE_SLOPE, VR::DS, "1");
        put_str(obj, tags::RESCALE_TYPE, VR::LO, "US");
    }
    put_str(obj, tags::WINDOW_CENTER, VR::DS, &ds(m.window_center));
    put_str(obj, tags::WINDOW_WIDTH, VR::DS, &ds(m.window_width));
    put_str(obj, tags::VOILUT_FUNCTION, VR::CS, "LINEAR");
}

/// Native pixel data: OW of 16-bit words (two's complement when signed), or
/// OB bytes padded to even length for Bits Allocated 8.
fn put_pixel_data(obj: &mut InMemDicomObject, case: &SyntheticCase) {
    let m = &case.meta;
    let element = if m.bits_allocated() == 8 {
        let mut bytes: Vec<u8> = case.pixels.iter().map(|&v| v as u8).collect();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(bytes))
    } else {
        let words: Vec<u16> = if m.signed {
            let offset = 1i32 << (m.bits_stored - 1);
            case.pixels
                .iter()
                .map(|&v| (i32::from(v) - offset) as i16 as u16)
                .collect()
        } else {
            case.pixels.clone()
        };
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into()))
    };
    obj.put(element);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_values_are_short() {
        assert_eq!(ds(0.143333333), "0.143333");
        assert_eq!(ds(2048.0), "2048");
        assert_eq!(ds(117.5), "117.5");
    }
}
