//! The AI result as a DICOM Structured Report: Comprehensive 3D SR Storage
//! holding a TID 1500 Measurement Report (why not Chest CAD SR:
//! `docs/dicom-conformance.md`).
//!
//! ```text
//! CONTAINER Imaging Measurement Report (TID 1500)
//!   language, observer context: the device (the model), procedure reported
//!   Image Library → the analysed image
//!   Imaging Measurements
//!     one Measurement Group per finding (TID 1501): tracking IDs, finding,
//!       finding site, algorithm (TID 4019), score (NUM, %), one verdict per
//!       operating point with its threshold, the one in use marked
//!     one Measurement Group per region (TID 1410): finding, SCOORD polyline
//!       (image pixel coordinates) SELECTED FROM the analysed image, peak
//!   Qualitative Evaluations: each finding positive/negative at the
//!     operating point in use, and the triage priority with its reasons
//! ```

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::derived::{
    self, code, ds, image_reference, put_empty, put_seq, put_str, ResultError, ResultInput,
    ResultObject, SeriesSpec, SourceRef,
};
use super::uids;
use cxr_findings::{FindingResult, Region};
use cxr_model::FindingId;

/// Series Number of the SR series.
pub const SERIES_NUMBER: &str = "9902";

/// A coded concept: (value, scheme, meaning).
type Code<'a> = (&'a str, &'a str, &'a str);

const IMAGING_MEASUREMENT_REPORT: Code<'static> = ("126000", "DCM", "Imaging Measurement Report");
const LANGUAGE: Code<'static> = ("121049", "DCM", "Language of Content Item and Descendants");
const ENGLISH_US: Code<'static> = ("en-US", "RFC5646", "English (United States)");
const OBSERVER_TYPE: Code<'static> = ("121005", "DCM", "Observer Type");
const DEVICE: Code<'static> = ("121007", "DCM", "Device");
const DEVICE_OBSERVER_UID: Code<'static> = ("121012", "DCM", "Device Observer UID");
const DEVICE_OBSERVER_NAME: Code<'static> = ("121013", "DCM", "Device Observer Name");
const DEVICE_OBSERVER_MANUFACTURER: Code<'static> =
    ("121014", "DCM", "Device Observer Manufacturer");
const DEVICE_OBSERVER_MODEL_NAME: Code<'static> = ("121015", "DCM", "Device Observer Model Name");
const PROCEDURE_REPORTED: Code<'static> = ("121058", "DCM", "Procedure reported");
const PLAIN_CHEST_XRAY: Code<'static> = ("399208008", "SCT", "Plain chest X-ray");
const IMAGE_LIBRARY: Code<'static> = ("111028", "DCM", "Image Library");
const IMAGE_LIBRARY_GROUP: Code<'static> = ("126200", "DCM", "Image Library Group");
const IMAGING_MEASUREMENTS: Code<'static> = ("126010", "DCM", "Imaging Measurements");
const MEASUREMENT_GROUP: Code<'static> = ("125007", "DCM", "Measurement Group");
const TRACKING_IDENTIFIER: Code<'static> = ("112039", "DCM", "Tracking Identifier");
const TRACKING_UID: Code<'static> = ("112040", "DCM", "Tracking Unique Identifier");
const FINDING: Code<'static> = ("121071", "DCM", "Finding");
const FINDING_SITE: Code<'static> = ("363698007", "SCT", "Finding Site");
const LUNG: Code<'static> = ("39607008", "SCT", "Lung");
const ALGORITHM_NAME: Code<'static> = ("111001", "DCM", "Algorithm Name");
const ALGORITHM_VERSION: Code<'static> = ("111003", "DCM", "Algorithm Version");
const ALGORITHM_PARAMETERS: Code<'static> = ("111002", "DCM", "Algorithm Parameters");
const IMAGE_REGION: Code<'static> = ("111030", "DCM", "Image Region");
const OPERATING_POINT_DESCRIPTION: Code<'static> =
    ("111081", "DCM", "CAD Operating Point Description");
const THRESHOLD: Code<'static> = ("122411", "DCM", "Threshold Value");
const QUALITATIVE_EVALUATIONS: Code<'static> = ("C0034375", "UMLS", "Qualitative Evaluations");
const POSITIVE: Code<'static> = ("10828004", "SCT", "Positive");
const NEGATIVE: Code<'static> = ("260385009", "SCT", "Negative");
const PERCENT: Code<'static> = ("%", "UCUM", "percent");
/// Private codes (PS3.16 §8.2: a `99` prefix marks a local scheme).
const TRIAGE_PRIORITY: Code<'static> = ("PRIORITY", "99CXRTRIAGE", "AI triage priority");
const HEATMAP_PEAK: Code<'static> = ("HEATPEAK", "99CXRTRIAGE", "Heatmap peak value");

/// The finding, and the concept its score is reported as: the manifest's
/// code when it gives one; SNOMED CT for the reference findings; otherwise
/// the finding id in the project's private scheme (PS3.16 §8.2).
fn finding_codes(f: &FindingResult) -> (Code<'_>, Code<'static>) {
    const CERTAINTY: Code<'static> = ("111012", "DCM", "Certainty of Finding");
    let concept = match f.finding.as_str() {
        FindingId::MALIGNANT_NODULE => ("111047", "DCM", "Probability of cancer"),
        _ => CERTAINTY,
    };
    let finding = match (&f.code, f.finding.as_str()) {
        (Some(c), _) => (c.value.as_str(), c.scheme.as_str(), c.meaning.as_str()),
        (None, FindingId::TUBERCULOSIS) => ("154283005", "SCT", "Pulmonary tuberculosis"),
        (None, FindingId::MALIGNANT_NODULE) => ("27925004", "SCT", "Nodule"),
        (None, id) => (id, "99CXRTRIAGE", f.display_name.as_str()),
    };
    (finding, concept)
}

fn code_item(c: Code<'_>) -> InMemDicomObject {
    code(c.0, c.1, c.2)
}

/// A content item: relationship, value type and concept name.
fn item(relationship: &str, value_type: &str, concept: Code<'_>) -> InMemDicomObject {
    let mut i = InMemDicomObject::new_empty();
    put_str(&mut i, tags::RELATIONSHIP_TYPE, VR::CS, relationship);
    put_str(&mut i, tags::VALUE_TYPE, VR::CS, value_type);
    put_seq(
        &mut i,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(concept)],
    );
    i
}

fn container(
    relationship: &str,
    concept: Code<'_>,
    children: Vec<InMemDicomObject>,
) -> InMemDicomObject {
    let mut i = item(relationship, "CONTAINER", concept);
    put_str(&mut i, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    put_seq(&mut i, tags::CONTENT_SEQUENCE, children);
    i
}

fn text_item(relationship: &str, concept: Code<'_>, value: &str) -> InMemDicomObject {
    let mut i = item(relationship, "TEXT", concept);
    put_str(&mut i, tags::TEXT_VALUE, VR::UT, &derived::ascii(value));
    i
}

fn code_value(relationship: &str, concept: Code<'_>, value: Code<'_>) -> InMemDicomObject {
    let mut i = item(relationship, "CODE", concept);
    put_seq(&mut i, tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)]);
    i
}

fn uidref(relationship: &str, concept: Code<'_>, uid: &str) -> InMemDicomObject {
    let mut i = item(relationship, "UIDREF", concept);
    put_str(&mut i, tags::UID, VR::UI, uid);
    i
}

fn num(relationship: &str, concept: Code<'_>, value: f64, unit: Code<'_>) -> InMemDicomObject {
    let mut i = item(relationship, "NUM", concept);
    let mut measured = InMemDicomObject::new_empty();
    put_str(&mut measured, tags::NUMERIC_VALUE, VR::DS, &ds(value));
    put_seq(
        &mut measured,
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item(unit)],
    );
    put_seq(&mut i, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
    i
}

fn image_item(relationship: &str, concept: Option<Code>, source: &SourceRef) -> InMemDicomObject {
    let mut i = InMemDicomObject::new_empty();
    put_str(&mut i, tags::RELATIONSHIP_TYPE, VR::CS, relationship);
    put_str(&mut i, tags::VALUE_TYPE, VR::CS, "IMAGE");
    if let Some(c) = concept {
        put_seq(&mut i, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(c)]);
    }
    put_seq(
        &mut i,
        tags::REFERENCED_SOP_SEQUENCE,
        vec![image_reference(source)],
    );
    i
}

/// A closed rectangle around `bbox` (half-open pixel indices), in image
/// coordinates where the top left pixel's top left corner is (0, 0).
fn region_outline(region: &Region, source: &SourceRef) -> InMemDicomObject {
    let [x0, y0, x1, y1] = region.bbox.map(|v| v as f32);
    let mut i = item("CONTAINS", "SCOORD", IMAGE_REGION);
    put_str(&mut i, tags::GRAPHIC_TYPE, VR::CS, "POLYLINE");
    i.put(DataElement::new(
        tags::GRAPHIC_DATA,
        VR::FL,
        PrimitiveValue::F32(vec![x0, y0, x1, y0, x1, y1, x0, y1, x0, y0].into()),
    ));
    put_seq(
        &mut i,
        tags::CONTENT_SEQUENCE,
        vec![image_item("SELECTED FROM", None, source)],
    );
    i
}

fn algorithm_items(input: &ResultInput<'_>) -> Vec<InMemDicomObject> {
    let (names, versions) = derived::algorithm_names(&input.outcome.provenance);
    vec![
        text_item("HAS CONCEPT MOD", ALGORITHM_NAME, &names),
        text_item("HAS CONCEPT MOD", ALGORITHM_VERSION, &versions),
    ]
}

fn verdict(positive: bool) -> Code<'static> {
    if positive {
        POSITIVE
    } else {
        NEGATIVE
    }
}

/// TID 1501 group for one finding.
fn finding_group(
    input: &ResultInput<'_>,
    f: &FindingResult,
    sop_instance: &str,
) -> InMemDicomObject {
    let (finding, score_concept) = finding_codes(f);
    let mut children = vec![
        text_item(
            "HAS OBS CONTEXT",
            TRACKING_IDENTIFIER,
            &format!("AI {}", f.finding),
        ),
        uidref(
            "HAS OBS CONTEXT",
            TRACKING_UID,
            &uids::derived_uid(&["tracking", sop_instance, f.finding.as_str()]),
        ),
        code_value("CONTAINS", FINDING, finding),
        code_value("HAS CONCEPT MOD", FINDING_SITE, LUNG),
    ];
    children.extend(algorithm_items(input));
    children.push(text_item(
        "HAS CONCEPT MOD",
        ALGORITHM_PARAMETERS,
        &format!(
            "operating point in use: {} (threshold {} %)",
            f.operating_point,
            ds(f.threshold * 100.0)
        ),
    ));
    children.push(num(
        "CONTAINS",
        score_concept,
        f64::from(f.score) * 100.0,
        PERCENT,
    ));
    for op in &f.operating_points {
        let mut v = code_value("CONTAINS", finding, verdict(op.positive));
        let in_use = if op.name == f.operating_point {
            " (in use)"
        } else {
            ""
        };
        put_seq(
            &mut v,
            tags::CONTENT_SEQUENCE,
            vec![
                text_item(
                    "HAS CONCEPT MOD",
                    OPERATING_POINT_DESCRIPTION,
                    &format!("{}{in_use}", op.name),
                ),
                num("HAS PROPERTIES", THRESHOLD, op.threshold * 100.0, PERCENT),
            ],
        );
        children.push(v);
    }
    container("CONTAINS", MEASUREMENT_GROUP, children)
}

/// TID 1410 group for one region of a finding's heatmap.
fn region_group(
    input: &ResultInput<'_>,
    f: &FindingResult,
    index: usize,
    region: &Region,
    source: &SourceRef,
    sop_instance: &str,
) -> InMemDicomObject {
    let (finding, _) = finding_codes(f);
    let mut children = vec![
        text_item(
            "HAS OBS CONTEXT",
            TRACKING_IDENTIFIER,
            &format!("AI {} region {}", f.finding, index + 1),
        ),
        uidref(
            "HAS OBS CONTEXT",
            TRACKING_UID,
            &uids::derived_uid(&[
                "tracking",
                sop_instance,
                f.finding.as_str(),
                &index.to_string(),
            ]),
        ),
        code_value("CONTAINS", FINDING, finding),
        code_value("HAS CONCEPT MOD", FINDING_SITE, LUNG),
    ];
    children.extend(algorithm_items(input));
    children.push(region_outline(region, source));
    children.push(num(
        "CONTAINS",
        HEATMAP_PEAK,
        f64::from(region.peak.value) * 100.0,
        PERCENT,
    ));
    container("CONTAINS", MEASUREMENT_GROUP, children)
}

/// The SR for one analysed image.
pub fn build(input: &ResultInput<'_>) -> Result<ResultObject, ResultError> {
    let outcome = input.outcome;
    if !outcome.analyzable() || outcome.findings.is_empty() {
        return Err(ResultError::NothingToReport(
            "the image was not analysed".into(),
        ));
    }
    let (names, versions) = derived::algorithm_names(&outcome.provenance);
    let mut started = derived::start(
        input,
        &SeriesSpec {
            kind: "sr",
            sop_class: uids::COMPREHENSIVE_3D_SR,
            modality: "SR",
            series_number: SERIES_NUMBER,
            series_description: "AI RESULT cxr-triage SR (not for primary diagnosis)",
        },
    )?;
    let source = &started.source;
    let sop_instance = started.sop_instance.clone();

    // Content tree.
    let mut root = vec![
        code_value("HAS CONCEPT MOD", LANGUAGE, ENGLISH_US),
        code_value("HAS OBS CONTEXT", OBSERVER_TYPE, DEVICE),
        uidref(
            "HAS OBS CONTEXT",
            DEVICE_OBSERVER_UID,
            &uids::derived_uid(&["observer", &names, &versions]),
        ),
        text_item("HAS OBS CONTEXT", DEVICE_OBSERVER_NAME, input.station),
        text_item(
            "HAS OBS CONTEXT",
            DEVICE_OBSERVER_MANUFACTURER,
            derived::MANUFACTURER,
        ),
        text_item(
            "HAS OBS CONTEXT",
            DEVICE_OBSERVER_MODEL_NAME,
            &format!("{names} {versions}"),
        ),
        code_value("HAS CONCEPT MOD", PROCEDURE_REPORTED, PLAIN_CHEST_XRAY),
        container(
            "CONTAINS",
            IMAGE_LIBRARY,
            vec![container(
                "CONTAINS",
                IMAGE_LIBRARY_GROUP,
                vec![image_item("CONTAINS", None, source)],
            )],
        ),
    ];
    let mut groups = Vec::new();
    for f in &outcome.findings {
        groups.push(finding_group(input, f, &sop_instance));
    }
    for f in outcome.findings.iter().filter(|f| f.positive) {
        for (i, r) in f.regions.iter().enumerate() {
            groups.push(region_group(input, f, i, r, source, &sop_instance));
        }
    }
    root.push(container("CONTAINS", IMAGING_MEASUREMENTS, groups));
    let mut evaluations: Vec<InMemDicomObject> = outcome
        .findings
        .iter()
        .map(|f| code_value("CONTAINS", finding_codes(f).0, verdict(f.positive)))
        .collect();
    let assessment = &outcome.image_priority;
    let reasons: Vec<&str> = assessment.reasons.iter().map(|r| r.text.as_str()).collect();
    let why = if reasons.is_empty() {
        "no finding positive at its operating point".to_string()
    } else {
        reasons.join("; ")
    };
    evaluations.push(text_item(
        "CONTAINS",
        TRIAGE_PRIORITY,
        &format!("{}: {why}", assessment.priority.as_str()),
    ));
    root.push(container("CONTAINS", QUALITATIVE_EVALUATIONS, evaluations));

    let (date, time, _) = derived::local_date_time(input.now_ms);
    let obj = &mut started.obj;
    // SR Document General.
    put_str(obj, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put_str(obj, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put_str(obj, tags::CONTENT_DATE, VR::DA, &date);
    put_str(obj, tags::CONTENT_TIME, VR::TM, &time);
    put_empty(
        obj,
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        VR::SQ,
    );
    put_empty(obj, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, VR::SQ);
    let mut series_ref = InMemDicomObject::new_empty();
    put_str(
        &mut series_ref,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &source.series,
    );
    put_seq(
        &mut series_ref,
        tags::REFERENCED_SOP_SEQUENCE,
        vec![image_reference(source)],
    );
    let mut study_ref = InMemDicomObject::new_empty();
    put_str(
        &mut study_ref,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &source.study,
    );
    put_seq(
        &mut study_ref,
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![series_ref],
    );
    put_seq(
        obj,
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![study_ref],
    );
    // SR Document Content: the root container.
    put_str(obj, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put_seq(
        obj,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(IMAGING_MEASUREMENT_REPORT)],
    );
    put_str(obj, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    let mut template = InMemDicomObject::new_empty();
    put_str(&mut template, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
    put_str(&mut template, tags::TEMPLATE_IDENTIFIER, VR::CS, "1500");
    put_seq(obj, tags::CONTENT_TEMPLATE_SEQUENCE, vec![template]);
    put_seq(obj, tags::CONTENT_SEQUENCE, root);
    derived::finish("sr", uids::COMPREHENSIVE_3D_SR, started)
}
