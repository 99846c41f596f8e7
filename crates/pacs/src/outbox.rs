//! The durable outbox: result objects waiting to be sent to the PACS.
//!
//! Each object is a file in `outbox/` plus a row in `pacs.sqlite` (WAL,
//! `synchronous=FULL`), keyed by its SOP Instance UID. A row moves
//! `held` (its study is not final yet) → `ready` → `sent`, or back to
//! `ready` with a later `next_attempt_ms` after a failure, or to `failed`
//! after [`RetryPolicy::give_up_after_h`]. A row is marked `sent` — and its
//! file deleted — right after the destination confirms the C-STORE, so a
//! confirmed object is never sent again, across restarts too. (A crash in
//! the instant between the confirmation and that commit re-sends the same
//! instance once; PACS treats it as the same SOP instance.)
//!
//! Adding an object whose SOP Instance UID is already there does nothing,
//! unless the earlier one had failed (then it is tried afresh): result UIDs
//! are derived from the image and the model, so an image received twice
//! does not produce a second result in PACS.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::config::RetryPolicy;
use super::derived::ResultObject;
use super::outbox_pg::Clock;
use super::spool::sync_dir;

const MIGRATIONS: &[&str] = &["CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        sop_class_uid TEXT NOT NULL,
        kind TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        file TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        sent_ms INTEGER
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
    CREATE INDEX outbox_study ON outbox (study_uid, state);"];

/// Outbox errors.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The state database failed.
    #[error("outbox database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The shared (PostgreSQL) outbox failed.
    #[error("shared outbox: {0}")]
    Shared(String),
    /// A file could not be written or read.
    #[error("outbox file {path}: {source}")]
    File {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The state of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting for its study to be final.
    Held,
    /// To be sent (when `next_attempt_ms` has come).
    Ready,
    /// Confirmed by the destination.
    Sent,
    /// Given up.
    Failed,
}

impl EntryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Held => "held",
            EntryState::Ready => "ready",
            EntryState::Sent => "sent",
            EntryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> EntryState {
        match s {
            "held" => EntryState::Held,
            "ready" => EntryState::Ready,
            "sent" => EntryState::Sent,
            _ => EntryState::Failed,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Row id (a log-safe handle).
    pub id: i64,
    /// SOP Instance UID of the object.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// `sc` or `sr`.
    pub kind: String,
    /// Study the object belongs to.
    pub study_uid: String,
    /// Its file (empty in the shared outbox, which holds `data`).
    pub path: PathBuf,
    /// State.
    pub state: EntryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was queued, ms.
    pub created_ms: i64,
    /// When the destination confirmed it, ms.
    pub sent_ms: Option<i64>,
    /// The object itself, from the shared outbox (`None`: read `path`).
    pub data: Option<Vec<u8>>,
}

/// Counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Held for their study.
    pub held: u64,
    /// Waiting to be sent.
    pub ready: u64,
    /// Sent.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
}

impl Counts {
    /// Counts from `(state, rows)` pairs as the outbox tables give them.
    pub(crate) fn tally(rows: impl IntoIterator<Item = (String, i64)>) -> Counts {
        let mut counts = Counts::default();
        for (state, n) in rows {
            let n = n.max(0) as u64;
            match EntryState::parse(&state) {
                EntryState::Held => counts.held = n,
                EntryState::Ready => counts.ready = n,
                EntryState::Sent => counts.sent = n,
                EntryState::Failed => counts.failed = n,
            }
        }
        counts
    }
}

/// The outbox: a SQLite database and files under the replica's state
/// directory, or a table in the PostgreSQL worklist database that every
/// replica shares ([`Outbox::open_shared`]).
pub struct Outbox {
    backend: Backend,
}

enum Backend {
    Local(LocalOutbox),
    Shared(super::outbox_pg::PgOutbox),
}

/// Calls the same method on whichever outbox this is.
macro_rules! each {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Local(o) => o.$method($($arg),*),
            Backend::Shared(o) => o.$method($($arg),*),
        }
    };
}

impl Outbox {
    /// Opens (creating) the outbox under `root`; removes files no row
    /// refers to (a crash between writing the file and its row).
    pub fn open(root: &Path, retry: RetryPolicy) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            backend: Backend::Local(LocalOutbox::open(root, retry)?),
        })
    }

    /// Opens (creating its table) the outbox in the PostgreSQL database at
    /// `url`, shared with every replica using it; `owner` names this
    /// replica across restarts (host name and state directory).
    /// It times rows by the database server's clock, so that replicas
    /// agree on leases and backoffs: the `now_ms` arguments of its methods
    /// are the caller's clock, used by the local outbox only.
    pub fn open_shared(url: &str, owner: &str, retry: RetryPolicy) -> Result<Outbox, OutboxError> {
        Outbox::shared(url, owner, retry, Clock::Database)
    }

    /// The shared outbox timed by the callers' `now_ms`, for tests that
    /// step through hours.
    #[cfg(test)]
    pub(crate) fn open_shared_on_caller_clock(
        url: &str,
        owner: &str,
        retry: RetryPolicy,
    ) -> Result<Outbox, OutboxError> {
        Outbox::shared(url, owner, retry, Clock::Caller)
    }

    fn shared(
        url: &str,
        owner: &str,
        retry: RetryPolicy,
        clock: Clock,
    ) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            backend: Backend::Shared(super::outbox_pg::PgOutbox::open(url, owner, retry, clock)?),
        })
    }

    /// Whether this is the shared outbox.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Shared(_))
    }

    /// Queues result objects of one image, held until `release_study`.
    /// Durable before it returns. Returns how many were new.
    pub fn add(
        &self,
        study_uid: &str,
        objects: &[ResultObject],
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        each!(self.add(study_uid, objects, now_ms))
    }

    /// Makes a final study's held objects ready to send; returns how many.
    pub fn release_study(&self, study_uid: &str) -> Result<usize, OutboxError> {
        each!(self.release_study(study_uid))
    }

    /// Studies with held objects (after a restart their quiet period starts
    /// again).
    pub fn held_studies(&self) -> Result<Vec<String>, OutboxError> {
        each!(self.held_studies())
    }

    /// Ready objects whose time has come, oldest first (in the shared
    /// outbox, leased to this replica); first gives up those past the
    /// retry window.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        each!(self.due(now_ms, limit))
    }

    /// Extends this replica's lease on the objects `ids` of a batch it is
    /// still sending (the shared outbox; the local one has no leases, and
    /// answers 0). Returns how many leases were renewed.
    pub fn renew_leases(&self, ids: &[i64], now_ms: i64) -> Result<usize, OutboxError> {
        match &self.backend {
            Backend::Local(_) => Ok(0),
            Backend::Shared(o) => o.renew_leases(ids, now_ms),
        }
    }

    /// Milliseconds until the next ready object is due (None when none is).
    pub fn next_due_in(&self, now_ms: i64) -> Result<Option<i64>, OutboxError> {
        each!(self.next_due_in(now_ms))
    }

    /// Records the destination's confirmation (and drops the object's
    /// bytes).
    pub fn mark_sent(&self, entry: &Entry, now_ms: i64) -> Result<(), OutboxError> {
        each!(self.mark_sent(entry, now_ms))
    }

    /// Records a failed attempt; the next is after the backoff.
    pub fn mark_failed(&self, entry: &Entry, error: &str, now_ms: i64) -> Result<(), OutboxError> {
        each!(self.mark_failed(entry, error, now_ms))
    }

    /// Records one failure for every entry of a batch that never reached
    /// the destination (no association), in one transaction: the batch's
    /// leases are given back together, so a replica killed meanwhile
    /// strands none of them until their lease runs out.
    pub fn mark_all_failed(
        &self,
        entries: &[Entry],
        error: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        each!(self.mark_all_failed(entries, error, now_ms))
    }

    /// Counts by state.
    pub fn counts(&self) -> Result<Counts, OutboxError> {
        each!(self.counts())
    }

    /// Every entry, oldest first (operations, tests).
    pub fn entries(&self) -> Result<Vec<Entry>, OutboxError> {
        each!(self.entries())
    }

    /// Retention in the shared outbox: deletes the rows of objects sent
    /// before `before_ms` (the local outbox has [`purge_sent`]).
    pub fn purge_sent_rows(&self, before_ms: i64) -> Result<usize, OutboxError> {
        match &self.backend {
            Backend::Local(o) => o.purge_sent_rows(before_ms),
            Backend::Shared(o) => o.purge_sent(before_ms),
        }
    }
}

/// The outbox of one replica: SQLite and files.
struct LocalOutbox {
    root: PathBuf,
    dir: PathBuf,
    conn: Mutex<Connection>,
    retry: RetryPolicy,
}

impl LocalOutbox {
    fn open(root: &Path, retry: RetryPolicy) -> Result<LocalOutbox, OutboxError> {
        let dir = root.join("outbox");
        fs::create_dir_all(&dir).map_err(|source| OutboxError::File {
            path: dir.clone(),
            source,
        })?;
        let mut conn = Connection::open(root.join("pacs.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        let outbox = LocalOutbox {
            root: root.to_path_buf(),
            dir,
            conn: Mutex::new(conn),
            retry,
        };
        outbox.remove_orphans()?;
        Ok(outbox)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove_orphans(&self) -> Result<(), OutboxError> {
        let wanted: std::collections::HashSet<String> = {
            let conn = self.lock();
            let mut stmt =
                conn.prepare("SELECT file FROM outbox WHERE state IN ('held', 'ready')")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let entries = fs::read_dir(&self.dir).map_err(|source| OutboxError::File {
            path: self.dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Queues result objects of one image, held until `release_study`.
    /// Files are durable before their rows are committed. Returns how many
    /// were new.
    fn add(
        &self,
        study_uid: &str,
        objects: &[ResultObject],
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        let mut added = 0;
        for o in objects {
            let name = format!("{}.{}.dcm", o.sop_instance_uid, o.kind);
            let path = self.dir.join(&name);
            let existing: Option<String> = self
                .lock()
                .query_row(
                    "SELECT state FROM outbox WHERE sop_instance_uid = ?1",
                    params![o.sop_instance_uid],
                    |r| r.get(0),
                )
                .optional()?;
            match existing.as_deref().map(EntryState::parse) {
                None | Some(EntryState::Failed) => {}
                Some(_) => continue,
            }
            write_durably(&self.dir, &path, &o.file)?;
            let conn = self.lock();
            conn.execute(
                "INSERT INTO outbox (sop_instance_uid, sop_class_uid, kind, study_uid, file, state, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'held', ?6)
                 ON CONFLICT (sop_instance_uid) DO UPDATE SET
                    state = 'held', attempts = 0, next_attempt_ms = 0, last_error = NULL,
                    created_ms = excluded.created_ms, file = excluded.file
                 WHERE outbox.state = 'failed'",
                params![o.sop_instance_uid, o.sop_class_uid, o.kind, study_uid, name, now_ms],
            )?;
            added += 1;
        }
        Ok(added)
    }

    /// Makes a final study's held objects ready to send; returns how many.
    fn release_study(&self, study_uid: &str) -> Result<usize, OutboxError> {
        Ok(self.lock().execute(
            "UPDATE outbox SET state = 'ready' WHERE study_uid = ?1 AND state = 'held'",
            params![study_uid],
        )?)
    }

    /// Studies with held objects (after a restart their quiet period starts again).
    fn held_studies(&self) -> Result<Vec<String>, OutboxError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT DISTINCT study_uid FROM outbox WHERE state = 'held'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ready objects whose time has come, oldest first; first gives up
    /// those past the retry window.
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let give_up_before = now_ms - (self.retry.give_up_after_h as i64) * 3_600_000;
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = 'failed'
             WHERE state = 'ready' AND attempts > 0 AND created_ms < ?1",
            params![give_up_before],
        )?;
        let mut stmt = conn.prepare(&format!(
            "{SELECT} WHERE state = 'ready' AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| self.entry(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Milliseconds until the next ready object is due (None when none is).
    fn next_due_in(&self, now_ms: i64) -> Result<Option<i64>, OutboxError> {
        let next: Option<i64> = self.lock().query_row(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'ready'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(|t| (t - now_ms).max(0)))
    }

    /// Records the destination's confirmation, then deletes the file.
    fn mark_sent(&self, entry: &Entry, now_ms: i64) -> Result<(), OutboxError> {
        self.lock().execute(
            "UPDATE outbox SET state = 'sent', sent_ms = ?2, last_error = NULL WHERE id = ?1",
            params![entry.id, now_ms],
        )?;
        let _ = fs::remove_file(&entry.path);
        Ok(())
    }

    /// Records a failed attempt; the next is after the backoff.
    fn mark_failed(&self, entry: &Entry, error: &str, now_ms: i64) -> Result<(), OutboxError> {
        let attempts = entry.attempts + 1;
        let next = now_ms + self.retry.backoff_ms(attempts);
        self.lock().execute(
            "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![entry.id, attempts, next, error],
        )?;
        Ok(())
    }

    fn mark_all_failed(
        &self,
        entries: &[Entry],
        error: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for entry in entries {
            let attempts = entry.attempts + 1;
            let next = now_ms + self.retry.backoff_ms(attempts);
            tx.execute(
                "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
                params![entry.id, attempts, next, error],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Counts by state.
    fn counts(&self) -> Result<Counts, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(Counts::tally(rows.collect::<Result<Vec<_>, _>>()?))
    }

    /// Every entry, oldest first (operations, tests).
    fn entries(&self) -> Result<Vec<Entry>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], |r| self.entry(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn entry(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
        Ok(Entry {
            id: r.get(0)?,
            sop_instance_uid: r.get(1)?,
            sop_class_uid: r.get(2)?,
            kind: r.get(3)?,
            study_uid: r.get(4)?,
            path: self.dir.join(r.get::<_, String>(5)?),
            state: EntryState::parse(&r.get::<_, String>(6)?),
            attempts: r.get::<_, i64>(7)?.max(0) as u32,
            last_error: r.get(8)?,
            created_ms: r.get(9)?,
            sent_ms: r.get(10)?,
            data: None,
        })
    }

    fn purge_sent_rows(&self, before_ms: i64) -> Result<usize, OutboxError> {
        purge_sent(&self.root, before_ms)
    }
}

/// Retention: deletes the rows of objects sent before `before_ms` from the
/// outbox under `root` (their files went when they were sent); failed,
/// held and ready objects are kept. Opens the database on its own, without
/// the start-up clean-up of [`Outbox::open`], so it is safe beside a
/// running service. Returns how many rows went (0 without an outbox).
pub fn purge_sent(root: &Path, before_ms: i64) -> Result<usize, OutboxError> {
    let path = root.join("pacs.sqlite");
    if !path.exists() {
        return Ok(0);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn.execute(
        "DELETE FROM outbox WHERE state = 'sent' AND sent_ms < ?1",
        params![before_ms],
    )?)
}

const SELECT: &str = "SELECT id, sop_instance_uid, sop_class_uid, kind, study_uid, file, state,
    attempts, last_error, created_ms, sent_ms FROM outbox";

fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    // A temporary name of its own per write: the same object written twice
    // at once (a duplicate arrival) must not share one half-written file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let err = |source| OutboxError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    sync_dir(dir).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str) -> ResultObject {
        ResultObject {
            kind: "sr",
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.34".into(),
            sop_instance_uid: uid.into(),
            file: b"DICM".to_vec(),
        }
    }

    #[test]
    fn the_same_object_written_at_once_by_many_threads_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
        let big = |fill: u8| ResultObject {
            file: vec![fill; 1 << 20],
            ..object("7.7")
        };
        std::thread::scope(|s| {
            for fill in 1..=8u8 {
                let outbox = &outbox;
                s.spawn(move || {
                    for _ in 0..4 {
                        outbox.add("S7", &[big(fill)], 0).unwrap();
                    }
                });
            }
        });
        let file = std::fs::read(dir.path().join("outbox/7.7.sr.dcm")).unwrap();
        assert_eq!(file.len(), 1 << 20);
        assert!(file.iter().all(|b| *b == file[0]), "a torn write");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn retention_removes_only_rows_sent_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(purge_sent(dir.path(), 1_000).unwrap(), 0, "no outbox yet");
        let outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
        let objects = [object("3.1"), object("3.2"), object("3.3")];
        outbox.add("S3", &objects, 0).unwrap();
        outbox.release_study("S3").unwrap();
        let due = outbox.due(10, 10).unwrap();
        outbox.mark_sent(&due[0], 100).unwrap();
        outbox.mark_sent(&due[1], 5_000).unwrap();
        assert_eq!(purge_sent(dir.path(), 1_000).unwrap(), 1);
        let (sent, ready) = {
            let counts = outbox.counts().unwrap();
            (counts.sent, counts.ready)
        };
        assert_eq!(
            (sent, ready),
            (1, 1),
            "the recent sent row and the unsent one stay"
        );
    }

    #[test]
    fn objects_wait_for_their_study_then_are_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let retry = RetryPolicy {
            initial_s: 1,
            max_s: 4,
            give_up_after_h: 1,
        };
        let outbox = Outbox::open(dir.path(), retry.clone()).unwrap();
        assert_eq!(
            outbox
                .add("S1", &[object("1.1"), object("1.2")], 0)
                .unwrap(),
            2
        );
        // The same result again is not a second object.
        assert_eq!(outbox.add("S1", &[object("1.1")], 0).unwrap(), 0);
        assert!(
            outbox.due(10, 10).unwrap().is_empty(),
            "held until the study is final"
        );
        assert_eq!(outbox.held_studies().unwrap(), ["S1"]);
        assert_eq!(outbox.release_study("S1").unwrap(), 2);
        let due = outbox.due(10, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert!(due[0].path.exists());
        outbox.mark_failed(&due[0], "refused", 10).unwrap();
        outbox.mark_sent(&due[1], 10).unwrap();
        assert!(!due[1].path.exists(), "a sent object's file is deleted");
        // Reopened (a restart): the sent one stays sent, the failed one
        // comes back after its backoff.
        drop(outbox);
        let outbox = Outbox::open(dir.path(), retry).unwrap();
        assert!(outbox.due(500, 10).unwrap().is_empty());
        let again = outbox.due(1_010, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].sop_instance_uid, "1.1");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(outbox.next_due_in(0).unwrap(), Some(1_010));
        // Adding the sent one again does nothing.
        assert_eq!(outbox.add("S1", &[object("1.2")], 20).unwrap(), 0);
        // Past the retry window it is given up, and can be queued afresh.
        assert!(outbox.due(3_600_001, 10).unwrap().is_empty());
        let counts = outbox.counts().unwrap();
        assert_eq!((counts.sent, counts.failed), (1, 1));
        assert_eq!(outbox.add("S1", &[object("1.1")], 3_600_002).unwrap(), 1);
        assert_eq!(outbox.counts().unwrap().held, 1);
    }

    #[test]
    fn a_batch_that_found_no_destination_counts_one_attempt_each() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
        outbox
            .add("S1", &[object("3.1"), object("3.2")], 0)
            .unwrap();
        outbox.release_study("S1").unwrap();
        let due = outbox.due(10, 10).unwrap();
        assert_eq!(due.len(), 2);
        outbox.mark_all_failed(&due, "refused", 10).unwrap();
        assert!(outbox.due(11, 10).unwrap().is_empty(), "backing off");
        let at = outbox.next_due_in(0).unwrap().unwrap();
        let again = outbox.due(at, 10).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again
            .iter()
            .all(|e| e.attempts == 1 && e.last_error.as_deref() == Some("refused")));
    }

    #[test]
    fn orphan_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
        outbox.add("S", &[object("2.1")], 0).unwrap();
        fs::write(dir.path().join("outbox/stray.dcm"), b"x").unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["2.1.sr.dcm"]);
        assert_eq!(outbox.entries().unwrap().len(), 1);
    }
}
