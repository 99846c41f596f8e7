//! Orders from the RIS (HL7 v2 ORM^O01 or OMI^O23 over MLLP), kept by
//! accession number so that a study's result goes back under the RIS's
//! own order numbers, ordering provider and visit.
//!
//! What is read from each ORC/OBR group of an order message:
//! - accession number: `IPC-1` (OMI^O23), else `OBR-18` (IHE Scheduled
//!   Workflow's ORM^O01), else the filler order number (`ORC-3`/`OBR-3`);
//! - placer and filler order numbers (`ORC-2`/`OBR-2`, `ORC-3`/`OBR-3`);
//! - ordering provider (`ORC-12`, else `OBR-16`);
//! - patient identifier (`PID-3`, first repetition), class and location
//!   (`PV1-2`, `PV1-3`);
//! - order control (`ORC-1`): `CA`, `DC`, `OC`, `CR`, `OD` cancel the order,
//!   anything else creates or replaces it.
//!
//! The values are kept as HL7 field text (components, escapes) and put
//! back as they came, so only messages with the standard encoding
//! characters (`^~\&`) are taken. Each message is acknowledged (original
//! mode): `AA` when stored, `AR` for another message type or encoding,
//! `AE` when an order has no accession number or could not be stored.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::hl7::{escape, timestamp};

/// One order of the RIS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Order {
    /// The accession number (the key).
    pub accession_number: String,
    /// Placer order number, as the RIS sent it (EI, HL7 text).
    pub placer_order_number: String,
    /// Filler order number (EI, HL7 text).
    pub filler_order_number: String,
    /// Ordering provider (XCN, HL7 text).
    pub ordering_provider: String,
    /// Patient identifier (CX, HL7 text, first repetition of PID-3).
    pub patient_id: String,
    /// Patient class (PV1-2, e.g. `O`, `I`, `E`).
    pub patient_class: String,
    /// Assigned location (PL, HL7 text).
    pub location: String,
    /// Cancelled by the RIS.
    pub cancelled: bool,
    /// When it was received, ms since the epoch.
    pub received_ms: i64,
}

/// Why an order message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an order message this listener takes, or not its encoding
    /// (`AR`).
    Unsupported(String),
    /// An order message that cannot be used (`AE`).
    Invalid(String),
}

/// The fields of a segment: `fields[n]` is SEG-n (for MSH, MSH-n is
/// `fields[n - 1]`, MSH-1 being the separator itself).
fn fields(segment: &str) -> Vec<&str> {
    segment.split('|').collect()
}

fn field<'a>(f: &[&'a str], n: usize) -> &'a str {
    f.get(n).copied().unwrap_or("").trim()
}

/// The first repetition of a field.
fn first(value: &str) -> &str {
    value.split('~').next().unwrap_or("")
}

/// The first component.
fn component(value: &str) -> &str {
    first(value).split('^').next().unwrap_or("")
}

/// Longest field text kept (anything longer is cut: these are IDs and
/// names, not documents).
const MAX_FIELD: usize = 250;

fn keep(value: &str) -> String {
    let v = first(value);
    let mut end = v.len().min(MAX_FIELD);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

/// The message's header facts: (MSH fields, message code, trigger).
fn header(message: &str) -> Result<Vec<&str>, Refusal> {
    let msh = message.split(['\r', '\n']).next().unwrap_or("");
    if !msh.starts_with("MSH") || msh.len() < 8 {
        return Err(Refusal::Invalid(
            "the message does not start with MSH".into(),
        ));
    }
    if &msh[3..8] != "|^~\\&" {
        return Err(Refusal::Unsupported(
            "only the standard encoding characters |^~\\& are taken".into(),
        ));
    }
    Ok(fields(msh))
}

/// Reads the orders of an ORM^O01 or OMI^O23 message.
pub fn parse(message: &str, now_ms: i64) -> Result<Vec<Order>, Refusal> {
    let msh = header(message)?;
    // MSH-9 is fields[8].
    let kind = field(&msh, 8);
    let mut parts = kind.split('^');
    let (code, trigger) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!((code, trigger), ("ORM", "O01") | ("OMI", "O23")) {
        return Err(Refusal::Unsupported(format!(
            "message type {kind}: only ORM^O01 and OMI^O23 orders are taken"
        )));
    }
    let mut patient_id = String::new();
    let mut patient_class = String::new();
    let mut location = String::new();
    let mut orders: Vec<Order> = Vec::new();
    // The ORC of the group being read, and whether its OBR came yet.
    let mut orc: Option<Vec<&str>> = None;
    for segment in message.split(['\r', '\n']).skip(1) {
        let f = fields(segment);
        match f.first().copied() {
            Some("PID") => patient_id = keep(field(&f, 3)),
            Some("PV1") => {
                patient_class = keep(field(&f, 2));
                location = keep(field(&f, 3));
            }
            Some("ORC") => orc = Some(f),
            Some("OBR") => {
                let o = orc.clone().unwrap_or_default();
                let pick = |a: &str, b: &str| keep(if a.is_empty() { b } else { a });
                let filler = pick(field(&o, 3), field(&f, 3));
                let accession = if !field(&f, 18).is_empty() {
                    component(field(&f, 18)).to_string()
                } else {
                    component(&filler).to_string()
                };
                let control = field(&o, 1).to_ascii_uppercase();
                orders.push(Order {
                    accession_number: accession,
                    placer_order_number: pick(field(&o, 2), field(&f, 2)),
                    filler_order_number: filler,
                    ordering_provider: pick(field(&o, 12), field(&f, 16)),
                    patient_id: patient_id.clone(),
                    patient_class: patient_class.clone(),
                    location: location.clone(),
                    cancelled: matches!(control.as_str(), "CA" | "DC" | "OC" | "CR" | "OD"),
                    received_ms: now_ms,
                });
            }
            // OMI^O23: the Imaging Procedure Control segment names the
            // accession number of the OBR before it.
            Some("IPC") => {
                let acc = component(field(&f, 1));
                if let (false, Some(last)) = (acc.is_empty(), orders.last_mut()) {
                    last.accession_number = acc.to_string();
                }
            }
            _ => {}
        }
    }
    if orders.is_empty() {
        return Err(Refusal::Invalid("no ORC/OBR order in the message".into()));
    }
    if let Some(o) = orders.iter().find(|o| o.accession_number.is_empty()) {
        return Err(Refusal::Invalid(format!(
            "order {} has no accession number (IPC-1, OBR-18 or the filler order number)",
            component(&o.placer_order_number)
        )));
    }
    Ok(orders)
}

/// The acknowledgement of an order message (original mode).
pub fn ack(
    message: &str,
    refusal: Option<&Refusal>,
    sending_application: &str,
    sending_facility: &str,
    now_ms: i64,
) -> String {
    let msh: Vec<&str> = message
        .split(['\r', '\n'])
        .next()
        .map(fields)
        .unwrap_or_default();
    let get = |n: usize| escape(field(&msh, n - 1));
    let trigger = field(&msh, 8)
        .split('^')
        .nth(1)
        .unwrap_or("O01")
        .to_string();
    let version = if field(&msh, 11).is_empty() {
        "2.5.1".to_string()
    } else {
        get(12)
    };
    let (code, text, err) = match refusal {
        None => ("AA", String::new(), None),
        Some(Refusal::Unsupported(t)) => ("AR", t.clone(), Some("200^Unsupported message type")),
        Some(Refusal::Invalid(t)) => ("AE", t.clone(), Some("207^Application internal error")),
    };
    let control = get(10);
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^{}^ACK|ACK{}|P|{version}|||||||UNICODE UTF-8\rMSA|{code}|{control}",
        escape(sending_application),
        escape(sending_facility),
        get(3),
        get(4),
        timestamp(now_ms),
        escape(&trigger),
        now_ms,
    );
    if let Some(err) = err {
        let text = escape(&text);
        out.push_str(&format!(
            "|{}\rERR|||{err}^HL70357|E||||{text}",
            text.chars().take(80).collect::<String>()
        ));
    }
    out.push('\r');
    out
}

/// Orders by accession number (`orders.sqlite`; WAL, `synchronous=FULL`).
pub struct OrderStore {
    db: Mutex<Connection>,
}

/// Order store errors.
#[derive(Debug, thiserror::Error)]
#[error("order store: {0}")]
pub struct OrderStoreError(#[from] rusqlite::Error);

impl OrderStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<OrderStore, OrderStoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS orders (
                accession_number TEXT PRIMARY KEY,
                placer_order_number TEXT NOT NULL,
                filler_order_number TEXT NOT NULL,
                ordering_provider TEXT NOT NULL,
                patient_id TEXT NOT NULL,
                patient_class TEXT NOT NULL,
                location TEXT NOT NULL,
                cancelled INTEGER NOT NULL,
                received_ms INTEGER NOT NULL
            );",
        )?;
        Ok(OrderStore { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores orders (a later message about the same accession number
    /// replaces the earlier), all or none.
    pub fn put(&self, orders: &[Order]) -> Result<(), OrderStoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for o in orders {
            tx.execute(
                "INSERT OR REPLACE INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    o.accession_number,
                    o.placer_order_number,
                    o.filler_order_number,
                    o.ordering_provider,
                    o.patient_id,
                    o.patient_class,
                    o.location,
                    o.cancelled,
                    o.received_ms
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The order of an accession number.
    pub fn get(&self, accession_number: &str) -> Result<Option<Order>, OrderStoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT accession_number, placer_order_number, filler_order_number,
                        ordering_provider, patient_id, patient_class, location, cancelled,
                        received_ms
                 FROM orders WHERE accession_number = ?1",
                [accession_number],
                |r| {
                    Ok(Order {
                        accession_number: r.get(0)?,
                        placer_order_number: r.get(1)?,
                        filler_order_number: r.get(2)?,
                        ordering_provider: r.get(3)?,
                        patient_id: r.get(4)?,
                        patient_class: r.get(5)?,
                        location: r.get(6)?,
                        cancelled: r.get(7)?,
                        received_ms: r.get(8)?,
                    })
                },
            )
            .optional()?)
    }

    /// Retention: deletes orders received before `cutoff_ms`; how many.
    pub fn purge(&self, cutoff_ms: i64) -> Result<usize, OrderStoreError> {
        Ok(self
            .db()
            .execute("DELETE FROM orders WHERE received_ms < ?1", [cutoff_ms])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORM: &str =
        "MSH|^~\\&|RIS|BV-BAC-NINH|CXR-TRIAGE|RADIOLOGY|20261206080000||ORM^O01|MSG0001|P|2.3.1\r\
        PID|1||BN-000123^^^BV-BAC-NINH^MR~CCCD-1^^^VNM^NI||NGUYỄN^THỊ HOA||19800101|F\r\
        PV1|1|E|CC^101^1^BV-BAC-NINH\r\
        ORC|NW|ORD-77^RIS|FIL-9^PACS||SC||||20261206080000|||1234^TRẦN^MINH^^^BS\r\
        OBR|1|ORD-77^RIS|FIL-9^PACS|36643-5^XR Chest 2V^LN||||||||||||||ACC-5501|RP-1\r";

    #[test]
    fn orm_o01_gives_the_order_by_accession_number() {
        let orders = parse(ORM, 7).unwrap();
        assert_eq!(
            orders,
            [Order {
                accession_number: "ACC-5501".into(),
                placer_order_number: "ORD-77^RIS".into(),
                filler_order_number: "FIL-9^PACS".into(),
                ordering_provider: "1234^TRẦN^MINH^^^BS".into(),
                patient_id: "BN-000123^^^BV-BAC-NINH^MR".into(),
                patient_class: "E".into(),
                location: "CC^101^1^BV-BAC-NINH".into(),
                cancelled: false,
                received_ms: 7,
            }]
        );
        let a = ack(ORM, None, "CXR-TRIAGE", "RADIOLOGY", 7);
        assert!(
            a.contains("|RIS|BV-BAC-NINH|") && a.contains("ACK^O01^ACK"),
            "{a}"
        );
        assert!(a.contains("\rMSA|AA|MSG0001\r"), "{a}");
    }

    #[test]
    fn omi_o23_reads_the_accession_from_ipc_and_cancels() {
        let omi = "MSH|^~\\&|RIS|H|CXR|R|20261206||OMI^O23^OMI_O23|M2|P|2.5.1\r\
            PID|1||P9^^^H^MR\r\
            ORC|CA|ORD-1|FIL-1\r\
            TQ1|1\r\
            OBR|1|ORD-1|FIL-1|XR^Chest^L\r\
            IPC|ACC-1|RP-1|1.2.3|SPS-1\r";
        let orders = parse(omi, 1).unwrap();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].accession_number, "ACC-1");
        assert!(orders[0].cancelled);
    }

    #[test]
    fn other_messages_and_orders_without_accession_are_refused() {
        let adt = "MSH|^~\\&|RIS|H|CXR|R|20261206||ADT^A01|M3|P|2.5.1\rPID|1||P9\r";
        assert!(matches!(parse(adt, 1), Err(Refusal::Unsupported(_))));
        let a = ack(
            adt,
            parse(adt, 1).err().as_ref(),
            "CXR-TRIAGE",
            "RADIOLOGY",
            1,
        );
        assert!(
            a.contains("\rMSA|AR|M3|") && a.contains("\rERR|||200^"),
            "{a}"
        );
        let odd = "MSH|^~\\#|RIS|H|CXR|R|20261206||ORM^O01|M4|P|2.5.1\r";
        assert!(matches!(parse(odd, 1), Err(Refusal::Unsupported(_))));
        let no_acc =
            "MSH|^~\\&|RIS|H|CXR|R|20261206||ORM^O01|M5|P|2.3\rORC|NW|ORD-2\rOBR|1|ORD-2\r";
        assert!(matches!(parse(no_acc, 1), Err(Refusal::Invalid(_))));
        assert!(matches!(parse("garbage", 1), Err(Refusal::Invalid(_))));
    }

    #[test]
    fn the_store_keeps_the_latest_message_per_accession_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = OrderStore::open(&dir.path().join("orders.sqlite")).unwrap();
        let mut o = parse(ORM, 5).unwrap();
        store.put(&o).unwrap();
        o[0].cancelled = true;
        o[0].received_ms = 9;
        store.put(&o).unwrap();
        let got = store.get("ACC-5501").unwrap().unwrap();
        assert!(got.cancelled);
        assert_eq!(store.get("ACC-0").unwrap(), None);
        assert_eq!(store.purge(10).unwrap(), 1);
        assert_eq!(store.get("ACC-5501").unwrap(), None);
    }
}
