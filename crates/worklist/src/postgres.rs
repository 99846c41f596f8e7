//! The PostgreSQL worklist store, for several replicas sharing one
//! worklist.
//!
//! Every write transaction takes one transaction-scoped advisory lock
//! first, so writes are applied one at a time as in SQLite: a study's
//! summary always counts every image committed before it, event sequence
//! numbers become visible in order (a watcher reading "after N" never
//! misses an event committed later with a smaller number), and the audit
//! trail's hash chain has one tail. A write is a few milliseconds; a
//! hospital's or a screening programme's rate is far below what one lock
//! allows. Each committed event is announced with `NOTIFY cxr_worklist`, so
//! watchers on every replica see it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Transaction};

use super::shared::{self, json_err, unread_name, ImageRow, StudyColumns, Value, STUDY_COLUMNS};
use super::{
    AuditEntry, AuditRecord, Event, EventKind, ImageIdentity, ImageRecord, ListQuery, Page, Purged,
    StoreError, Stored, StoredHeatmap, StoredImage, StoredReason, StoredResult, StudyStatus,
    StudySummary, WorklistStore,
};
use cxr_findings::priority::{Priority, PriorityAssessment};
use cxr_findings::NotAnalyzed;
use cxr_model::FindingId;

/// The advisory lock every write transaction holds (an arbitrary constant:
/// "cxr" in ASCII).
const WRITE_LOCK: i64 = 0x0063_7872;

/// The channel events are announced on.
const CHANNEL: &str = "cxr_worklist";

/// Schema migrations, applied in order; `cxr_schema.version` records how
/// many have run. Append only. The same tables as the SQLite store.
const MIGRATIONS: &[&str] = &[
    // 1: the whole schema of SQLite's migrations 1–4.
    "CREATE TABLE studies (
        study_uid TEXT PRIMARY KEY,
        accession TEXT NOT NULL,
        priority_rank BIGINT NOT NULL,
        top_score DOUBLE PRECISION NOT NULL,
        assessment TEXT NOT NULL,
        status TEXT NOT NULL,
        status_by TEXT NOT NULL DEFAULT '',
        status_at BIGINT NOT NULL DEFAULT 0,
        first_received BIGINT NOT NULL,
        last_received BIGINT NOT NULL,
        modalities TEXT NOT NULL,
        study_date TEXT NOT NULL,
        image_count BIGINT NOT NULL,
        reopened_at BIGINT NOT NULL DEFAULT 0,
        reopened_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX studies_order ON studies
        (priority_rank DESC, top_score DESC, first_received, study_uid);
    CREATE TABLE images (
        sop_uid TEXT PRIMARY KEY,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        accession TEXT NOT NULL,
        modality TEXT NOT NULL,
        view_position TEXT NOT NULL,
        study_date TEXT NOT NULL,
        analyzable BOOLEAN NOT NULL,
        reason_code TEXT,
        reason_message TEXT,
        unread TEXT,
        assessment TEXT NOT NULL,
        result TEXT NOT NULL,
        received BIGINT NOT NULL,
        preview BYTEA,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX images_study ON images (study_uid);
    CREATE TABLE heatmaps (
        sop_uid TEXT NOT NULL,
        finding TEXT NOT NULL,
        heatmap TEXT NOT NULL,
        PRIMARY KEY (sop_uid, finding)
    );
    -- Sequence numbers come from a counter row updated in the writing
    -- transaction: a rolled-back write leaves no gap (a SEQUENCE would),
    -- and a purge of old events never lets numbers be reused.
    CREATE TABLE event_counter (
        id INT PRIMARY KEY CHECK (id = 1),
        last BIGINT NOT NULL
    );
    INSERT INTO event_counter VALUES (1, 0);
    CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX events_at ON events (at);
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
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
    CREATE FUNCTION cxr_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION cxr_audit_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION cxr_audit_append_only();",
];

fn db(e: postgres::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// PostgreSQL text cannot hold NUL; DICOM strings and callers' text can.
fn text(s: &str) -> String {
    s.replace('\0', "")
}

/// A small pool of connections, each opened on first use and again after
/// it broke (the database restarted, a connection was cut).
struct Pool {
    url: String,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

struct Conn<'a> {
    slot: MutexGuard<'a, Option<Client>>,
}

impl Conn<'_> {
    fn client(&mut self) -> &mut Client {
        self.slot.as_mut().expect("connected")
    }
}

impl Drop for Pool {
    /// The synchronous client closes its connection by blocking on its own
    /// runtime, which panics on a thread that drives an async runtime (the
    /// service drops the store on one): close them on a thread of their own.
    fn drop(&mut self) {
        let clients: Vec<Client> = self
            .slots
            .iter_mut()
            .filter_map(|slot| slot.get_mut().ok().and_then(Option::take))
            .collect();
        if !clients.is_empty() {
            let _ = std::thread::spawn(move || drop(clients)).join();
        }
    }
}

impl Pool {
    fn get(&self) -> Result<Conn<'_>, StoreError> {
        // A free slot if there is one, else wait on the next in turn.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let mut slot = (0..n)
            .find_map(|i| self.slots[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.slots[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect(&self.url)?);
        }
        Ok(Conn { slot })
    }
}

fn connect(url: &str) -> Result<Client, StoreError> {
    connect_postgres(url).map_err(StoreError::Database)
}

/// Connects to the PostgreSQL database at `url`, the `worklist.url` of
/// the service: a `postgres://` URL or libpq's `key=value` form. TLS as
/// libpq spells it: `sslmode=require` (or `verify-ca`, `verify-full`)
/// with `sslrootcert=FILE`, the PEM CA that signed the server's
/// certificate; the certificate chain and the host name are always
/// verified (rustls). `sslmode=require` without `sslrootcert` is refused
/// rather than trusting any certificate; without `sslmode`, a URL with
/// `sslrootcert` uses TLS when the server offers it (`prefer`).
pub fn connect_postgres(url: &str) -> Result<Client, String> {
    let (url, ca) = split_tls_options(url);
    let mut config: postgres::Config = url.parse().map_err(|e| format!("worklist.url: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("cxr-triage");
    let connected = match ca {
        Some(ca) => config.connect(tls_connector(&ca)?),
        None if config.get_ssl_mode() == postgres::config::SslMode::Require => {
            return Err(
                "worklist.url: sslmode=require needs sslrootcert=FILE, the CA that \
                        signed the PostgreSQL server's certificate"
                    .into(),
            )
        }
        None => config.connect(NoTls),
    };
    connected.map_err(|e| {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why.push_str(": ");
            why.push_str(&s.to_string());
            source = s.source();
        }
        format!("connecting to PostgreSQL: {why}")
    })
}

/// `url` without `sslrootcert` (which the client library does not know),
/// with `sslmode=verify-ca|verify-full` as `require` (this client always
/// verifies), and the CA file named.
fn split_tls_options(url: &str) -> (String, Option<std::path::PathBuf>) {
    let mut ca = None;
    let mut keep = |key: &str, value: &str| -> Option<String> {
        match key {
            "sslrootcert" => {
                ca = Some(std::path::PathBuf::from(percent_decode(value)));
                None
            }
            "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                Some(format!("{key}=require"))
            }
            _ => Some(format!("{key}={value}")),
        }
    };
    let cleaned = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let params: Vec<String> = query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        keep(k, v)
                    })
                    .collect();
                if params.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", params.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        url.split_whitespace()
            .filter_map(|p| match p.split_once('=') {
                Some((k, v)) => keep(k, v),
                None => Some(p.to_string()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (cleaned, ca)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rustls (ring) trusting only the CA in `ca` (PEM).
fn tls_connector(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use tokio_rustls::rustls;
    let what =
        |e: &dyn std::fmt::Display| format!("worklist.url sslrootcert {}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| what(&e))? {
        roots
            .add(cert.map_err(|e| what(&e))?)
            .map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| what(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// PostgreSQL-backed [`WorklistStore`], shared by any number of replicas.
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or
    /// libpq's `key=value` form) and brings the schema up to date; at most
    /// `connections` connections are open at once.
    pub fn open(url: &str, connections: usize) -> Result<PostgresStore, StoreError> {
        let store = PostgresStore {
            pool: Pool {
                url: url.to_string(),
                slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
            },
        };
        let mut conn = store.pool.get()?;
        migrate(conn.client())?;
        drop(conn);
        Ok(store)
    }

    /// Runs `f` in one write transaction under the write lock.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client().transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(db)?;
        let value = f(&mut tx)?;
        tx.commit().map_err(db)?;
        Ok(value)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        f(conn.client())
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(db)?;
    // Two replicas starting at once: one migrates, the other waits.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cxr_schema (version BIGINT NOT NULL)")
        .map_err(db)?;
    let version: i64 = match tx
        .query_opt("SELECT version FROM cxr_schema", &[])
        .map_err(db)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO cxr_schema (version) VALUES (0)", &[])
                .map_err(db)?;
            0
        }
    };
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database is from a newer version (schema {version}, this build knows {})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).map_err(db)?;
        tx.execute("UPDATE cxr_schema SET version = $1", &[&(i as i64 + 1)])
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

fn study_columns(r: &Row) -> StudyColumns {
    StudyColumns {
        study_uid: r.get(0),
        accession: r.get(1),
        assessment: r.get(2),
        status: r.get(3),
        status_by: r.get(4),
        status_at: r.get(5),
        first_received: r.get(6),
        last_received: r.get(7),
        modalities: r.get(8),
        study_date: r.get(9),
        image_count: r.get(10),
        reopened_at: r.get(13),
        reopened_reason: r.get(14),
    }
}

fn load_study(
    client: &mut impl postgres::GenericClient,
    study_uid: &str,
) -> Result<StudySummary, StoreError> {
    client
        .query_opt(
            &format!("SELECT {STUDY_COLUMNS} FROM studies WHERE study_uid = $1"),
            &[&study_uid],
        )
        .map_err(db)?
        .map(|r| study_columns(&r))
        .ok_or_else(|| StoreError::NotFound(format!("study {study_uid}")))?
        .finish()
}

/// Recomputes a study row from its images; deletes it if it has none.
fn recompute_study(tx: &mut Transaction<'_>, study_uid: &str) -> Result<(), StoreError> {
    let rows: Vec<ImageRow> = tx
        .query(
            "SELECT assessment, unread, received, modality, accession, study_date
             FROM images WHERE study_uid = $1 ORDER BY received",
            &[&study_uid],
        )
        .map_err(db)?
        .iter()
        .map(|r| ImageRow {
            assessment: r.get(0),
            unread: r.get(1),
            received: r.get(2),
            modality: r.get(3),
            accession: r.get(4),
            study_date: r.get(5),
        })
        .collect();
    let Some(row) = shared::summarise(&rows)? else {
        tx.execute("DELETE FROM studies WHERE study_uid = $1", &[&study_uid])
            .map_err(db)?;
        return Ok(());
    };
    tx.execute(
        "INSERT INTO studies (study_uid, accession, priority_rank, top_score, assessment, status,
                              first_received, last_received, modalities, study_date, image_count)
         VALUES ($1, $2, $3, $4, $5, 'NEW', $6, $7, $8, $9, $10)
         ON CONFLICT (study_uid) DO UPDATE SET
           accession = excluded.accession, priority_rank = excluded.priority_rank,
           top_score = excluded.top_score, assessment = excluded.assessment,
           first_received = excluded.first_received, last_received = excluded.last_received,
           modalities = excluded.modalities, study_date = excluded.study_date,
           image_count = excluded.image_count",
        &[
            &study_uid,
            &row.accession,
            &row.rank,
            &row.top_score,
            &row.assessment,
            &row.first_received,
            &row.last_received,
            &row.modalities,
            &row.study_date,
            &row.image_count,
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Logs an event and announces it on [`CHANNEL`] (delivered at commit).
fn insert_event(
    tx: &mut Transaction<'_>,
    kind: EventKind,
    study_uid: &str,
    sop_uid: &str,
    at: i64,
) -> Result<u64, StoreError> {
    let kind = match kind {
        EventKind::ImageStored => "image_stored",
        EventKind::StatusChanged => "status_changed",
    };
    let seq: i64 = tx
        .query_one(
            "WITH next AS (UPDATE event_counter SET last = last + 1 RETURNING last)
             INSERT INTO events (seq, kind, study_uid, sop_uid, at)
             SELECT last, $1, $2, $3, $4 FROM next
             RETURNING seq",
            &[&kind, &study_uid, &sop_uid, &at],
        )
        .map_err(db)?
        .get(0);
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
        .map_err(db)?;
    Ok(seq as u64)
}

impl WorklistStore for PostgresStore {
    fn put_image(&self, record: &ImageRecord) -> Result<Stored, StoreError> {
        let id = &record.identity;
        let sop = text(&id.sop_instance_uid);
        let study_uid = text(&id.study_instance_uid);
        let (sequence, previous) = self.write(|tx| {
            let existing: Option<(String, String)> = tx
                .query_opt(
                    "SELECT study_uid, source FROM images WHERE sop_uid = $1",
                    &[&sop],
                )
                .map_err(db)?
                .map(|r| (r.get(0), r.get(1)));
            let source =
                shared::resolve_source(existing.as_ref().map(|(_, s)| s.as_str()), record)?;
            let previous = existing.map(|(study, _)| study);
            let before: Option<(String, i64)> = tx
                .query_opt(
                    "SELECT status, priority_rank FROM studies WHERE study_uid = $1",
                    &[&study_uid],
                )
                .map_err(db)?
                .map(|r| (r.get(0), r.get(1)));
            let assessment = serde_json::to_string(&record.assessment).map_err(json_err)?;
            let result = serde_json::to_string(&record.result).map_err(json_err)?;
            tx.execute(
                "INSERT INTO images (sop_uid, study_uid, series_uid, accession, modality,
                    view_position, study_date, analyzable, reason_code, reason_message, unread,
                    assessment, result, received, preview, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (sop_uid) DO UPDATE SET
                    study_uid = excluded.study_uid, series_uid = excluded.series_uid,
                    accession = excluded.accession, modality = excluded.modality,
                    view_position = excluded.view_position, study_date = excluded.study_date,
                    analyzable = excluded.analyzable, reason_code = excluded.reason_code,
                    reason_message = excluded.reason_message, unread = excluded.unread,
                    assessment = excluded.assessment, result = excluded.result,
                    received = excluded.received, preview = excluded.preview,
                    source = excluded.source",
                &[
                    &sop,
                    &study_uid,
                    &text(&id.series_instance_uid),
                    &text(&id.accession_number),
                    &text(&id.modality),
                    &text(&id.view_position),
                    &text(&id.study_date),
                    &record.analyzable(),
                    &record.reason.as_ref().map(NotAnalyzed::code),
                    &record.reason.as_ref().map(|r| text(&r.to_string())),
                    &unread_name(record.unread()),
                    &text(&assessment),
                    &text(&result),
                    &record.received_ms,
                    &record.preview_png,
                    &text(&source),
                ],
            )
            .map_err(db)?;
            tx.execute("DELETE FROM heatmaps WHERE sop_uid = $1", &[&sop])
                .map_err(db)?;
            for h in &record.heatmaps {
                let json = serde_json::to_string(h).map_err(json_err)?;
                tx.execute(
                    "INSERT INTO heatmaps (sop_uid, finding, heatmap) VALUES ($1, $2, $3)",
                    &[&sop, &h.finding.as_str(), &text(&json)],
                )
                .map_err(db)?;
            }
            if let Some(old) = previous.as_deref().filter(|o| *o != study_uid) {
                recompute_study(tx, old)?;
            }
            recompute_study(tx, &study_uid)?;
            if let Some((status, rank_before)) = before {
                let rank_after: i64 = tx
                    .query_one(
                        "SELECT priority_rank FROM studies WHERE study_uid = $1",
                        &[&study_uid],
                    )
                    .map_err(db)?
                    .get(0);
                if let Some(why) = shared::reopen_reason(record, &status, rank_before, rank_after) {
                    tx.execute(
                        "UPDATE studies SET status = 'NEW', reopened_at = $1, reopened_reason = $2
                         WHERE study_uid = $3",
                        &[&record.received_ms, &why, &study_uid],
                    )
                    .map_err(db)?;
                }
            }
            let sequence = insert_event(
                tx,
                EventKind::ImageStored,
                &study_uid,
                &sop,
                record.received_ms,
            )?;
            Ok((sequence, previous))
        })?;
        let study = self.read(|c| load_study(c, &study_uid))?;
        Ok(Stored {
            sequence,
            study,
            replaced: previous.is_some(),
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let sql = shared::list_sql(query, '$')?;
        let values: Vec<Box<dyn ToSql + Sync>> = sql
            .values
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync> {
                match v {
                    Value::Int(i) => Box::new(i),
                    Value::Real(f) => Box::new(f),
                    Value::Text(t) => Box::new(text(&t)),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        self.read(|c| {
            let total: i64 = c
                .query_one(&sql.count, &refs[..sql.count_values])
                .map_err(db)?
                .get(0);
            let rows: Vec<StudyColumns> = c
                .query(&sql.page, &refs)
                .map_err(db)?
                .iter()
                .map(study_columns)
                .collect();
            shared::page(rows, sql.size, total)
        })
    }

    fn get_study(&self, study_uid: &str) -> Result<(StudySummary, Vec<StoredImage>), StoreError> {
        let study_uid = text(study_uid);
        self.read(|c| {
            // One snapshot for the study and its images.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db)?;
            let study = load_study(&mut tx, &study_uid)?;
            let rows = tx
                .query(
                    "SELECT sop_uid, study_uid, series_uid, accession, modality, view_position,
                            study_date, analyzable, reason_code, reason_message, assessment,
                            result, received
                     FROM images WHERE study_uid = $1 ORDER BY received, sop_uid",
                    &[&study_uid],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            let images = rows
                .iter()
                .map(|r| {
                    let code: Option<String> = r.get(8);
                    let message: Option<String> = r.get(9);
                    Ok(StoredImage {
                        identity: ImageIdentity {
                            sop_instance_uid: r.get(0),
                            study_instance_uid: r.get(1),
                            series_instance_uid: r.get(2),
                            accession_number: r.get(3),
                            modality: r.get(4),
                            view_position: r.get(5),
                            study_date: r.get(6),
                        },
                        analyzable: r.get(7),
                        reason: code.map(|code| StoredReason {
                            code,
                            message: message.unwrap_or_default(),
                        }),
                        assessment: serde_json::from_str::<PriorityAssessment>(r.get(10))
                            .map_err(json_err)?,
                        result: serde_json::from_str::<StoredResult>(r.get(11))
                            .map_err(json_err)?,
                        received_ms: r.get(12),
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok((study, images))
        })
    }

    fn update_status(
        &self,
        study_uid: &str,
        status: StudyStatus,
        by: &str,
        at_ms: i64,
    ) -> Result<(StudySummary, u64), StoreError> {
        let study_uid = text(study_uid);
        let by = text(by);
        self.write(|tx| {
            let changed = tx
                .execute(
                    // Reading (or dismissing) a reopened study again clears
                    // the marker; claiming it keeps the marker visible.
                    "UPDATE studies SET status = $1, status_by = $2, status_at = $3,
                        reopened_at = CASE WHEN $1 IN ('READ', 'DISMISSED') THEN 0
                                           ELSE reopened_at END,
                        reopened_reason = CASE WHEN $1 IN ('READ', 'DISMISSED') THEN ''
                                               ELSE reopened_reason END
                     WHERE study_uid = $4",
                    &[&status.as_str(), &by, &at_ms, &study_uid],
                )
                .map_err(db)?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("study {study_uid}")));
            }
            let sequence = insert_event(tx, EventKind::StatusChanged, &study_uid, "", at_ms)?;
            Ok((load_study(tx, &study_uid)?, sequence))
        })
    }

    fn heatmap(&self, sop_uid: &str, finding: &FindingId) -> Result<StoredHeatmap, StoreError> {
        let json: String = self
            .read(|c| {
                c.query_opt(
                    "SELECT heatmap FROM heatmaps WHERE sop_uid = $1 AND finding = $2",
                    &[&text(sop_uid), &finding.as_str()],
                )
                .map_err(db)
            })?
            .map(|r| r.get(0))
            .ok_or_else(|| {
                StoreError::NotFound(format!("heatmap of {finding} for image {sop_uid}"))
            })?;
        serde_json::from_str(&json).map_err(json_err)
    }

    fn preview(&self, sop_uid: &str) -> Result<Vec<u8>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT preview FROM images WHERE sop_uid = $1",
                &[&text(sop_uid)],
            )
            .map_err(db)
        })?
        .and_then(|r| r.get::<_, Option<Vec<u8>>>(0))
        .ok_or_else(|| StoreError::NotFound(format!("preview of image {sop_uid}")))
    }

    fn events_after(&self, sequence: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let from = sequence.min(i64::MAX as u64) as i64;
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, kind, study_uid, sop_uid, at FROM events WHERE seq > $1
                 ORDER BY seq LIMIT $2",
                &[&from, &i64::from(limit)],
            )
            .map_err(db)
        })?;
        Ok(rows
            .iter()
            .map(|r| Event {
                sequence: r.get::<_, i64>(0) as u64,
                kind: if r.get::<_, &str>(1) == "status_changed" {
                    EventKind::StatusChanged
                } else {
                    EventKind::ImageStored
                },
                study_instance_uid: r.get(2),
                sop_instance_uid: r.get(3),
                at_ms: r.get(4),
            })
            .collect())
    }

    fn last_sequence(&self) -> Result<u64, StoreError> {
        let last: i64 = self.read(|c| {
            Ok(c.query_one("SELECT last FROM event_counter", &[])
                .map_err(db)?
                .get(0))
        })?;
        Ok(last as u64)
    }

    fn open_counts(&self) -> Result<Vec<(Priority, u64)>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT priority_rank, COUNT(*) FROM studies
                 WHERE status IN ('NEW','CLAIMED','READING') GROUP BY priority_rank",
                &[],
            )
            .map_err(db)
        })?;
        Ok(rows
            .iter()
            .map(|r| (shared::priority_of(r.get(0)), r.get::<_, i64>(1) as u64))
            .collect())
    }

    fn purge(&self, cutoff_ms: i64, results: bool) -> Result<Purged, StoreError> {
        self.write(|tx| {
            let mut purged = Purged::default();
            if results {
                let closed = shared::closed_before('$');
                purged.heatmaps += tx
                    .execute(
                        &format!(
                            "DELETE FROM heatmaps WHERE sop_uid IN
                             (SELECT sop_uid FROM images WHERE study_uid IN ({closed}))"
                        ),
                        &[&cutoff_ms],
                    )
                    .map_err(db)?;
                purged.images = tx
                    .execute(
                        &format!("DELETE FROM images WHERE study_uid IN ({closed})"),
                        &[&cutoff_ms],
                    )
                    .map_err(db)?;
                purged.studies = tx
                    .execute(
                        "DELETE FROM studies
                         WHERE status IN ('READ', 'DISMISSED') AND last_received < $1",
                        &[&cutoff_ms],
                    )
                    .map_err(db)?;
            }
            let old_closed = shared::old_closed_images('$');
            purged.heatmaps += tx
                .execute(
                    &format!("DELETE FROM heatmaps WHERE sop_uid IN ({old_closed})"),
                    &[&cutoff_ms],
                )
                .map_err(db)?;
            purged.previews = tx
                .execute(
                    &format!(
                        "UPDATE images SET preview = NULL
                         WHERE preview IS NOT NULL AND sop_uid IN ({old_closed})"
                    ),
                    &[&cutoff_ms],
                )
                .map_err(db)?;
            purged.events = tx
                .execute("DELETE FROM events WHERE at < $1", &[&cutoff_ms])
                .map_err(db)?;
            Ok(purged)
        })
    }

    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        // Stored as hashed: without the NULs PostgreSQL cannot hold.
        let entry = AuditEntry {
            at_ms: entry.at_ms,
            who: text(&entry.who),
            roles: text(&entry.roles),
            method: text(&entry.method),
            action: text(&entry.action),
            object: text(&entry.object),
            address: text(&entry.address),
            outcome: text(&entry.outcome),
        };
        self.write(|tx| {
            let (last, prev): (i64, String) = tx
                .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                .map_err(db)?
                .map(|r| (r.get(0), r.get(1)))
                .unwrap_or((0, "0".repeat(64)));
            let sequence = last as u64 + 1;
            let hash = AuditRecord::chain_hash(&prev, sequence, &entry);
            tx.execute(
                "INSERT INTO audit (seq, at, who, roles, method, action, object, address, outcome,
                                    prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &(sequence as i64),
                    &entry.at_ms,
                    &entry.who,
                    &entry.roles,
                    &entry.method,
                    &entry.action,
                    &entry.object,
                    &entry.address,
                    &entry.outcome,
                    &prev,
                    &hash,
                ],
            )
            .map_err(db)?;
            Ok(sequence)
        })
    }

    fn audit_after(&self, sequence: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let from = sequence.min(i64::MAX as u64) as i64;
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, at, who, roles, method, action, object, address, outcome,
                        prev_hash, hash
                 FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&from, &i64::from(limit)],
            )
            .map_err(db)
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                sequence: r.get::<_, i64>(0) as u64,
                entry: AuditEntry {
                    at_ms: r.get(1),
                    who: r.get(2),
                    roles: r.get(3),
                    method: r.get(4),
                    action: r.get(5),
                    object: r.get(6),
                    address: r.get(7),
                    outcome: r.get(8),
                },
                prev_hash: r.get(9),
                hash: r.get(10),
            })
            .collect())
    }

    fn watch_commits(&self, wake: Arc<dyn Fn(u64) -> bool + Send + Sync>) -> bool {
        let url = self.pool.url.clone();
        std::thread::Builder::new()
            .name("worklist-listen".into())
            .spawn(move || listen(&url, wake.as_ref()))
            .is_ok()
    }
}

/// Listens on [`CHANNEL`] and calls `wake` with each announced sequence,
/// and with 0 after a reconnection (announcements may have been missed)
/// and every 5 s of quiet, until `wake` returns false.
fn listen(url: &str, wake: &(dyn Fn(u64) -> bool + Send + Sync)) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut client = match connect(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "worklist change feed: cannot connect; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "worklist change feed: LISTEN failed; retrying");
            std::thread::sleep(backoff);
            continue;
        }
        backoff = Duration::from_millis(200);
        // Whatever was committed while this connection was down.
        if !wake(0) {
            return;
        }
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_secs(5));
        loop {
            match postgres::fallible_iterator::FallibleIterator::next(&mut iter) {
                Ok(Some(n)) => {
                    if !wake(n.payload().parse().unwrap_or(0)) {
                        return;
                    }
                }
                // Quiet for a while: still wanted?
                Ok(None) => {
                    if !wake(0) {
                        return;
                    }
                    drop(iter);
                    // `timeout_iter` ends at its first timeout.
                    iter = notifications.timeout_iter(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "worklist change feed: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
