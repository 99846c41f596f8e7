//! FHIR R4: one transaction Bundle per version of a study's AI result.
//!
//! - `Patient`, created only when the server has none with the DICOM
//!   Patient ID (`ifNoneExist` on `identifier`), named from Patient's Name
//!   (UTF-8 from ISO_IR 192 survives);
//! - `Device`, the model (`ifNoneExist` on its id and version);
//! - one `Observation` per finding (status preliminary, category imaging,
//!   `valueQuantity` the calibrated score, `interpretation` POS/NEG at the
//!   operating point, `device`, `derivedFrom` the study), and
//! - a `DiagnosticReport` (status preliminary, categories radiology and
//!   imaging, code
//!   [`REPORT_CODE`], `conclusion` with the priority, the suspected
//!   findings and the disclaimer, `imagingStudy` by Study Instance UID,
//!   `basedOn` the order by accession number).
//!
//! Observations and the report are PUT under ids derived from the Study
//! Instance UID, so that a later version of the result (another image of
//! the study) replaces them instead of adding a second report.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::hl7::{StudyResult, DISCLAIMER};

/// The report's code: LOINC 36554-4, "XR Chest Single view".
pub const REPORT_CODE: (&str, &str) = ("36554-4", "XR Chest Single view");

/// Who the resources are filed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systems {
    /// The server's base URL: the full URL of a resource PUT under a
    /// known id is `{base}/{Type}/{id}`.
    pub base_url: String,
    /// The identifier system of the DICOM Patient IDs (e.g. the hospital's
    /// `urn:oid:…`).
    pub patient_id_system: String,
    /// The identifier system of accession numbers.
    pub accession_system: String,
}

/// A FHIR id (`[A-Za-z0-9.-]{1,64}`) for `kind` of the study `uid`.
pub fn resource_id(kind: &str, uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("cxr-{kind}-{hex}")
}

fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// DICOM PN → FHIR HumanName (the alphabetic group).
fn human_name(pn: &str) -> Value {
    let group = pn.split('=').next().unwrap_or("");
    let c: Vec<&str> = group.split('^').map(str::trim).collect();
    let family = c.first().copied().unwrap_or("");
    let given: Vec<&str> = c
        .iter()
        .skip(1)
        .take(2)
        .flat_map(|g| g.split_whitespace())
        .collect();
    let text = std::iter::once(family)
        .chain(given.iter().copied())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut name = json!({ "text": text });
    if !family.is_empty() {
        name["family"] = json!(family);
    }
    if !given.is_empty() {
        name["given"] = json!(given);
    }
    name
}

fn gender(sex: Option<&str>) -> &'static str {
    match sex.map(str::trim) {
        Some("M") => "male",
        Some("F") => "female",
        Some("O") => "other",
        _ => "unknown",
    }
}

/// The transaction Bundle of one study result version.
pub fn bundle(r: &StudyResult, systems: &Systems) -> Value {
    let uid = &r.study_instance_uid;
    let issued = instant(r.at_ms);
    let study_ref = json!({
        "type": "ImagingStudy",
        "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{uid}") }
    });
    let mut entries = Vec::new();
    let patient_id = r.patient.id.as_deref().unwrap_or("").trim().to_string();
    let patient_url = "urn:uuid:".to_string() + &uuid_of(&format!("patient|{uid}|{}", r.version));
    let subject = if patient_id.is_empty() {
        None
    } else {
        let mut patient = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": systems.patient_id_system, "value": patient_id }],
            "gender": gender(r.patient.sex.as_deref()),
        });
        if let Some(pn) = r.patient.name.as_deref().filter(|n| !n.trim().is_empty()) {
            patient["name"] = json!([human_name(pn)]);
        }
        entries.push(json!({
            "fullUrl": patient_url,
            "resource": patient,
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": format!("identifier={}|{}", systems.patient_id_system, patient_id),
            }
        }));
        Some(json!({ "reference": patient_url }))
    };
    let mut device_refs = Vec::new();
    for (id, version) in &r.models {
        let url = "urn:uuid:".to_string() + &uuid_of(&format!("device|{id}|{version}"));
        entries.push(json!({
            "fullUrl": url,
            "resource": {
                "resourceType": "Device",
                "status": "active",
                "manufacturer": "cxr-triage",
                "identifier": [{ "system": "urn:cxr-triage:model", "value": format!("{id}-{version}") }],
                "deviceName": [{ "name": id, "type": "model-name" }],
                "version": [{ "value": version }],
            },
            "request": {
                "method": "POST",
                "url": "Device",
                "ifNoneExist": format!("identifier=urn:cxr-triage:model|{id}-{version}"),
            }
        }));
        device_refs.push(json!({ "reference": url }));
    }
    let mut results = Vec::new();
    for f in &r.findings {
        let id = resource_id(&format!("obs-{}", sanitize(&f.id)), uid);
        let name = if f.display_name.is_empty() {
            &f.id
        } else {
            &f.display_name
        };
        let (code, display) = if f.positive {
            ("POS", "Positive")
        } else {
            ("NEG", "Negative")
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id,
            "identifier": [{ "system": "urn:cxr-triage:finding", "value": format!("{uid}-{}", f.id) }],
            "status": "preliminary",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "imaging", "display": "Imaging" }] }],
            "code": {
                "coding": [{ "system": "urn:cxr-triage:finding", "code": f.id, "display": name }],
                "text": format!("{name} (AI score)"),
            },
            "issued": issued,
            "valueQuantity": {
                "value": (f64::from(f.score) * 1000.0).round() / 1000.0,
                "unit": "score", "system": "http://unitsofmeasure.org", "code": "1" },
            "interpretation": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                "code": code, "display": display }] }],
            "note": [{ "text": format!(
                "{DISCLAIMER}. Operating point {} (threshold {:.4}).",
                f.operating_point, f.threshold) }],
            "derivedFrom": [study_ref.clone()],
        });
        if let Some(s) = &subject {
            obs["subject"] = s.clone();
        }
        if let Some(d) = device_refs.first() {
            obs["device"] = d.clone();
        }
        entries.push(json!({
            "fullUrl": format!("{}/Observation/{id}", systems.base_url),
            "resource": obs,
            "request": { "method": "PUT", "url": format!("Observation/{id}") }
        }));
        results.push(json!({ "reference": format!("Observation/{id}") }));
    }
    let report_id = resource_id("report", uid);
    let positives: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.positive)
        .map(|f| format!("{} ({:.2})", f.display_name, f.score))
        .collect();
    let mut conclusion = format!("AI triage priority {}.", r.priority);
    if !positives.is_empty() {
        conclusion.push_str(&format!(" Suspected: {}.", positives.join(", ")));
    }
    for reason in &r.not_analyzed {
        conclusion.push_str(&format!(" Not analysed by AI: {reason}."));
    }
    conclusion.push_str(&format!(" {DISCLAIMER}."));
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "identifier": [{ "system": "urn:cxr-triage:report", "value": uid }],
        "status": "preliminary",
        // Radiology (the v2 diagnostic service section, and its LOINC
        // equivalent, as US Core has it), and imaging.
        "category": [
            { "coding": [
                { "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                  "code": "RAD", "display": "Radiology" },
                { "system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology" }] },
            { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "imaging", "display": "Imaging" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": REPORT_CODE.0, "display": REPORT_CODE.1 }],
                  "text": "Chest radiograph AI triage" },
        "issued": issued,
        "imagingStudy": [study_ref],
        "conclusion": conclusion,
    });
    if !results.is_empty() {
        report["result"] = json!(results);
    }
    if let Some(s) = &subject {
        report["subject"] = s.clone();
    }
    if !r.accession_number.is_empty() {
        report["basedOn"] = json!([{
            "type": "ServiceRequest",
            "identifier": {
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
                "system": systems.accession_system,
                "value": r.accession_number,
            }
        }]);
    }
    entries.push(json!({
        "fullUrl": format!("{}/DiagnosticReport/{report_id}", systems.base_url),
        "resource": report,
        "request": { "method": "PUT", "url": format!("DiagnosticReport/{report_id}") }
    }));
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect()
}

/// A UUID (version 4 layout) derived from `seed`, stable across retries.
fn uuid_of(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::StudyFinding;
    use cxr_ingest::Patient;

    #[test]
    fn the_bundle_has_the_patient_each_finding_and_the_report() {
        let r = StudyResult {
            study_instance_uid: "1.2.3".into(),
            accession_number: "ACC1".into(),
            study_date: "20261205".into(),
            patient: Patient {
                id: Some("PID-7".into()),
                name: Some("NGUYỄN^THỊ HOA".into()),
                sex: Some("F".into()),
                age: None,
            },
            priority: "URGENT".into(),
            findings: vec![StudyFinding {
                id: "malignant_nodule".into(),
                display_name: "Malignant nodule".into(),
                score: 0.61234,
                positive: true,
                operating_point: "screening".into(),
                threshold: 0.3,
            }],
            not_analyzed: vec![],
            models: vec![("cxr-reference".into(), "2.0.0".into())],
            version: 9,
            update: false,
            at_ms: 1_796_515_166_304,
            order: None,
        };
        let systems = Systems {
            base_url: "https://ehr.example/fhir".into(),
            patient_id_system: "urn:oid:1.2.3.4".into(),
            accession_system: "urn:oid:1.2.3.5".into(),
        };
        let b = bundle(&r, &systems);
        let e = b["entry"].as_array().unwrap();
        let types: Vec<&str> = e
            .iter()
            .map(|x| x["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["Patient", "Device", "Observation", "DiagnosticReport"]
        );
        assert_eq!(e[0]["resource"]["name"][0]["family"], "NGUYỄN");
        assert_eq!(e[0]["resource"]["name"][0]["given"], json!(["THỊ", "HOA"]));
        assert_eq!(
            e[0]["request"]["ifNoneExist"],
            "identifier=urn:oid:1.2.3.4|PID-7"
        );
        assert!(e[3]["fullUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://ehr.example/fhir/DiagnosticReport/cxr-report-"));
        let obs = &e[2]["resource"];
        assert_eq!(obs["valueQuantity"]["value"], 0.612);
        assert_eq!(obs["interpretation"][0]["coding"][0]["code"], "POS");
        assert_eq!(obs["subject"]["reference"], e[0]["fullUrl"]);
        let report = &e[3]["resource"];
        assert_eq!(report["status"], "preliminary");
        assert_eq!(report["category"][0]["coding"][0]["code"], "RAD");
        assert_eq!(report["category"][1]["coding"][0]["code"], "imaging");
        assert_eq!(
            report["result"][0]["reference"],
            format!("Observation/{}", obs["id"].as_str().unwrap())
        );
        assert!(report["conclusion"].as_str().unwrap().contains(DISCLAIMER));
        // A later version replaces the same resources.
        let mut later = r.clone();
        later.version = 10;
        let b2 = bundle(&later, &systems);
        assert_eq!(b2["entry"][3]["request"]["url"], e[3]["request"]["url"]);
        let id = resource_id("report", &"9".repeat(64));
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
