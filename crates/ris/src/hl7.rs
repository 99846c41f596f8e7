//! HL7 v2.5.1 ORU^R01: one message per version of a study's AI result,
//! and the MLLP framing and acknowledgement it travels with.
//!
//! The message (UTF-8, `MSH-18 = UNICODE UTF-8`, segments ended by `\r`):
//!
//! ```text
//! MSH|^~\&|CXR-TRIAGE|RADIOLOGY|RIS|HOSPITAL|20261205101500+0000||ORU^R01^ORU_R01|CXR00000000000000042|P|2.5.1|||||VNM|UNICODE UTF-8
//! PID|1||PID12345^^^HOSPITAL^MR||NGUYỄN^THỊ HOA||||F
//! PV1|1|U
//! ORC|RE|ACC123|ACC123
//! OBR|1|ACC123|ACC123|CXR-AI^Chest radiograph AI triage^L|||20261205|||||||||||ACC123||||20261205101500+0000||RAD|P
//! NTE|1|L|AI result — not for primary diagnosis. A radiologist must review it.
//! OBX|1|CWE|CXR-PRIORITY^AI triage priority^L||CRITICAL^Critical^L||||||P
//! OBX|2|ST|CXR-STUDY-UID^Study Instance UID^L||1.2.826.0.1.3680043.8.498.1||||||P
//! OBX|3|CWE|CXR-FINDING^AI finding^L|1|tuberculosis^Tuberculosis^L||||||P
//! OBX|4|NM|CXR-SCORE^AI calibrated score^L|1|0.912|1^^UCUM||A|||P
//! OBX|5|CWE|CXR-VERDICT^AI verdict at the operating point^L|1|POS^Positive^L||||||P
//! OBX|6|ST|CXR-OPERATING-POINT^Operating point^L|1|screening (threshold 0.4200)||||||P
//! OBX|7|ST|CXR-MODEL^AI model id and version^L||cxr-reference 2.0.0||||||P
//! OBX|8|TX|CXR-DISCLAIMER^AI disclaimer^L||AI result — not for primary diagnosis||||||P
//! ```
//!
//! An image the AI could not read adds `OBX|n|TX|CXR-NOT-ANALYZED^Not
//! analysed by AI^L||<reason>`, and the priority is NOT_ANALYZED: it goes
//! to a human. A later version of the same study's result (another image
//! arrived) is a new message with `OBR-25 = C` (corrected) and its own
//! control ID.

use cxr_ingest::Patient;

/// The text every result carries.
pub const DISCLAIMER: &str = "AI result — not for primary diagnosis";

/// Who sends and who receives (MSH-3..6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties {
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-17, ISO 3166 alpha-3 (e.g. `VNM`); empty to leave out.
    pub country: String,
    /// PID-3.4, the authority that assigned the patient ID; empty to leave
    /// out.
    pub patient_id_authority: String,
}

/// One finding of a study: the worst of its images.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyFinding {
    /// Finding id (e.g. `tuberculosis`).
    pub id: String,
    /// Its name for people.
    pub display_name: String,
    /// Highest calibrated score among the study's analysed images.
    pub score: f32,
    /// Positive at its operating point on any image.
    pub positive: bool,
    /// The operating point.
    pub operating_point: String,
    /// Its threshold.
    pub threshold: f64,
}

/// One version of a study's AI result.
#[derive(Debug, Clone)]
pub struct StudyResult {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Accession Number (the RIS order).
    pub accession_number: String,
    /// Study Date, `YYYYMMDD` (may be empty).
    pub study_date: String,
    /// Patient attributes from the latest image's header.
    pub patient: Patient,
    /// The study's priority (`CRITICAL`, `URGENT`, `NOT_ANALYZED`,
    /// `ROUTINE`).
    pub priority: String,
    /// Findings, in model order.
    pub findings: Vec<StudyFinding>,
    /// Why images were not read, one line each.
    pub not_analyzed: Vec<String>,
    /// Models that read it: (id, version).
    pub models: Vec<(String, String)>,
    /// The worklist change this version follows: unique and increasing.
    pub version: u64,
    /// Whether an earlier version of this study was sent.
    pub update: bool,
    /// When the result was made, ms since the epoch.
    pub at_ms: i64,
    /// The RIS's order of this accession number, when it sent one
    /// ([`crate::orders`]).
    pub order: Option<crate::orders::Order>,
}

impl StudyResult {
    /// MSH-10: unique and stable per result version (20 characters, the
    /// limit of ST in v2.5.1).
    pub fn control_id(&self) -> String {
        format!("CXR{:017}", self.version % 100_000_000_000_000_000)
    }
}

/// Escapes text for a field component (HL7 v2 §2.7).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// An HL7 timestamp (`YYYYMMDDHHMMSS+0000`) of ms since the epoch.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%d%H%M%S+0000")
        .to_string()
}

/// A DICOM PN (`Family^Given^Middle^Prefix^Suffix`, perhaps with
/// ideographic and phonetic groups after `=`) as an HL7 XPN
/// (`Family^Given^Middle^Suffix^Prefix`): the first (alphabetic) group,
/// which in ISO_IR 192 is the UTF-8 name.
pub fn xpn(pn: &str) -> String {
    let group = pn.split('=').next().unwrap_or("");
    let c: Vec<&str> = group.split('^').map(str::trim).collect();
    let get = |i: usize| escape(c.get(i).copied().unwrap_or(""));
    let parts = [get(0), get(1), get(2), get(4), get(3)];
    let keep = parts
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    parts[..keep].join("^")
}

fn sex(s: Option<&str>) -> &'static str {
    match s.map(str::trim) {
        Some("M") => "M",
        Some("F") => "F",
        Some("O") => "O",
        _ => "U",
    }
}

fn title(priority: &str) -> &'static str {
    match priority {
        "CRITICAL" => "Critical",
        "URGENT" => "Urgent",
        "ROUTINE" => "Routine",
        _ => "Not analysed by AI",
    }
}

/// A segment from (field number, value) pairs in increasing order; empty
/// fields are left empty, trailing ones out.
fn segment(id: &str, values: &[(usize, &str)]) -> String {
    let last = values
        .iter()
        .rev()
        .find(|(_, v)| !v.is_empty())
        .map_or(0, |(n, _)| *n);
    let mut out = id.to_string();
    for n in 1..=last {
        out.push('|');
        if let Some((_, v)) = values.iter().find(|(i, _)| *i == n) {
            out.push_str(v);
        }
    }
    out
}

/// The ORU^R01 of one study result version, segments ended by `\r`.
pub fn oru_r01(r: &StudyResult, parties: &Parties) -> String {
    let now = timestamp(r.at_ms);
    let mut seg: Vec<String> = Vec::new();
    seg.push(format!(
        "MSH|^~\\&|{}|{}|{}|{}|{now}||ORU^R01^ORU_R01|{}|P|2.5.1|||||{}|UNICODE UTF-8",
        escape(&parties.sending_application),
        escape(&parties.sending_facility),
        escape(&parties.receiving_application),
        escape(&parties.receiving_facility),
        r.control_id(),
        escape(&parties.country),
    ));
    let pid = escape(r.patient.id.as_deref().unwrap_or("").trim());
    let order = r.order.as_ref();
    // The RIS's own patient identifier when it sent the order (HL7 text as
    // it came), else the DICOM Patient ID.
    let pid3 = match order.filter(|o| !o.patient_id.is_empty()) {
        Some(o) => o.patient_id.clone(),
        None if parties.patient_id_authority.is_empty() => format!("{pid}^^^^MR"),
        None => format!("{pid}^^^{}^MR", escape(&parties.patient_id_authority)),
    };
    let name = xpn(r.patient.name.as_deref().unwrap_or(""));
    // PID-5 is required: an unnamed patient is sent as unknown.
    let name = if name.is_empty() {
        "UNKNOWN".to_string()
    } else {
        name
    };
    seg.push(format!(
        "PID|1||{pid3}||{name}||||{}",
        sex(r.patient.sex.as_deref())
    ));
    match order {
        Some(o) if !o.patient_class.is_empty() => {
            seg.push(format!("PV1|1|{}|{}", o.patient_class, o.location))
        }
        _ => seg.push("PV1|1|U".into()),
    }
    let acc = escape(&r.accession_number);
    let nonempty = |v: Option<&String>| v.filter(|v| !v.is_empty()).cloned();
    let placer = nonempty(order.map(|o| &o.placer_order_number)).unwrap_or_else(|| acc.clone());
    let filler = nonempty(order.map(|o| &o.filler_order_number)).unwrap_or_else(|| acc.clone());
    let provider = nonempty(order.map(|o| &o.ordering_provider)).unwrap_or_default();
    seg.push(segment(
        "ORC",
        &[(1, "RE"), (2, &placer), (3, &filler), (12, &provider)],
    ));
    let observed = if r.study_date.len() == 8 && r.study_date.bytes().all(|b| b.is_ascii_digit()) {
        r.study_date.clone()
    } else {
        String::new()
    };
    let status = if r.update { "C" } else { "P" };
    seg.push(segment(
        "OBR",
        &[
            (1, "1"),
            (2, &placer),
            (3, &filler),
            (4, "CXR-AI^Chest radiograph AI triage^L"),
            (7, &observed),
            (16, &provider),
            (18, &acc),
            (22, &now),
            (24, "RAD"),
            (25, status),
        ],
    ));
    seg.push(format!(
        "NTE|1|L|{DISCLAIMER}. A radiologist must review it."
    ));
    let mut n = 0;
    let mut obx = |body: String| {
        n += 1;
        seg.push(format!("OBX|{n}|{body}"));
    };
    obx(format!(
        "CWE|CXR-PRIORITY^AI triage priority^L||{}^{}^L||||||{status}",
        escape(&r.priority),
        title(&r.priority)
    ));
    obx(format!(
        "ST|CXR-STUDY-UID^Study Instance UID^L||{}||||||{status}",
        escape(&r.study_instance_uid)
    ));
    for (i, f) in r.findings.iter().enumerate() {
        let sub = i + 1;
        let name = if f.display_name.is_empty() {
            &f.id
        } else {
            &f.display_name
        };
        obx(format!(
            "CWE|CXR-FINDING^AI finding^L|{sub}|{}^{}^L||||||{status}",
            escape(&f.id),
            escape(name)
        ));
        obx(format!(
            "NM|CXR-SCORE^AI calibrated score^L|{sub}|{:.3}|1^^UCUM||{}|||{status}",
            f.score,
            if f.positive { "A" } else { "N" }
        ));
        let (code, text) = if f.positive {
            ("POS", "Positive")
        } else {
            ("NEG", "Negative")
        };
        obx(format!(
            "CWE|CXR-VERDICT^AI verdict at the operating point^L|{sub}|{code}^{text}^L||||||{status}"
        ));
        obx(format!(
            "ST|CXR-OPERATING-POINT^Operating point^L|{sub}|{} (threshold {:.4})||||||{status}",
            escape(&f.operating_point),
            f.threshold
        ));
    }
    for reason in &r.not_analyzed {
        obx(format!(
            "TX|CXR-NOT-ANALYZED^Not analysed by AI^L||{}||||||{status}",
            escape(reason)
        ));
    }
    for (id, version) in &r.models {
        obx(format!(
            "ST|CXR-MODEL^AI model id and version^L||{} {}||||||{status}",
            escape(id),
            escape(version)
        ));
    }
    obx(format!(
        "TX|CXR-DISCLAIMER^AI disclaimer^L||{DISCLAIMER}||||||{status}"
    ));
    let mut out = seg.join("\r");
    out.push('\r');
    out
}

/// MLLP start block.
pub const START: u8 = 0x0b;
/// MLLP end block (followed by a carriage return).
pub const END: u8 = 0x1c;

/// A message framed for MLLP: `<VT>message<FS><CR>`.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&[END, b'\r']);
    out
}

/// An acknowledgement as read (MSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// MSA-1: `AA`/`CA` accepted, `AE`/`CE` error, `AR`/`CR` rejected.
    pub code: String,
    /// MSA-2: the control ID acknowledged.
    pub control_id: String,
    /// MSA-3 and ERR's diagnostic text, for the outbox's record.
    pub text: String,
}

/// What an acknowledgement means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckVerdict {
    /// Accepted: delivered.
    Accepted,
    /// Application error: try again later.
    Error,
    /// Rejected: sending it again will not help; kept as failed.
    Rejected,
}

impl Ack {
    /// Reads the MSA (and ERR) of an ACK; `None` when there is no MSA.
    pub fn parse(ack: &str) -> Option<Ack> {
        let mut out: Option<Ack> = None;
        let mut err = String::new();
        for segment in ack.split(['\r', '\n']) {
            let fields: Vec<&str> = segment.split('|').collect();
            match fields.first().copied() {
                Some("MSA") => {
                    out = Some(Ack {
                        code: fields.get(1).copied().unwrap_or("").trim().to_string(),
                        control_id: fields.get(2).copied().unwrap_or("").trim().to_string(),
                        text: fields.get(3).copied().unwrap_or("").to_string(),
                    })
                }
                Some("ERR") => {
                    let text = fields
                        .iter()
                        .skip(1)
                        .filter(|f| !f.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if !err.is_empty() {
                        err.push_str("; ");
                    }
                    err.push_str(&text);
                }
                _ => {}
            }
        }
        let mut ack = out?;
        if !err.is_empty() {
            if !ack.text.is_empty() {
                ack.text.push_str("; ");
            }
            ack.text.push_str(&err);
        }
        ack.text = ack.text.chars().take(500).collect();
        Some(ack)
    }

    /// What it means.
    pub fn verdict(&self) -> AckVerdict {
        match self.code.as_str() {
            "AA" | "CA" => AckVerdict::Accepted,
            "AR" | "CR" => AckVerdict::Rejected,
            _ => AckVerdict::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> StudyResult {
        StudyResult {
            study_instance_uid: "1.2.3".into(),
            accession_number: "ACC|1".into(),
            study_date: "20261205".into(),
            patient: Patient {
                id: Some("PID-7".into()),
                name: Some("NGUYỄN^THỊ HOA=阮^氏花".into()),
                sex: Some("F".into()),
                age: None,
            },
            priority: "CRITICAL".into(),
            findings: vec![StudyFinding {
                id: "tuberculosis".into(),
                display_name: "Tuberculosis".into(),
                score: 0.9123,
                positive: true,
                operating_point: "screening".into(),
                threshold: 0.42,
            }],
            not_analyzed: vec!["lateral view: set aside".into()],
            models: vec![("cxr-reference".into(), "2.0.0".into())],
            version: 42,
            update: false,
            at_ms: 1_796_515_166_304,
            order: None,
        }
    }

    #[test]
    fn the_message_carries_the_patient_the_order_and_each_finding() {
        let parties = Parties {
            sending_application: "CXR-TRIAGE".into(),
            sending_facility: "RADIOLOGY".into(),
            receiving_application: "RIS".into(),
            receiving_facility: "HOSPITAL".into(),
            country: "VNM".into(),
            patient_id_authority: "BV-BN".into(),
        };
        let m = oru_r01(&result(), &parties);
        let seg: Vec<&str> = m.split('\r').filter(|s| !s.is_empty()).collect();
        assert!(seg[0].starts_with("MSH|^~\\&|CXR-TRIAGE|RADIOLOGY|RIS|HOSPITAL|20261205"));
        assert!(
            seg[0].ends_with("|ORU^R01^ORU_R01|CXR00000000000000042|P|2.5.1|||||VNM|UNICODE UTF-8")
        );
        assert_eq!(seg[1], "PID|1||PID-7^^^BV-BN^MR||NGUYỄN^THỊ HOA||||F");
        assert_eq!(seg[3], "ORC|RE|ACC\\F\\1|ACC\\F\\1");
        assert!(seg[4].starts_with("OBR|1|ACC\\F\\1|ACC\\F\\1|CXR-AI^"));
        let obr: Vec<&str> = seg[4].split('|').collect();
        assert_eq!((obr[7], obr[24], obr[25]), ("20261205", "RAD", "P"));
        assert_eq!(obr[18], "ACC\\F\\1", "OBR-18: the accession number");
        assert!(obr[22].starts_with("2026"), "OBR-22: {}", seg[4]);
        assert!(m.contains("OBX|1|CWE|CXR-PRIORITY^AI triage priority^L||CRITICAL^Critical^L"));
        assert!(m.contains("|NM|CXR-SCORE^AI calibrated score^L|1|0.912|1^^UCUM||A|||P"));
        assert!(m.contains("|CWE|CXR-VERDICT^AI verdict at the operating point^L|1|POS^Positive^L"));
        assert!(m.contains("|TX|CXR-NOT-ANALYZED^Not analysed by AI^L||lateral view: set aside"));
        assert!(m.contains("|ST|CXR-MODEL^AI model id and version^L||cxr-reference 2.0.0"));
        assert!(m.contains(DISCLAIMER));
        assert!(m.ends_with('\r') && !m.contains('\n'));
        // Updates are corrections, with their own control ID.
        let mut later = result();
        later.version = 57;
        later.update = true;
        let m2 = oru_r01(&later, &parties);
        assert!(m2.contains("|CXR00000000000000057|"));
        assert!(m2.split('\r').nth(4).unwrap().ends_with("||RAD|C"));
    }

    #[test]
    fn the_ris_order_supplies_its_numbers_provider_visit_and_patient_id() {
        let parties = Parties {
            sending_application: "CXR-TRIAGE".into(),
            sending_facility: "RADIOLOGY".into(),
            receiving_application: "RIS".into(),
            receiving_facility: "HOSPITAL".into(),
            country: String::new(),
            patient_id_authority: String::new(),
        };
        let mut r = result();
        r.order = Some(crate::orders::Order {
            accession_number: "ACC|1".into(),
            placer_order_number: "ORD-77^RIS".into(),
            filler_order_number: "FIL-9^PACS".into(),
            ordering_provider: "1234^TRẦN^MINH".into(),
            patient_id: "BN-1^^^BV^MR".into(),
            patient_class: "E".into(),
            location: "CC^101".into(),
            cancelled: false,
            received_ms: 1,
        });
        let m = oru_r01(&r, &parties);
        let seg: Vec<&str> = m.split('\r').collect();
        assert_eq!(seg[1], "PID|1||BN-1^^^BV^MR||NGUYỄN^THỊ HOA||||F");
        assert_eq!(seg[2], "PV1|1|E|CC^101");
        assert_eq!(
            seg[3],
            "ORC|RE|ORD-77^RIS|FIL-9^PACS|||||||||1234^TRẦN^MINH"
        );
        let obr: Vec<&str> = seg[4].split('|').collect();
        assert_eq!(
            (obr[2], obr[3], obr[16], obr[18]),
            ("ORD-77^RIS", "FIL-9^PACS", "1234^TRẦN^MINH", "ACC\\F\\1")
        );
    }

    #[test]
    fn delimiters_in_values_are_escaped_and_names_mapped() {
        assert_eq!(
            escape("a|b^c&d~e\\f\rg"),
            "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f g"
        );
        assert_eq!(xpn("Doe^John^Q^Dr^Jr"), "Doe^John^Q^Jr^Dr");
        assert_eq!(xpn("Doe^John"), "Doe^John");
        assert_eq!(xpn(""), "");
    }

    #[test]
    fn acknowledgements_are_read_with_their_errors() {
        let ack = Ack::parse(
            "MSH|^~\\&|RIS|H|CXR|R|20261205||ACK^R01^ACK|9|P|2.5.1\rMSA|AE|CXR1|busy\rERR|||207^Application internal error^HL70357|E\r",
        )
        .unwrap();
        assert_eq!(ack.code, "AE");
        assert_eq!(ack.control_id, "CXR1");
        assert!(ack.text.contains("busy") && ack.text.contains("207"));
        assert_eq!(ack.verdict(), AckVerdict::Error);
        assert_eq!(
            Ack::parse("MSA|AA|X\r").unwrap().verdict(),
            AckVerdict::Accepted
        );
        assert_eq!(
            Ack::parse("MSA|AR|X\r").unwrap().verdict(),
            AckVerdict::Rejected
        );
        assert!(Ack::parse("MSH|^~\\&\r").is_none());
        assert_eq!(frame("A\r"), vec![0x0b, b'A', b'\r', 0x1c, b'\r']);
    }
}
