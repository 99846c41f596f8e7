//! What the SQLite and PostgreSQL stores share: the rules (who may replace
//! a result, when new evidence reopens a closed study, how a study sums up
//! its images) and the worklist query, written once with the placeholder
//! style of either database.

use super::{ImageRecord, ListQuery, StoreError, StudyStatus, StudySummary};
use cxr_findings::priority::{self, Priority, PriorityAssessment, Unread};

pub(crate) fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("stored JSON: {e}"))
}

pub(crate) fn unread_name(u: Option<Unread>) -> Option<&'static str> {
    u.map(|u| match u {
        Unread::SetAside => "set_aside",
        Unread::Failed => "failed",
    })
}

pub(crate) fn parse_unread(s: Option<&str>) -> Option<Unread> {
    match s {
        Some("set_aside") => Some(Unread::SetAside),
        Some("failed") => Some(Unread::Failed),
        _ => None,
    }
}

/// Who the stored result of `record` will be filed under, given who filed
/// the result it replaces (`existing`): only that source (or an
/// administrator) may replace it, so that another uploader re-sending the
/// SOP Instance UID cannot turn a CRITICAL result into something else.
pub(crate) fn resolve_source(
    existing: Option<&str>,
    record: &ImageRecord,
) -> Result<String, StoreError> {
    match existing {
        Some(before) if record.source.name.is_empty() => Ok(before.to_string()),
        Some(before)
            if !before.is_empty()
                && before != record.source.name
                && !record.source.may_replace_others =>
        {
            Err(StoreError::Conflict(
                "this image's result was filed by another source; only that source or an \
                 administrator may replace it"
                    .into(),
            ))
        }
        _ => Ok(record.source.name.clone()),
    }
}

/// Why a study that was read or dismissed (`status`) goes back on the
/// worklist, or `None`: a later image raised its priority (`rank_before` →
/// `rank_after`) or is itself URGENT or CRITICAL — the reader has not seen
/// that evidence. A routine image, or one set aside (a lateral), does not
/// reopen it.
pub(crate) fn reopen_reason(
    record: &ImageRecord,
    status: &str,
    rank_before: i64,
    rank_after: i64,
) -> Option<String> {
    let closed = matches!(
        StudyStatus::parse(status),
        Some(StudyStatus::Read | StudyStatus::Dismissed)
    );
    let image = record.assessment.priority;
    let raised = rank_after > rank_before;
    let urgent = image.rank() >= Priority::Urgent.rank();
    (closed && (raised || urgent)).then(|| {
        format!(
            "new {} image after the study was {}",
            image.as_str(),
            status.to_lowercase()
        )
    })
}

/// One image of a study, as the study's summary needs it.
pub(crate) struct ImageRow {
    pub assessment: String,
    pub unread: Option<String>,
    pub received: i64,
    pub modality: String,
    pub accession: String,
    pub study_date: String,
}

/// A study's row, summed up from its images.
pub(crate) struct StudyRow {
    pub accession: String,
    pub rank: i64,
    pub top_score: f64,
    pub assessment: String,
    pub first_received: i64,
    pub last_received: i64,
    /// `,CR,DX,`: each modality between commas, for `LIKE '%,CR,%'`.
    pub modalities: String,
    pub study_date: String,
    pub image_count: i64,
}

/// Sums a study up from its images (oldest first); `None` when it has none.
pub(crate) fn summarise(rows: &[ImageRow]) -> Result<Option<StudyRow>, StoreError> {
    let Some(latest) = rows.last() else {
        return Ok(None);
    };
    let assessments: Vec<(PriorityAssessment, Option<Unread>)> = rows
        .iter()
        .map(|r| {
            Ok((
                serde_json::from_str(&r.assessment).map_err(json_err)?,
                parse_unread(r.unread.as_deref()),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let study = priority::study_priority(assessments.iter().map(|(a, u)| (a, *u)));
    let mut modalities: Vec<&str> = rows
        .iter()
        .map(|r| r.modality.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    modalities.sort_unstable();
    modalities.dedup();
    Ok(Some(StudyRow {
        accession: latest.accession.clone(),
        rank: study.priority.rank(),
        top_score: f64::from(study.top_score),
        assessment: serde_json::to_string(&study).map_err(json_err)?,
        first_received: rows.iter().map(|r| r.received).min().unwrap_or(0),
        last_received: rows.iter().map(|r| r.received).max().unwrap_or(0),
        modalities: format!(",{},", modalities.join(",")),
        study_date: latest.study_date.clone(),
        image_count: rows.len() as i64,
    }))
}

pub(crate) const STUDY_COLUMNS: &str = "study_uid, accession, assessment, status, status_by, \
    status_at, first_received, last_received, modalities, study_date, image_count, \
    priority_rank, top_score, reopened_at, reopened_reason";

/// A study row read back with [`STUDY_COLUMNS`], its assessment still JSON.
pub(crate) struct StudyColumns {
    pub study_uid: String,
    pub accession: String,
    pub assessment: String,
    pub status: String,
    pub status_by: String,
    pub status_at: i64,
    pub first_received: i64,
    pub last_received: i64,
    pub modalities: String,
    pub study_date: String,
    pub image_count: i64,
    pub reopened_at: i64,
    pub reopened_reason: String,
}

impl StudyColumns {
    pub(crate) fn finish(self) -> Result<StudySummary, StoreError> {
        Ok(StudySummary {
            study_instance_uid: self.study_uid,
            accession_number: self.accession,
            assessment: serde_json::from_str(&self.assessment).map_err(json_err)?,
            status: StudyStatus::parse(&self.status).unwrap_or(StudyStatus::New),
            status_by: self.status_by,
            status_at_ms: self.status_at,
            first_received_ms: self.first_received,
            last_received_ms: self.last_received,
            modalities: self
                .modalities
                .split(',')
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect(),
            study_date: self.study_date,
            image_count: self.image_count as u32,
            reopened_at_ms: self.reopened_at,
            reopened_reason: self.reopened_reason,
        })
    }
}

/// Keyset page token: the sort key of the last study of the page.
pub(crate) fn encode_token(s: &StudySummary) -> String {
    format!(
        "{}.{:08x}.{}.{}",
        s.assessment.priority.rank(),
        s.assessment.top_score.to_bits(),
        s.first_received_ms,
        hex(&s.study_instance_uid)
    )
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn decode_token(t: &str) -> Result<(i64, f32, i64, String), StoreError> {
    let bad = || StoreError::Invalid("page_token is not one this server issued".into());
    let mut parts = t.split('.');
    let rank = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let score = parts
        .next()
        .and_then(|p| u32::from_str_radix(p, 16).ok())
        .map(f32::from_bits)
        .ok_or_else(bad)?;
    let first = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let uid = parts.next().and_then(unhex).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((rank, score, first, uid))
}

/// A bound value of a worklist query.
pub(crate) enum Value {
    Int(i64),
    Real(f64),
    Text(String),
}

/// The worklist query for `query`: the count, the page (one more row than
/// the page holds, to tell whether there is a next page), their values and
/// the page size. `placeholder(n)` writes the n-th (1-based) placeholder:
/// `?n` for SQLite, `$n` for PostgreSQL.
pub(crate) struct ListSql {
    pub count: String,
    pub page: String,
    pub count_values: usize,
    pub values: Vec<Value>,
    pub size: usize,
}

pub(crate) fn list_sql(query: &ListQuery, placeholder: char) -> Result<ListSql, StoreError> {
    let statuses: Vec<StudyStatus> = if query.statuses.is_empty() {
        StudyStatus::OPEN.to_vec()
    } else {
        query.statuses.clone()
    };
    let mut filter = vec![format!(
        "status IN ({})",
        statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    )];
    if !query.priorities.is_empty() {
        filter.push(format!(
            "priority_rank IN ({})",
            query
                .priorities
                .iter()
                .map(|p| p.rank().to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let mut values: Vec<Value> = Vec::new();
    let bind = |v: Value, values: &mut Vec<Value>| {
        values.push(v);
        format!("{placeholder}{}", values.len())
    };
    if let Some(after) = query.received_after_ms {
        let p = bind(Value::Int(after), &mut values);
        filter.push(format!("first_received >= {p}"));
    }
    if let Some(before) = query.received_before_ms {
        let p = bind(Value::Int(before), &mut values);
        filter.push(format!("first_received < {p}"));
    }
    if let Some(m) = query.modality.as_deref().filter(|m| !m.is_empty()) {
        let p = bind(Value::Text(format!("%,{m},%")), &mut values);
        filter.push(format!("modalities LIKE {p}"));
    }
    let where_filter = filter.join(" AND ");
    let count_values = values.len();
    let mut page_filter = where_filter.clone();
    if let Some(token) = query.page_token.as_deref().filter(|t| !t.is_empty()) {
        let (rank, score, first, uid) = decode_token(token)?;
        let r = bind(Value::Int(rank), &mut values);
        let s = bind(Value::Real(f64::from(score)), &mut values);
        let f = bind(Value::Int(first), &mut values);
        let u = bind(Value::Text(uid), &mut values);
        page_filter.push_str(&format!(
            " AND (priority_rank < {r} OR (priority_rank = {r} AND (top_score < {s} OR \
             (top_score = {s} AND (first_received > {f} OR (first_received = {f} AND \
             study_uid > {u}))))))"
        ));
    }
    let size = if query.page_size == 0 {
        50
    } else {
        query.page_size.min(500)
    } as usize;
    Ok(ListSql {
        count: format!("SELECT COUNT(*) FROM studies WHERE {where_filter}"),
        page: format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE {page_filter}
             ORDER BY priority_rank DESC, top_score DESC, first_received, study_uid LIMIT {}",
            size + 1
        ),
        count_values,
        values,
        size,
    })
}

/// The page from the rows of [`ListSql::page`].
pub(crate) fn page(
    rows: Vec<StudyColumns>,
    size: usize,
    total: i64,
) -> Result<super::Page, StoreError> {
    let more = rows.len() > size;
    let studies: Vec<StudySummary> = rows
        .into_iter()
        .take(size)
        .map(StudyColumns::finish)
        .collect::<Result<_, _>>()?;
    let next_page_token = if more {
        studies.last().map(encode_token)
    } else {
        None
    };
    Ok(super::Page {
        studies,
        next_page_token,
        total: total as u32,
    })
}

/// Studies whose every image is older than the cutoff (`?1`/`$1`) and
/// that are read or dismissed: what `purge` with results removes.
pub(crate) fn closed_before(p: char) -> String {
    format!(
        "SELECT study_uid FROM studies WHERE status IN ('READ', 'DISMISSED') AND last_received < {p}1"
    )
}

/// Images received before the cutoff in read or dismissed studies: their
/// overlays go, an open study keeps everything its reader may need.
pub(crate) fn old_closed_images(p: char) -> String {
    format!(
        "SELECT i.sop_uid FROM images i JOIN studies s ON s.study_uid = i.study_uid
         WHERE i.received < {p}1 AND s.status IN ('READ', 'DISMISSED')"
    )
}

/// `Priority` from a stored rank.
pub(crate) fn priority_of(rank: i64) -> Priority {
    Priority::from_rank(rank)
}
