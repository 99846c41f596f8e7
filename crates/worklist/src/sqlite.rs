//! The embedded SQLite worklist store.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::shared::{self, json_err, unread_name, ImageRow, StudyColumns, Value, STUDY_COLUMNS};
use super::{
    AuditEntry, AuditRecord, Event, EventKind, ImageIdentity, ImageRecord, ListQuery, Page, Purged,
    StoreError, Stored, StoredHeatmap, StoredImage, StoredReason, StoredResult, StudyStatus,
    StudySummary, WorklistStore,
};
use cxr_findings::priority::{Priority, PriorityAssessment};
use cxr_findings::NotAnalyzed;
use cxr_model::FindingId;

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: studies, images, heatmaps, events.
    "CREATE TABLE studies (
        study_uid TEXT PRIMARY KEY,
        accession TEXT NOT NULL,
        priority_rank INTEGER NOT NULL,
        top_score REAL NOT NULL,
        assessment TEXT NOT NULL,
        status TEXT NOT NULL,
        status_by TEXT NOT NULL DEFAULT '',
        status_at INTEGER NOT NULL DEFAULT 0,
        first_received INTEGER NOT NULL,
        last_received INTEGER NOT NULL,
        modalities TEXT NOT NULL,
        study_date TEXT NOT NULL,
        image_count INTEGER NOT NULL
    );
    CREATE INDEX studies_order ON studies (priority_rank DESC, top_score DESC, first_received, study_uid);
    CREATE TABLE images (
        sop_uid TEXT PRIMARY KEY,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        accession TEXT NOT NULL,
        modality TEXT NOT NULL,
        view_position TEXT NOT NULL,
        study_date TEXT NOT NULL,
        analyzable INTEGER NOT NULL,
        reason_code TEXT,
        reason_message TEXT,
        unread TEXT,
        assessment TEXT NOT NULL,
        result TEXT NOT NULL,
        received INTEGER NOT NULL,
        preview BLOB
    );
    CREATE INDEX images_study ON images (study_uid);
    CREATE TABLE heatmaps (
        sop_uid TEXT NOT NULL,
        finding TEXT NOT NULL,
        heatmap TEXT NOT NULL,
        PRIMARY KEY (sop_uid, finding)
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        at INTEGER NOT NULL
    );",
    // 2: a read or dismissed study reopened by new evidence, and why.
    "ALTER TABLE studies ADD COLUMN reopened_at INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE studies ADD COLUMN reopened_reason TEXT NOT NULL DEFAULT '';",
    // 3: the audit trail, append-only and hash-chained.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        who TEXT NOT NULL,
        roles TEXT NOT NULL,
        method TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        address TEXT NOT NULL,
        outcome TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 4: who filed each image, so that only they may replace its result.
    "ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT '';",
];

/// SQLite-backed [`WorklistStore`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        // WAL: readers never block the writer; FULL: a committed result
        // survives power loss, not only a killed process.
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db)?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::Database(format!(
                "the database is from a newer version (schema {version}, this build knows {})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            tx.execute_batch(sql).map_err(db)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Puts a read or dismissed study back on the worklist when `record` is
/// evidence its reader has not seen ([`shared::reopen_reason`]).
fn reopen_if_new_evidence(
    tx: &Transaction<'_>,
    record: &ImageRecord,
    status: &str,
    rank_before: i64,
) -> Result<(), StoreError> {
    let study_uid = &record.identity.study_instance_uid;
    let rank_after: i64 = tx
        .query_row(
            "SELECT priority_rank FROM studies WHERE study_uid = ?1",
            [study_uid],
            |r| r.get(0),
        )
        .map_err(db)?;
    if let Some(why) = shared::reopen_reason(record, status, rank_before, rank_after) {
        tx.execute(
            "UPDATE studies SET status = 'NEW', reopened_at = ?1, reopened_reason = ?2
             WHERE study_uid = ?3",
            params![record.received_ms, why, study_uid],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// Recomputes a study row from its images; deletes it if it has none.
fn recompute_study(tx: &Transaction<'_>, study_uid: &str) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare(
            "SELECT assessment, unread, received, modality, accession, study_date
             FROM images WHERE study_uid = ?1 ORDER BY received",
        )
        .map_err(db)?;
    let rows: Vec<ImageRow> = stmt
        .query_map([study_uid], |r| {
            Ok(ImageRow {
                assessment: r.get(0)?,
                unread: r.get(1)?,
                received: r.get(2)?,
                modality: r.get(3)?,
                accession: r.get(4)?,
                study_date: r.get(5)?,
            })
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let Some(row) = shared::summarise(&rows)? else {
        tx.execute("DELETE FROM studies WHERE study_uid = ?1", [study_uid])
            .map_err(db)?;
        return Ok(());
    };
    tx.execute(
        "INSERT INTO studies (study_uid, accession, priority_rank, top_score, assessment, status,
                              first_received, last_received, modalities, study_date, image_count)
         VALUES (?1, ?2, ?3, ?4, ?5, 'NEW', ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (study_uid) DO UPDATE SET
           accession = excluded.accession, priority_rank = excluded.priority_rank,
           top_score = excluded.top_score, assessment = excluded.assessment,
           first_received = excluded.first_received, last_received = excluded.last_received,
           modalities = excluded.modalities, study_date = excluded.study_date,
           image_count = excluded.image_count",
        params![
            study_uid,
            row.accession,
            row.rank,
            row.top_score,
            row.assessment,
            row.first_received,
            row.last_received,
            row.modalities,
            row.study_date,
            row.image_count,
        ],
    )
    .map_err(db)?;
    Ok(())
}

fn study_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StudyColumns> {
    Ok(StudyColumns {
        study_uid: r.get(0)?,
        accession: r.get(1)?,
        assessment: r.get(2)?,
        status: r.get(3)?,
        status_by: r.get(4)?,
        status_at: r.get(5)?,
        first_received: r.get(6)?,
        last_received: r.get(7)?,
        modalities: r.get(8)?,
        study_date: r.get(9)?,
        image_count: r.get(10)?,
        reopened_at: r.get(13)?,
        reopened_reason: r.get(14)?,
    })
}

fn load_study(conn: &Connection, study_uid: &str) -> Result<StudySummary, StoreError> {
    conn.query_row(
        &format!("SELECT {STUDY_COLUMNS} FROM studies WHERE study_uid = ?1"),
        [study_uid],
        study_from_row,
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| StoreError::NotFound(format!("study {study_uid}")))?
    .finish()
}

fn insert_event(
    tx: &Transaction<'_>,
    kind: EventKind,
    study_uid: &str,
    sop_uid: &str,
    at: i64,
) -> Result<u64, StoreError> {
    let kind = match kind {
        EventKind::ImageStored => "image_stored",
        EventKind::StatusChanged => "status_changed",
    };
    tx.execute(
        "INSERT INTO events (kind, study_uid, sop_uid, at) VALUES (?1, ?2, ?3, ?4)",
        params![kind, study_uid, sop_uid, at],
    )
    .map_err(db)?;
    Ok(tx.last_insert_rowid() as u64)
}

impl WorklistStore for SqliteStore {
    fn put_image(&self, record: &ImageRecord) -> Result<Stored, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let id = &record.identity;
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT study_uid, source FROM images WHERE sop_uid = ?1",
                [&id.sop_instance_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let source = shared::resolve_source(existing.as_ref().map(|(_, s)| s.as_str()), record)?;
        let previous = existing.map(|(study, _)| study);
        // The study as it was, to see whether this image reopens it.
        let before: Option<(String, i64)> = tx
            .query_row(
                "SELECT status, priority_rank FROM studies WHERE study_uid = ?1",
                [&id.study_instance_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let assessment = serde_json::to_string(&record.assessment).map_err(json_err)?;
        let result = serde_json::to_string(&record.result).map_err(json_err)?;
        tx.execute(
            "INSERT OR REPLACE INTO images (sop_uid, study_uid, series_uid, accession, modality,
                view_position, study_date, analyzable, reason_code, reason_message, unread,
                assessment, result, received, preview, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                id.sop_instance_uid,
                id.study_instance_uid,
                id.series_instance_uid,
                id.accession_number,
                id.modality,
                id.view_position,
                id.study_date,
                record.analyzable(),
                record.reason.as_ref().map(NotAnalyzed::code),
                record.reason.as_ref().map(ToString::to_string),
                unread_name(record.unread()),
                assessment,
                result,
                record.received_ms,
                record.preview_png,
                source,
            ],
        )
        .map_err(db)?;
        tx.execute(
            "DELETE FROM heatmaps WHERE sop_uid = ?1",
            [&id.sop_instance_uid],
        )
        .map_err(db)?;
        for h in &record.heatmaps {
            tx.execute(
                "INSERT INTO heatmaps (sop_uid, finding, heatmap) VALUES (?1, ?2, ?3)",
                params![
                    id.sop_instance_uid,
                    h.finding.as_str(),
                    serde_json::to_string(h).map_err(json_err)?
                ],
            )
            .map_err(db)?;
        }
        if let Some(old) = previous.as_deref().filter(|o| *o != id.study_instance_uid) {
            recompute_study(&tx, old)?;
        }
        recompute_study(&tx, &id.study_instance_uid)?;
        if let Some((status, rank_before)) = before {
            reopen_if_new_evidence(&tx, record, &status, rank_before)?;
        }
        let sequence = insert_event(
            &tx,
            EventKind::ImageStored,
            &id.study_instance_uid,
            &id.sop_instance_uid,
            record.received_ms,
        )?;
        tx.commit().map_err(db)?;
        let study = load_study(&conn, &id.study_instance_uid)?;
        Ok(Stored {
            sequence,
            study,
            replaced: previous.is_some(),
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let sql = shared::list_sql(query, '?')?;
        let values: Vec<rusqlite::types::Value> = sql
            .values
            .into_iter()
            .map(|v| match v {
                Value::Int(i) => i.into(),
                Value::Real(f) => f.into(),
                Value::Text(t) => t.into(),
            })
            .collect();
        let conn = self.lock();
        let total: i64 = conn
            .query_row(
                &sql.count,
                rusqlite::params_from_iter(values[..sql.count_values].iter()),
                |r| r.get(0),
            )
            .map_err(db)?;
        let mut stmt = conn.prepare(&sql.page).map_err(db)?;
        let rows: Vec<StudyColumns> = stmt
            .query_map(rusqlite::params_from_iter(values.iter()), study_from_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        shared::page(rows, sql.size, total)
    }

    fn get_study(&self, study_uid: &str) -> Result<(StudySummary, Vec<StoredImage>), StoreError> {
        let conn = self.lock();
        let study = load_study(&conn, study_uid)?;
        let mut stmt = conn
            .prepare(
                "SELECT sop_uid, study_uid, series_uid, accession, modality, view_position,
                        study_date, analyzable, reason_code, reason_message, assessment, result, received
                 FROM images WHERE study_uid = ?1 ORDER BY received, sop_uid",
            )
            .map_err(db)?;
        let rows: Vec<(StoredImage, (String, String))> = stmt
            .query_map([study_uid], |r| {
                let code: Option<String> = r.get(8)?;
                let message: Option<String> = r.get(9)?;
                Ok((
                    StoredImage {
                        identity: ImageIdentity {
                            sop_instance_uid: r.get(0)?,
                            study_instance_uid: r.get(1)?,
                            series_instance_uid: r.get(2)?,
                            accession_number: r.get(3)?,
                            modality: r.get(4)?,
                            view_position: r.get(5)?,
                            study_date: r.get(6)?,
                        },
                        analyzable: r.get(7)?,
                        reason: code.map(|code| StoredReason {
                            code,
                            message: message.unwrap_or_default(),
                        }),
                        assessment: PriorityAssessment {
                            priority: Priority::Routine,
                            reasons: Vec::new(),
                            top_score: 0.0,
                        },
                        result: StoredResult::default(),
                        received_ms: r.get(12)?,
                    },
                    (r.get::<_, String>(10)?, r.get::<_, String>(11)?),
                ))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let images = rows
            .into_iter()
            .map(|(mut image, (assessment, result))| {
                image.assessment = serde_json::from_str(&assessment).map_err(json_err)?;
                image.result = serde_json::from_str(&result).map_err(json_err)?;
                Ok(image)
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((study, images))
    }

    fn update_status(
        &self,
        study_uid: &str,
        status: StudyStatus,
        by: &str,
        at_ms: i64,
    ) -> Result<(StudySummary, u64), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let changed = tx
            .execute(
                // Reading (or dismissing) a reopened study again clears the
                // marker; claiming it keeps the marker visible.
                "UPDATE studies SET status = ?1, status_by = ?2, status_at = ?3,
                    reopened_at = CASE WHEN ?1 IN ('READ', 'DISMISSED') THEN 0 ELSE reopened_at END,
                    reopened_reason = CASE WHEN ?1 IN ('READ', 'DISMISSED') THEN '' ELSE reopened_reason END
                 WHERE study_uid = ?4",
                params![status.as_str(), by, at_ms, study_uid],
            )
            .map_err(db)?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("study {study_uid}")));
        }
        let sequence = insert_event(&tx, EventKind::StatusChanged, study_uid, "", at_ms)?;
        tx.commit().map_err(db)?;
        Ok((load_study(&conn, study_uid)?, sequence))
    }

    fn last_sequence(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        let last: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(db)?;
        Ok(last as u64)
    }

    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let (last, prev): (i64, String) = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?
            .unwrap_or((0, "0".repeat(64)));
        let sequence = last as u64 + 1;
        let hash = AuditRecord::chain_hash(&prev, sequence, entry);
        tx.execute(
            "INSERT INTO audit (seq, at, who, roles, method, action, object, address, outcome,
                                prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                sequence as i64,
                entry.at_ms,
                entry.who,
                entry.roles,
                entry.method,
                entry.action,
                entry.object,
                entry.address,
                entry.outcome,
                prev,
                hash
            ],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(sequence)
    }

    fn audit_after(&self, sequence: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, who, roles, method, action, object, address, outcome, prev_hash, hash
                 FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db)?;
        let records = stmt
            .query_map(params![sequence.min(i64::MAX as u64) as i64, limit], |r| {
                Ok(AuditRecord {
                    sequence: r.get::<_, i64>(0)? as u64,
                    entry: AuditEntry {
                        at_ms: r.get(1)?,
                        who: r.get(2)?,
                        roles: r.get(3)?,
                        method: r.get(4)?,
                        action: r.get(5)?,
                        object: r.get(6)?,
                        address: r.get(7)?,
                        outcome: r.get(8)?,
                    },
                    prev_hash: r.get(9)?,
                    hash: r.get(10)?,
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(records)
    }

    fn heatmap(&self, sop_uid: &str, finding: &FindingId) -> Result<StoredHeatmap, StoreError> {
        let conn = self.lock();
        let text: String = conn
            .query_row(
                "SELECT heatmap FROM heatmaps WHERE sop_uid = ?1 AND finding = ?2",
                params![sop_uid, finding.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| {
                StoreError::NotFound(format!("heatmap of {finding} for image {sop_uid}"))
            })?;
        serde_json::from_str(&text).map_err(json_err)
    }

    fn preview(&self, sop_uid: &str) -> Result<Vec<u8>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT preview FROM images WHERE sop_uid = ?1",
            [sop_uid],
            |r| r.get::<_, Option<Vec<u8>>>(0),
        )
        .optional()
        .map_err(db)?
        .flatten()
        .ok_or_else(|| StoreError::NotFound(format!("preview of image {sop_uid}")))
    }

    fn events_after(&self, sequence: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT seq, kind, study_uid, sop_uid, at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(db)?;
        let events = stmt
            .query_map(params![sequence as i64, limit], |r| {
                let kind: String = r.get(1)?;
                Ok(Event {
                    sequence: r.get::<_, i64>(0)? as u64,
                    kind: if kind == "status_changed" {
                        EventKind::StatusChanged
                    } else {
                        EventKind::ImageStored
                    },
                    study_instance_uid: r.get(2)?,
                    sop_instance_uid: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(events)
    }

    fn purge(&self, cutoff_ms: i64, results: bool) -> Result<Purged, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut purged = Purged::default();
        if results {
            // Closed studies whose every image is older than the cutoff.
            let closed = shared::closed_before('?');
            purged.heatmaps += tx
                .execute(
                    &format!(
                        "DELETE FROM heatmaps WHERE sop_uid IN
                         (SELECT sop_uid FROM images WHERE study_uid IN ({closed}))"
                    ),
                    [cutoff_ms],
                )
                .map_err(db)? as u64;
            purged.images = tx
                .execute(
                    &format!("DELETE FROM images WHERE study_uid IN ({closed})"),
                    [cutoff_ms],
                )
                .map_err(db)? as u64;
            purged.studies = tx
                .execute(
                    "DELETE FROM studies
                     WHERE status IN ('READ', 'DISMISSED') AND last_received < ?1",
                    [cutoff_ms],
                )
                .map_err(db)? as u64;
        }
        // Overlays of images in studies that are read or dismissed: an open
        // study keeps everything its reader may need.
        let old_closed = shared::old_closed_images('?');
        purged.heatmaps += tx
            .execute(
                &format!("DELETE FROM heatmaps WHERE sop_uid IN ({old_closed})"),
                [cutoff_ms],
            )
            .map_err(db)? as u64;
        purged.previews = tx
            .execute(
                &format!(
                    "UPDATE images SET preview = NULL
                     WHERE preview IS NOT NULL AND sop_uid IN ({old_closed})"
                ),
                [cutoff_ms],
            )
            .map_err(db)? as u64;
        purged.events = tx
            .execute("DELETE FROM events WHERE at < ?1", [cutoff_ms])
            .map_err(db)? as u64;
        tx.commit().map_err(db)?;
        Ok(purged)
    }

    fn open_counts(&self) -> Result<Vec<(Priority, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT priority_rank, COUNT(*) FROM studies
                 WHERE status IN ('NEW','CLAIMED','READING') GROUP BY priority_rank",
            )
            .map_err(db)?;
        let counts = stmt
            .query_map([], |r| {
                Ok((shared::priority_of(r.get(0)?), r.get::<_, i64>(1)? as u64))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(counts)
    }
}
