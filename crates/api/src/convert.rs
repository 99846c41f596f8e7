//! Conversions between the pipeline's types and the protobuf messages.

use prost_types::Timestamp;

use super::pb;
use cxr_findings::overlay;
use cxr_findings::priority::{Priority, PriorityAssessment};
use cxr_findings::{FindingResult, Peak, Region};
use cxr_model::{FindingId, ModelInfo, Provenance};
use cxr_pipeline::{Filed, FindingSummary, NotAnalyzed, Timings};
use cxr_worklist::{
    Event, EventKind, ImageIdentity, StoredHeatmap, StoredImage, StoredReason, StudyStatus,
    StudySummary,
};

/// Milliseconds since the epoch of a timestamp; `None` when it does not
/// fit (a timestamp 2^62 s away must not wrap around to 1970).
pub fn ms_of(t: &Timestamp) -> Option<i64> {
    t.seconds
        .checked_mul(1000)?
        .checked_add(i64::from(t.nanos) / 1_000_000)
}

pub fn timestamp(ms: i64) -> Option<Timestamp> {
    (ms > 0).then(|| Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// The v1 enum value of a finding id: the reference findings have one,
/// any other finding is UNSPECIFIED (its `finding_id` says which).
pub fn finding_kind(k: &FindingId) -> pb::FindingKind {
    match k.as_str() {
        FindingId::TUBERCULOSIS => pb::FindingKind::Tuberculosis,
        FindingId::MALIGNANT_NODULE => pb::FindingKind::MalignantNodule,
        _ => pb::FindingKind::Unspecified,
    }
}

/// The finding a request names: `finding_id` when set, else the v1 enum.
pub fn finding_of_request(id: &str, kind: i32) -> Option<FindingId> {
    if !id.is_empty() {
        return FindingId::new(id).ok();
    }
    match pb::FindingKind::try_from(kind) {
        Ok(pb::FindingKind::Tuberculosis) => Some(FindingId::tuberculosis()),
        Ok(pb::FindingKind::MalignantNodule) => Some(FindingId::malignant_nodule()),
        _ => None,
    }
}

pub fn priority(p: Priority) -> pb::Priority {
    match p {
        Priority::Routine => pb::Priority::Routine,
        Priority::NotAnalyzed => pb::Priority::NotAnalyzed,
        Priority::Urgent => pb::Priority::Urgent,
        Priority::Critical => pb::Priority::Critical,
    }
}

pub fn priority_from_pb(p: pb::Priority) -> Option<Priority> {
    match p {
        pb::Priority::Routine => Some(Priority::Routine),
        pb::Priority::NotAnalyzed => Some(Priority::NotAnalyzed),
        pb::Priority::Urgent => Some(Priority::Urgent),
        pb::Priority::Critical => Some(Priority::Critical),
        pb::Priority::Unspecified => None,
    }
}

pub fn status(s: StudyStatus) -> pb::StudyStatus {
    match s {
        StudyStatus::New => pb::StudyStatus::New,
        StudyStatus::Claimed => pb::StudyStatus::Claimed,
        StudyStatus::Reading => pb::StudyStatus::Reading,
        StudyStatus::Read => pb::StudyStatus::Read,
        StudyStatus::Dismissed => pb::StudyStatus::Dismissed,
    }
}

pub fn status_from_pb(s: pb::StudyStatus) -> Option<StudyStatus> {
    match s {
        pb::StudyStatus::New => Some(StudyStatus::New),
        pb::StudyStatus::Claimed => Some(StudyStatus::Claimed),
        pb::StudyStatus::Reading => Some(StudyStatus::Reading),
        pb::StudyStatus::Read => Some(StudyStatus::Read),
        pb::StudyStatus::Dismissed => Some(StudyStatus::Dismissed),
        pb::StudyStatus::Unspecified => None,
    }
}

pub fn identity(i: &ImageIdentity) -> pb::ImageIdentity {
    pb::ImageIdentity {
        study_instance_uid: i.study_instance_uid.clone(),
        series_instance_uid: i.series_instance_uid.clone(),
        sop_instance_uid: i.sop_instance_uid.clone(),
        accession_number: i.accession_number.clone(),
        modality: i.modality.clone(),
        view_position: i.view_position.clone(),
        study_date: i.study_date.clone(),
    }
}

pub fn assessment(a: &PriorityAssessment) -> pb::PriorityAssessment {
    pb::PriorityAssessment {
        priority: priority(a.priority) as i32,
        reasons: a
            .reasons
            .iter()
            .map(|r| pb::PriorityReason {
                finding: r
                    .finding
                    .as_ref()
                    .map(finding_kind)
                    .unwrap_or(pb::FindingKind::Unspecified) as i32,
                finding_id: r
                    .finding
                    .as_ref()
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
                score: r.score,
                operating_point: r.operating_point.clone(),
                threshold: r.threshold,
                sop_instance_uid: r.sop_instance_uid.clone(),
                text: r.text.clone(),
            })
            .collect(),
    }
}

fn point(p: &Peak) -> pb::Point {
    pb::Point {
        x: p.x,
        y: p.y,
        value: p.value,
    }
}

fn region(r: &Region) -> pb::Region {
    pb::Region {
        x0: r.bbox[0],
        y0: r.bbox[1],
        x1: r.bbox[2],
        y1: r.bbox[3],
        peak: Some(point(&r.peak)),
    }
}

fn summary_finding(f: &FindingSummary) -> pb::Finding {
    pb::Finding {
        kind: finding_kind(&f.finding) as i32,
        finding_id: f.finding.to_string(),
        display_name: f.display_name.clone(),
        raw_score: f.raw_score,
        score: f.score,
        operating_point: f.operating_point.clone(),
        threshold: f.threshold,
        positive: f.positive,
        operating_points: f
            .operating_points
            .iter()
            .map(|op| pb::OperatingPointVerdict {
                name: op.name.clone(),
                threshold: op.threshold,
                positive: op.positive,
            })
            .collect(),
        regions: f.regions.iter().map(region).collect(),
        heatmap: None,
        peak: f.peak.as_ref().map(point),
    }
}

fn geometry(g: &cxr_model::preprocess::Geometry) -> pb::Geometry {
    pb::Geometry {
        image_width: g.image_width,
        image_height: g.image_height,
        model_width: g.model_width,
        model_height: g.model_height,
        scale_x: g.scale_x,
        scale_y: g.scale_y,
        offset_x: g.offset_x,
        offset_y: g.offset_y,
    }
}

pub fn stored_heatmap(h: &StoredHeatmap) -> pb::Heatmap {
    pb::Heatmap {
        source: h.source.as_str().into(),
        overlay_png: Vec::new(),
        grid_width: h.grid_width,
        grid_height: h.grid_height,
        grid: h.values.clone(),
        geometry: Some(geometry(&h.geometry)),
    }
}

fn full_finding(
    f: &FindingResult,
    preview: Option<&overlay::Preview>,
    heatmaps: bool,
    overlay_side: u32,
) -> pb::Finding {
    let mut out = summary_finding(&FindingSummary::from(f));
    if heatmaps {
        if let Some(h) = &f.heatmap {
            let png = match preview {
                Some(p) => overlay::overlay_png(p, h, overlay_side).0,
                None => overlay::heatmap_png(h, overlay_side).0,
            };
            out.heatmap = Some(pb::Heatmap {
                source: h.source.as_str().into(),
                overlay_png: png,
                grid_width: h.grid_width as u32,
                grid_height: h.grid_height as u32,
                grid: h.values.clone(),
                geometry: Some(geometry(&h.geometry)),
            });
        }
    }
    out
}

fn provenance(p: &Provenance) -> pb::Provenance {
    pb::Provenance {
        model_id: p.model_id.clone(),
        model_version: p.model_version.clone(),
        execution_provider: p.provider.as_str().into(),
        batch_size: p.batch_size as u32,
    }
}

fn timings(t: &Timings) -> pb::StageTimings {
    pb::StageTimings {
        decode_ms: t.decode_ms,
        preprocess_ms: t.engine.preprocess_ms,
        queue_ms: t.engine.queue_ms,
        inference_ms: t.engine.inference_ms,
        store_ms: t.store_ms,
        total_ms: t.total_ms,
    }
}

fn reason(r: &StoredReason) -> pb::NotAnalyzedReason {
    pb::NotAnalyzedReason {
        code: r.code.clone(),
        message: r.message.clone(),
    }
}

pub fn analyze_response(filed: &Filed, heatmaps: bool, overlay_side: u32) -> pb::AnalyzeResponse {
    let o = &filed.outcome;
    pb::AnalyzeResponse {
        identity: Some(identity(&o.identity)),
        analyzable: o.analyzable(),
        reason: o
            .reason
            .as_ref()
            .map(|r: &NotAnalyzed| reason(&StoredReason::from(r))),
        findings: o
            .findings
            .iter()
            .map(|f| full_finding(f, o.preview.as_ref().map(|p| &p.0), heatmaps, overlay_side))
            .collect(),
        image_priority: Some(assessment(&o.image_priority)),
        study_priority: Some(assessment(&filed.study.assessment)),
        provenance: o.provenance.iter().map(provenance).collect(),
        timings: Some(timings(&o.timings)),
        sequence: filed.sequence,
    }
}

pub fn stored_image(i: &StoredImage) -> pb::ImageResult {
    pb::ImageResult {
        identity: Some(identity(&i.identity)),
        analyzable: i.analyzable,
        reason: i.reason.as_ref().map(reason),
        findings: i.result.findings.iter().map(summary_finding).collect(),
        priority: Some(assessment(&i.assessment)),
        provenance: i.result.provenance.iter().map(provenance).collect(),
        received: timestamp(i.received_ms),
    }
}

pub fn study(s: &StudySummary, images: Vec<pb::ImageResult>) -> pb::Study {
    pb::Study {
        study_instance_uid: s.study_instance_uid.clone(),
        accession_number: s.accession_number.clone(),
        priority: Some(assessment(&s.assessment)),
        top_score: s.assessment.top_score,
        status: status(s.status) as i32,
        status_by: s.status_by.clone(),
        status_at: timestamp(s.status_at_ms),
        first_received: timestamp(s.first_received_ms),
        last_received: timestamp(s.last_received_ms),
        modalities: s.modalities.clone(),
        study_date: s.study_date.clone(),
        images,
        image_count: s.image_count,
        reopened_at: timestamp(s.reopened_at_ms),
        reopened_reason: s.reopened_reason.clone(),
    }
}

pub fn event(e: &Event, s: Option<&StudySummary>) -> pb::WorklistEvent {
    pb::WorklistEvent {
        sequence: e.sequence,
        kind: match e.kind {
            EventKind::ImageStored => pb::worklist_event::Kind::ImageStored,
            EventKind::StatusChanged => pb::worklist_event::Kind::StatusChanged,
        } as i32,
        study: s.map(|s| study(s, Vec::new())),
        sop_instance_uid: e.sop_instance_uid.clone(),
        at: timestamp(e.at_ms),
    }
}

pub fn model_info(m: &ModelInfo) -> pb::ModelInfo {
    pb::ModelInfo {
        id: m.id.clone(),
        version: m.version.clone(),
        execution_provider: m.provider.as_str().into(),
        fallback_cause: m.fallback_cause.clone().unwrap_or_default(),
        findings: m
            .findings
            .iter()
            .map(finding_kind)
            .filter(|k| *k != pb::FindingKind::Unspecified)
            .map(|k| k as i32)
            .collect(),
        finding_ids: m.findings.iter().map(ToString::to_string).collect(),
        operating_points: m
            .thresholds
            .iter()
            .flat_map(|(kind, ops)| {
                let in_use = m.operating_points.get(kind);
                ops.iter().map(move |(name, t)| pb::ModelOperatingPoint {
                    finding: finding_kind(kind) as i32,
                    finding_id: kind.to_string(),
                    name: name.clone(),
                    threshold: *t,
                    in_use: in_use == Some(name),
                })
            })
            .collect(),
        heatmap: m.heatmap.as_str().into(),
        warmup_ms: m.warmup_ms,
    }
}
