//! The worklist store, one suite run against both backends — SQLite on a
//! real database file and a real PostgreSQL server started by the tests:
//! ordering, idempotent re-sends, study priority from mixed images, status
//! workflow, the change log, paging, heatmaps, persistence across reopen,
//! the audit trail, retention, who may replace a result, and several
//! writers on one database.

use crate::backends::Db;
use cxr_findings::priority::{unread_priority, Priority, PriorityAssessment};
use cxr_findings::{HeatmapSource, NotAnalyzed};
use cxr_ingest::{IngestErrorKind, NotAnalyzable};
use cxr_model::preprocess::{Geometry, ResizeMode};
use cxr_model::FindingId;
use cxr_worklist::{
    EventKind, ImageIdentity, ImageRecord, ListQuery, Source, StoreError, StoredHeatmap,
    StoredResult, StudyStatus, Timings, WorklistStore,
};

fn assessment(priority: Priority, top: f32) -> PriorityAssessment {
    PriorityAssessment {
        priority,
        reasons: Vec::new(),
        top_score: top,
    }
}

pub(crate) fn record(study: &str, sop: &str, priority: Priority, top: f32, at: i64) -> ImageRecord {
    ImageRecord {
        identity: ImageIdentity {
            study_instance_uid: study.into(),
            series_instance_uid: format!("{study}.1"),
            sop_instance_uid: sop.into(),
            accession_number: format!("ACC-{study}"),
            modality: "DX".into(),
            view_position: "PA".into(),
            study_date: "20261122".into(),
        },
        reason: None,
        assessment: assessment(priority, top),
        result: StoredResult {
            timings: Timings {
                total_ms: at as f64,
                ..Timings::default()
            },
            ..StoredResult::default()
        },
        heatmaps: Vec::new(),
        received_ms: at,
        preview_png: None,
        source: Source::default(),
    }
}

/// An image not analysed, for the reason `code`.
fn unread(study: &str, sop: &str, code: &str, at: i64) -> ImageRecord {
    let reason = match code {
        "lateral_view" => NotAnalyzed::Gate(NotAnalyzable::LateralView {
            view_position: "LL".into(),
        }),
        "decode_failed" => NotAnalyzed::Undecodable {
            kind: IngestErrorKind::Io,
            message: "test".into(),
        },
        other => panic!("no test reason {other}"),
    };
    ImageRecord {
        assessment: unread_priority(sop, &reason),
        reason: Some(reason),
        ..record(study, sop, Priority::NotAnalyzed, 0.0, at)
    }
}

fn order(store: &dyn WorklistStore) -> Vec<String> {
    store
        .list(&ListQuery::default())
        .unwrap()
        .studies
        .into_iter()
        .map(|s| s.study_instance_uid)
        .collect()
}

fn the_worklist_is_ordered_by_priority_then_score_then_arrival(db: &Db) {
    let store = db.open();
    store
        .put_image(&record("routine-old", "1", Priority::Routine, 0.2, 100))
        .unwrap();
    store
        .put_image(&record("urgent-low", "2", Priority::Urgent, 0.6, 200))
        .unwrap();
    store
        .put_image(&record("critical", "3", Priority::Critical, 0.9, 300))
        .unwrap();
    store
        .put_image(&record("urgent-high", "4", Priority::Urgent, 0.8, 400))
        .unwrap();
    store
        .put_image(&unread("broken", "5", "decode_failed", 500))
        .unwrap();
    store
        .put_image(&record("routine-new", "6", Priority::Routine, 0.2, 600))
        .unwrap();
    store
        .put_image(&record(
            "routine-near-miss",
            "7",
            Priority::Routine,
            0.4,
            700,
        ))
        .unwrap();
    // A lateral alone: visible for a human, as NOT_ANALYZED.
    store
        .put_image(&unread("lateral-only", "8", "lateral_view", 50))
        .unwrap();
    assert_eq!(
        order(store.as_ref()),
        [
            "critical",
            "urgent-high",
            "urgent-low",
            "lateral-only",
            "broken",
            "routine-near-miss",
            "routine-old",
            "routine-new"
        ]
    );
    let counts = store.open_counts().unwrap();
    assert!(
        counts.contains(&(Priority::Routine, 3)) && counts.contains(&(Priority::NotAnalyzed, 2))
    );
}

fn a_study_takes_its_worst_image_and_laterals_do_not_lower_it(db: &Db) {
    let store = db.open();
    store
        .put_image(&record("s", "pa", Priority::Routine, 0.1, 10))
        .unwrap();
    let stored = store
        .put_image(&unread("s", "lat", "lateral_view", 20))
        .unwrap();
    assert_eq!(stored.study.assessment.priority, Priority::Routine);
    assert_eq!(stored.study.image_count, 2);
    let stored = store
        .put_image(&record("s", "pa2", Priority::Urgent, 0.7, 30))
        .unwrap();
    assert_eq!(stored.study.assessment.priority, Priority::Urgent);
    let stored = store
        .put_image(&unread("s", "bad", "decode_failed", 40))
        .unwrap();
    assert_eq!(stored.study.assessment.priority, Priority::Urgent);
    let (study, images) = store.get_study("s").unwrap();
    assert_eq!(images.len(), 4);
    assert_eq!((study.first_received_ms, study.last_received_ms), (10, 40));
    assert_eq!(study.modalities, ["DX"]);
}

fn a_resent_image_replaces_its_result_and_never_duplicates(db: &Db) {
    let store = db.open();
    let first = store
        .put_image(&record("s", "img", Priority::Urgent, 0.7, 10))
        .unwrap();
    assert!(!first.replaced);
    let again = store
        .put_image(&record("s", "img", Priority::Routine, 0.1, 20))
        .unwrap();
    assert!(again.replaced);
    assert_eq!(again.study.image_count, 1);
    assert_eq!(again.study.assessment.priority, Priority::Routine);
    assert!(again.sequence > first.sequence);
    // Moving an image to another study recomputes (and removes) the old one.
    store
        .put_image(&record("t", "img", Priority::Urgent, 0.7, 30))
        .unwrap();
    assert!(store.get_study("s").is_err());
    assert_eq!(order(store.as_ref()), ["t"]);
}

fn status_changes_are_logged_and_filter_the_default_view(db: &Db) {
    let store = db.open();
    store
        .put_image(&record("a", "1", Priority::Urgent, 0.7, 10))
        .unwrap();
    store
        .put_image(&record("b", "2", Priority::Routine, 0.1, 20))
        .unwrap();
    let (study, seq) = store
        .update_status("a", StudyStatus::Claimed, "dr.lan", 30)
        .unwrap();
    assert_eq!(
        (study.status, study.status_by.as_str(), study.status_at_ms),
        (StudyStatus::Claimed, "dr.lan", 30)
    );
    store
        .update_status("a", StudyStatus::Read, "dr.lan", 40)
        .unwrap();
    assert_eq!(order(store.as_ref()), ["b"]);
    let read = store
        .list(&ListQuery {
            statuses: vec![StudyStatus::Read],
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(read.studies[0].study_instance_uid, "a");
    assert!(store
        .update_status("nope", StudyStatus::Read, "x", 1)
        .is_err());

    let events = store.events_after(0, 100).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::ImageStored,
            EventKind::ImageStored,
            EventKind::StatusChanged,
            EventKind::StatusChanged
        ]
    );
    assert!(events
        .windows(2)
        .all(|w| w[1].sequence == w[0].sequence + 1));
    let after = store.events_after(seq, 100).unwrap();
    assert_eq!(after.len(), 1);
}

fn pages_cover_every_study_once_in_order_and_filters_apply(db: &Db) {
    let store = db.open();
    for i in 0..23 {
        let p = [Priority::Routine, Priority::Urgent, Priority::Critical][i % 3];
        store
            .put_image(&record(
                &format!("s{i:02}"),
                &format!("i{i}"),
                p,
                (i % 5) as f32 / 10.0,
                i as i64,
            ))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(&ListQuery {
                page_size: 5,
                page_token: token.clone(),
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(page.total, 23);
        seen.extend(page.studies.into_iter().map(|s| s.study_instance_uid));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, order_all(store.as_ref()));
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 23);

    let critical = store
        .list(&ListQuery {
            priorities: vec![Priority::Critical],
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(critical.total, 7);
    let window = store
        .list(&ListQuery {
            received_after_ms: Some(10),
            received_before_ms: Some(15),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(window.total, 5);
    assert_eq!(
        store
            .list(&ListQuery {
                modality: Some("CR".into()),
                ..ListQuery::default()
            })
            .unwrap()
            .total,
        0
    );
    assert!(store
        .list(&ListQuery {
            page_token: Some("garbage".into()),
            ..ListQuery::default()
        })
        .is_err());
}

fn order_all(store: &dyn WorklistStore) -> Vec<String> {
    store
        .list(&ListQuery {
            page_size: 500,
            ..ListQuery::default()
        })
        .unwrap()
        .studies
        .into_iter()
        .map(|s| s.study_instance_uid)
        .collect()
}

fn results_survive_reopening_the_database(db: &Db) {
    {
        let store = db.open();
        let mut r = record("s", "img", Priority::Urgent, 0.7, 10);
        r.heatmaps.push(StoredHeatmap {
            finding: FindingId::tuberculosis(),
            source: HeatmapSource::Model,
            grid_width: 2,
            grid_height: 2,
            values: vec![0.0, 0.25, 0.5, 1.0],
            geometry: Geometry::fit(100, 100, 64, 64, ResizeMode::Letterbox),
        });
        r.preview_png = Some(vec![1, 2, 3]);
        store.put_image(&r).unwrap();
        store
            .update_status("s", StudyStatus::Reading, "dr.mai", 20)
            .unwrap();
    }
    let store = db.open();
    let (study, images) = store.get_study("s").unwrap();
    assert_eq!(
        (study.status, study.assessment.priority),
        (StudyStatus::Reading, Priority::Urgent)
    );
    assert_eq!(images[0].result.timings.total_ms, 10.0);
    let h = store.heatmap("img", &FindingId::tuberculosis()).unwrap();
    assert_eq!(h.values, [0.0, 0.25, 0.5, 1.0]);
    assert!(store
        .heatmap("img", &FindingId::malignant_nodule())
        .is_err());
    assert_eq!(store.preview("img").unwrap(), [1, 2, 3]);
    assert_eq!(store.events_after(0, 10).unwrap().len(), 2);
}

fn new_evidence_reopens_a_read_or_dismissed_study(db: &Db) {
    let store = db.open();
    store
        .put_image(&record("s", "pa", Priority::Routine, 0.1, 10))
        .unwrap();
    store
        .update_status("s", StudyStatus::Read, "dr.lan", 20)
        .unwrap();
    assert!(
        order(store.as_ref()).is_empty(),
        "a read study leaves the default view"
    );

    // A routine image, or a lateral set aside, is no new evidence.
    store
        .put_image(&record("s", "pa2", Priority::Routine, 0.2, 30))
        .unwrap();
    store
        .put_image(&unread("s", "lat", "lateral_view", 35))
        .unwrap();
    let (study, _) = store.get_study("s").unwrap();
    assert_eq!(study.status, StudyStatus::Read);
    assert_eq!(study.reopened_at_ms, 0);

    // A CRITICAL image after the read: back on the worklist, marked.
    let stored = store
        .put_image(&record("s", "late", Priority::Critical, 0.9, 40))
        .unwrap();
    assert_eq!(stored.study.status, StudyStatus::New);
    assert_eq!(stored.study.reopened_at_ms, 40);
    assert!(
        stored.study.reopened_reason.contains("CRITICAL")
            && stored.study.reopened_reason.contains("read"),
        "{}",
        stored.study.reopened_reason
    );
    assert_eq!(order(store.as_ref()), ["s"]);
    // Claiming keeps the marker; reading again clears it.
    let (claimed, _) = store
        .update_status("s", StudyStatus::Claimed, "dr.mai", 50)
        .unwrap();
    assert_eq!(claimed.reopened_at_ms, 40);
    let (read, _) = store
        .update_status("s", StudyStatus::Read, "dr.mai", 60)
        .unwrap();
    assert_eq!(
        (read.reopened_at_ms, read.reopened_reason.as_str()),
        (0, "")
    );

    // A dismissed study that an undecodable image raises to NOT_ANALYZED
    // (above ROUTINE) is reopened too: a human must look at it.
    store
        .put_image(&record("d", "pa", Priority::Routine, 0.1, 70))
        .unwrap();
    store
        .update_status("d", StudyStatus::Dismissed, "dr.lan", 80)
        .unwrap();
    let stored = store
        .put_image(&unread("d", "bad", "decode_failed", 90))
        .unwrap();
    assert_eq!(stored.study.status, StudyStatus::New);
    assert!(stored.study.reopened_reason.contains("dismissed"));
}

fn entry(who: &str, action: &str, object: &str, at: i64) -> cxr_worklist::AuditEntry {
    cxr_worklist::AuditEntry {
        at_ms: at,
        who: who.into(),
        roles: "reader".into(),
        method: "token".into(),
        action: action.into(),
        object: object.into(),
        address: "127.0.0.1:50000".into(),
        outcome: "ok".into(),
    }
}

fn the_audit_trail_is_append_only_and_tampering_breaks_its_chain(db: &Db) {
    use cxr_worklist::{verify_audit, AuditVerdict};
    let store = db.open();
    let store = store.as_ref();
    for i in 1..=5 {
        let seq = store
            .audit(&entry("dr.lan", "GetStudy", &format!("study:1.2.{i}"), i))
            .unwrap();
        assert_eq!(seq, i as u64);
    }
    assert_eq!(
        verify_audit(store).unwrap(),
        AuditVerdict::Intact { records: 5 }
    );
    let records = store.audit_after(0, 100).unwrap();
    assert_eq!(records[1].prev_hash, records[0].hash);

    // The database refuses changes and deletions outright.
    assert!(db.sql("UPDATE audit SET who = 'x' WHERE seq = 2").is_err());
    assert!(db.sql("DELETE FROM audit WHERE seq = 2").is_err());

    // Someone with the file who drops the guards and rewrites a record is
    // found out, as is a deleted record.
    db.sql(db.drop_audit_guards).unwrap();
    db.sql("UPDATE audit SET who = 'nobody' WHERE seq = 3")
        .unwrap();
    match verify_audit(store).unwrap() {
        AuditVerdict::Broken { sequence, why } => {
            assert_eq!(sequence, 3);
            assert!(why.contains("hash"), "{why}");
        }
        other => panic!("tampering not found: {other:?}"),
    }
    db.sql("UPDATE audit SET who = 'dr.lan' WHERE seq = 3")
        .unwrap();
    assert!(matches!(
        verify_audit(store).unwrap(),
        AuditVerdict::Intact { records: 5 }
    ));
    db.sql("DELETE FROM audit WHERE seq = 4").unwrap();
    assert_eq!(
        verify_audit(store).unwrap(),
        AuditVerdict::Broken {
            sequence: 4,
            why: "record 4 is missing".into()
        }
    );
}

fn retention_purges_overlays_and_events_of_read_studies_only(db: &Db) {
    let store = db.open();
    let with_overlays = |study: &str, sop: &str, at: i64| {
        let mut r = record(study, sop, Priority::Urgent, 0.7, at);
        r.preview_png = Some(vec![1, 2, 3]);
        r.heatmaps.push(StoredHeatmap {
            finding: FindingId::tuberculosis(),
            source: HeatmapSource::Model,
            grid_width: 1,
            grid_height: 1,
            values: vec![0.5],
            geometry: Geometry::fit(10, 10, 8, 8, ResizeMode::Letterbox),
        });
        r
    };
    store.put_image(&with_overlays("read", "r1", 100)).unwrap();
    store.put_image(&with_overlays("open", "o1", 100)).unwrap();
    store
        .put_image(&with_overlays("recent", "n1", 5_000))
        .unwrap();
    store
        .update_status("read", StudyStatus::Read, "dr.lan", 200)
        .unwrap();
    store
        .update_status("recent", StudyStatus::Read, "dr.lan", 5_100)
        .unwrap();
    store
        .audit(&entry("dr.lan", "GetStudy", "study:read", 150))
        .unwrap();

    let purged = store.purge(1_000, false).unwrap();
    assert_eq!((purged.previews, purged.heatmaps), (1, 1), "{purged:?}");
    assert!(purged.events >= 3, "{purged:?}");
    assert_eq!((purged.images, purged.studies), (0, 0));
    // The old read study lost its overlays but keeps its result; the open
    // one and the recent one keep everything; the audit trail is intact.
    assert!(store.preview("r1").is_err());
    assert!(store.heatmap("r1", &FindingId::tuberculosis()).is_err());
    assert!(store.get_study("read").is_ok());
    assert!(store.preview("o1").is_ok() && store.preview("n1").is_ok());
    assert!(store.heatmap("o1", &FindingId::tuberculosis()).is_ok());
    assert_eq!(store.audit_after(0, 10).unwrap().len(), 1);

    // With results: the old read study goes; the open one stays.
    let purged = store.purge(1_000, true).unwrap();
    assert_eq!((purged.images, purged.studies), (1, 1), "{purged:?}");
    assert!(store.get_study("read").is_err());
    assert!(store.get_study("open").is_ok() && store.get_study("recent").is_ok());
}

fn only_the_source_that_filed_a_result_or_an_administrator_replaces_it(db: &Db) {
    let store = db.open();
    let filed = |source: Source, priority: Priority| {
        let mut r = record("1.9", "1.9.1", priority, 0.9, 10);
        r.source = source;
        store.put_image(&r)
    };
    filed(Source::named("C-STORE:MODALITY"), Priority::Critical).unwrap();
    // Another uploader re-sending the SOP Instance UID: refused, the
    // CRITICAL result stays.
    let err = filed(Source::named("user:someone"), Priority::Routine).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let (study, _) = store.get_study("1.9").unwrap();
    assert_eq!(study.assessment.priority, Priority::Critical);
    // The same source may correct it; an unknown source (resumed from the
    // spool) keeps the source; an administrator may replace anyone's.
    filed(Source::named("C-STORE:MODALITY"), Priority::Urgent).unwrap();
    filed(Source::default(), Priority::Urgent).unwrap();
    assert!(filed(Source::named("user:someone"), Priority::Routine).is_err());
    filed(
        Source {
            name: "user:it.admin".into(),
            may_replace_others: true,
        },
        Priority::Routine,
    )
    .unwrap();
    assert_eq!(
        store.get_study("1.9").unwrap().0.assessment.priority,
        Priority::Routine
    );
}

crate::on_both_backends!(
    the_worklist_is_ordered_by_priority_then_score_then_arrival,
    a_study_takes_its_worst_image_and_laterals_do_not_lower_it,
    a_resent_image_replaces_its_result_and_never_duplicates,
    status_changes_are_logged_and_filter_the_default_view,
    pages_cover_every_study_once_in_order_and_filters_apply,
    new_evidence_reopens_a_read_or_dismissed_study,
    retention_purges_overlays_and_events_of_read_studies_only,
    only_the_source_that_filed_a_result_or_an_administrator_replaces_it,
    results_survive_reopening_the_database,
    the_audit_trail_is_append_only_and_tampering_breaks_its_chain,
);
