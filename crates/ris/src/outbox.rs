//! A durable outbox: messages waiting for the RIS (`hl7.sqlite`) or the
//! FHIR server (`fhir.sqlite`).
//!
//! One row per message (WAL, `synchronous=FULL`), keyed by a key unique
//! per result version (the HL7 control ID, MSH-10): queueing the same
//! version twice does nothing. A row moves `ready` → `sent` when the peer
//! accepts it (AA; FHIR 2xx), or stays `ready` with a later
//! `next_attempt_ms` after a transport failure or an error worth retrying
//! (AE; FHIR 5xx, 429, timeouts), or goes to `failed` when the peer
//! rejects it (AR; FHIR 4xx) or it was not delivered within the give-up
//! time; failed rows stay, with their last error, for the metrics and
//! an operator (table `outbox`). Messages go out strictly in the order they were
//! queued, so each study's versions arrive in order. A message is marked
//! sent right after the peer accepts it: a crash in between sends it once
//! more, with the same key (MSH-10; the same resource ids in FHIR), which
//! receivers use to drop duplicates.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

/// Outbox errors.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox database failed.
    #[error("outbox database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The shared (PostgreSQL) outbox failed.
    #[error("shared outbox: {0}")]
    Shared(String),
}

/// A message due to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Row id (queue order).
    pub id: i64,
    /// Unique per result version (MSH-10).
    pub key: String,
    /// The message.
    pub message: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was queued, ms since the epoch.
    pub created_ms: i64,
    /// Not before this time.
    pub next_attempt_ms: i64,
}

/// Counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Waiting to be sent.
    pub ready: u64,
    /// Accepted by the RIS.
    pub sent: u64,
    /// Rejected or given up.
    pub failed: u64,
}

impl Tally {
    /// Counts from `(state, rows)` pairs.
    pub(crate) fn from_counts(rows: impl IntoIterator<Item = (String, u64)>) -> Tally {
        let mut t = Tally::default();
        for (state, n) in rows {
            match state.as_str() {
                "ready" => t.ready = n,
                "sent" => t.sent = n,
                _ => t.failed += n,
            }
        }
        t
    }
}

/// A listed row (no message body: it holds patient data).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// Unique per result version (MSH-10).
    pub key: String,
    /// The study.
    pub study_instance_uid: String,
    /// `ready`, `sent`, `failed`.
    pub state: String,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// What `requeue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// Ready again, tried at once, its give-up clock restarted.
    Yes,
    /// No message has this key.
    Unknown,
    /// It is not failed (ready or sent): nothing to do.
    NotFailed(String),
    /// A later version of the same study was queued after it; sending this
    /// one now would put an older result over a newer one (requeue that
    /// one instead).
    Superseded(String),
}

/// The outbox of one interface: a SQLite file in the replica's data
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
    /// Opens (or creates) the outbox file at `path`.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            backend: Backend::Local(LocalOutbox::open(path)?),
        })
    }

    /// Opens (creating its table) the outbox of `interface` (`hl7`,
    /// `fhir`) in the PostgreSQL database at `url`, shared by every replica.
    pub fn open_shared(url: &str, interface: &str) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            backend: Backend::Shared(super::outbox_pg::PgOutbox::open(url, interface)?),
        })
    }

    /// Whether this is the shared outbox.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Shared(_))
    }

    /// Whether this process is to send now: always for a file of its own;
    /// in the shared outbox, for the one replica holding the interface's
    /// sender lock (taken here when free).
    pub fn lead(&self) -> Result<bool, OutboxError> {
        match &self.backend {
            Backend::Local(_) => Ok(true),
            Backend::Shared(o) => o.lead(),
        }
    }

    /// Queues a message (durable when it returns); `false` when a message
    /// with this key was queued before.
    pub fn add(
        &self,
        key: &str,
        study_uid: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        each!(self.add(key, study_uid, message, now_ms))
    }

    /// The oldest message waiting, whether or not its time has come.
    pub fn next(&self) -> Result<Option<Due>, OutboxError> {
        each!(self.next())
    }

    /// Accepted by the peer.
    pub fn sent(&self, id: i64, now_ms: i64) -> Result<(), OutboxError> {
        each!(self.sent(id, now_ms))
    }

    /// Failed this time; tried again at `next_attempt_ms`.
    pub fn retry(&self, id: i64, error: &str, next_attempt_ms: i64) -> Result<(), OutboxError> {
        each!(self.retry(id, error, next_attempt_ms))
    }

    /// Rejected, or given up: kept, not tried again.
    pub fn fail(&self, id: i64, error: &str) -> Result<(), OutboxError> {
        each!(self.fail(id, error))
    }

    /// Counts by state.
    pub fn tally(&self) -> Result<Tally, OutboxError> {
        each!(self.tally())
    }

    /// The latest rows, newest first, at most `limit`; only those in
    /// `state` when it is given.
    pub fn list(&self, state: Option<&str>, limit: u32) -> Result<Vec<Row>, OutboxError> {
        each!(self.list(state, limit))
    }

    /// Whether a message with this key is here.
    pub fn contains(&self, key: &str) -> Result<bool, OutboxError> {
        each!(self.contains(key))
    }

    /// Makes a failed message ready again (an operator, once the cause is
    /// mended), unless a later version of its study was queued after it.
    pub fn requeue(&self, key: &str, now_ms: i64) -> Result<Requeued, OutboxError> {
        each!(self.requeue(key, now_ms))
    }

    /// Deletes messages sent before `cutoff_ms` (retention); how many.
    pub fn purge_sent(&self, cutoff_ms: i64) -> Result<usize, OutboxError> {
        each!(self.purge_sent(cutoff_ms))
    }
}

/// The outbox file of one replica.
struct LocalOutbox {
    db: Mutex<Connection>,
}

impl LocalOutbox {
    fn open(path: &Path) -> Result<LocalOutbox, OutboxError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT NOT NULL UNIQUE,
                study_uid TEXT NOT NULL,
                message TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                created_ms INTEGER NOT NULL,
                sent_ms INTEGER
            );
            CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);",
        )?;
        Ok(LocalOutbox { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message (durable when it returns); `false` when a message
    /// with this control ID was queued before.
    fn add(
        &self,
        key: &str,
        study_uid: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO outbox (key, study_uid, message, state, created_ms)
             VALUES (?1, ?2, ?3, 'ready', ?4)",
            params![key, study_uid, message, now_ms],
        )?;
        Ok(n == 1)
    }

    /// The oldest message waiting, whether or not its time has come.
    fn next(&self) -> Result<Option<Due>, OutboxError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, key, message, attempts, created_ms, next_attempt_ms
                 FROM outbox WHERE state = 'ready' ORDER BY id LIMIT 1",
                [],
                |r| {
                    Ok(Due {
                        id: r.get(0)?,
                        key: r.get(1)?,
                        message: r.get(2)?,
                        attempts: r.get(3)?,
                        created_ms: r.get(4)?,
                        next_attempt_ms: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Accepted by the RIS.
    fn sent(&self, id: i64, now_ms: i64) -> Result<(), OutboxError> {
        self.db().execute(
            "UPDATE outbox SET state = 'sent', sent_ms = ?2, last_error = NULL WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Failed this time; tried again at `next_attempt_ms`.
    fn retry(&self, id: i64, error: &str, next_attempt_ms: i64) -> Result<(), OutboxError> {
        self.db().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
             WHERE id = ?1",
            params![id, next_attempt_ms, error],
        )?;
        Ok(())
    }

    /// Rejected, or given up: kept, not tried again.
    fn fail(&self, id: i64, error: &str) -> Result<(), OutboxError> {
        self.db().execute(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2
             WHERE id = ?1",
            params![id, error],
        )?;
        Ok(())
    }

    /// Counts by state.
    fn tally(&self) -> Result<Tally, OutboxError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        Ok(Tally::from_counts(rows.collect::<Result<Vec<_>, _>>()?))
    }

    /// The latest rows, newest first, at most `limit`; only those in
    /// `state` when it is given.
    fn list(&self, state: Option<&str>, limit: u32) -> Result<Vec<Row>, OutboxError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT key, study_uid, state, attempts, last_error FROM outbox
             WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![state, limit], |r| {
            Ok(Row {
                key: r.get(0)?,
                study_instance_uid: r.get(1)?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                last_error: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether a message with this key is here.
    fn contains(&self, key: &str) -> Result<bool, OutboxError> {
        Ok(self
            .db()
            .query_row("SELECT 1 FROM outbox WHERE key = ?1", [key], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Makes a failed message ready again (an operator, once the cause is
    /// mended), unless a later version of its study was queued after it.
    fn requeue(&self, key: &str, now_ms: i64) -> Result<Requeued, OutboxError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let row: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT id, study_uid, state FROM outbox WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, study, state)) = row else {
            return Ok(Requeued::Unknown);
        };
        if state != "failed" {
            return Ok(Requeued::NotFailed(state));
        }
        let later: Option<String> = tx
            .query_row(
                "SELECT key FROM outbox WHERE study_uid = ?1 AND id > ?2 ORDER BY id DESC LIMIT 1",
                params![study, id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(later) = later {
            return Ok(Requeued::Superseded(later));
        }
        tx.execute(
            "UPDATE outbox SET state = 'ready', attempts = 0, next_attempt_ms = 0,
                    last_error = NULL, created_ms = ?2
             WHERE id = ?1",
            params![id, now_ms],
        )?;
        tx.commit()?;
        Ok(Requeued::Yes)
    }

    /// Deletes sent messages sent before `cutoff_ms` (retention); how many.
    fn purge_sent(&self, cutoff_ms: i64) -> Result<usize, OutboxError> {
        Ok(self.db().execute(
            "DELETE FROM outbox WHERE state = 'sent' AND sent_ms < ?1",
            [cutoff_ms],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_in_order_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hl7.sqlite");
        {
            let o = Outbox::open(&path).unwrap();
            assert!(o.add("C1", "1.2", "m1", 10).unwrap());
            assert!(o.add("C2", "1.2", "m2", 11).unwrap());
            assert!(!o.add("C1", "1.2", "m1 again", 12).unwrap());
            let first = o.next().unwrap().unwrap();
            assert_eq!((first.key.as_str(), first.message.as_str()), ("C1", "m1"));
            o.retry(first.id, "connection refused", 5000).unwrap();
            let again = o.next().unwrap().unwrap();
            assert_eq!((again.key.as_str(), again.attempts), ("C1", 1));
            assert_eq!(again.next_attempt_ms, 5000);
            o.sent(again.id, 20).unwrap();
        }
        let o = Outbox::open(&path).unwrap();
        let second = o.next().unwrap().unwrap();
        assert_eq!(second.key, "C2");
        o.fail(second.id, "AR: unsupported").unwrap();
        assert!(o.next().unwrap().is_none());
        assert_eq!(
            o.tally().unwrap(),
            Tally {
                ready: 0,
                sent: 1,
                failed: 1
            }
        );
        let rows = o.list(None, 10).unwrap();
        assert_eq!(rows[0].last_error.as_deref(), Some("AR: unsupported"));
        assert_eq!(o.list(Some("sent"), 10).unwrap()[0].key, "C1");
        assert_eq!(o.purge_sent(21).unwrap(), 1);
    }

    #[test]
    fn only_the_latest_failed_version_of_a_study_is_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("hl7.sqlite")).unwrap();
        o.add("C1", "1.2", "m1", 10).unwrap();
        o.add("C2", "1.2", "m2", 11).unwrap();
        o.add("C3", "1.3", "m3", 12).unwrap();
        for _ in 0..3 {
            let d = o.next().unwrap().unwrap();
            o.fail(d.id, "AR").unwrap();
        }
        assert_eq!(
            o.requeue("C1", 50).unwrap(),
            Requeued::Superseded("C2".into())
        );
        assert_eq!(o.requeue("C9", 50).unwrap(), Requeued::Unknown);
        assert_eq!(o.requeue("C2", 50).unwrap(), Requeued::Yes);
        assert_eq!(
            o.requeue("C2", 50).unwrap(),
            Requeued::NotFailed("ready".into())
        );
        let d = o.next().unwrap().unwrap();
        assert_eq!((d.key.as_str(), d.attempts, d.created_ms), ("C2", 0, 50));
        assert_eq!(o.tally().unwrap().failed, 2);
    }
}
