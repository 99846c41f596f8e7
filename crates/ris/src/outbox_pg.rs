//! The results outbox in PostgreSQL (`cxr_results_outbox`, in the
//! worklist's database), shared by every replica using it: any replica
//! queues, and one at a time sends.
//!
//! Messages must reach the RIS in the order they were made, so one sender
//! per interface delivers them all: the replica that holds the
//! interface's session-level advisory lock. When it dies its connection
//! closes, the lock is freed, and another replica's sender takes over
//! within seconds, from the first message not yet accepted. Nothing is
//! stranded on a replica that is gone. The rest is as in the SQLite
//! outbox ([`super::outbox`]).
//!
//! Every statement runs on one thread of the outbox's own, on one
//! connection, which also holds the lock ([`cxr_worklist::PgThread`]).

use postgres::Client;

use super::outbox::{Due, OutboxError, Requeued, Row, Tally};

/// Serialises the table's creation by replicas starting together.
const MIGRATE_LOCK: i64 = 0x6378_725f_7269_7330; // "cxr_ris0"
/// The sender lock of interface `i` is this plus a number per interface.
const SENDER_LOCK: i64 = 0x6378_725f_7269_7300; // "cxr_ris\0"

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cxr_results_outbox (
        id BIGSERIAL PRIMARY KEY,
        interface TEXT NOT NULL,
        key TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        message TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL DEFAULT 0,
        last_error TEXT,
        created_ms BIGINT NOT NULL,
        sent_ms BIGINT,
        UNIQUE (interface, key)
    );
    CREATE INDEX IF NOT EXISTS cxr_results_outbox_state
        ON cxr_results_outbox (interface, state, id);";

/// The shared outbox of one interface. The connection's state: whether it
/// holds the sender lock (false again on a new connection).
pub(crate) struct PgOutbox {
    db: cxr_worklist::PgThread<bool>,
    interface: String,
}

/// PostgreSQL text cannot hold NUL.
fn text(s: &str) -> String {
    s.replace('\0', "")
}

impl PgOutbox {
    /// Connects to `url` and creates the table when it is missing.
    pub(crate) fn open(url: &str, interface: &str) -> Result<PgOutbox, OutboxError> {
        let outbox = PgOutbox {
            db: cxr_worklist::PgThread::spawn("cxr-results-pg", url)
                .map_err(OutboxError::Shared)?,
            interface: text(interface),
        };
        outbox.run(|c, _| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()
        })?;
        Ok(outbox)
    }

    /// Runs `f` on the outbox's thread with a live connection and whether
    /// it holds the sender lock.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &mut bool) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.db.run(f).map_err(OutboxError::Shared)
    }

    /// Whether this replica sends (it holds the interface's lock, taking
    /// it when free).
    pub(crate) fn lead(&self) -> Result<bool, OutboxError> {
        let lock = SENDER_LOCK + i64::from(self.interface == "fhir");
        self.run(move |c, sender| {
            if !*sender {
                *sender = c
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])?
                    .get(0);
            }
            Ok(*sender)
        })
    }

    pub(crate) fn add(
        &self,
        key: &str,
        study_uid: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let (i, k, s, m) = (
            self.interface.clone(),
            text(key),
            text(study_uid),
            text(message),
        );
        self.run(move |c, _| {
            let n = c.execute(
                "INSERT INTO cxr_results_outbox (interface, key, study_uid, message, state, created_ms)
                 VALUES ($1, $2, $3, $4, 'ready', $5) ON CONFLICT (interface, key) DO NOTHING",
                &[&i, &k, &s, &m, &now_ms],
            )?;
            Ok(n == 1)
        })
    }

    pub(crate) fn next(&self) -> Result<Option<Due>, OutboxError> {
        let i = self.interface.clone();
        self.run(move |c, _| {
            Ok(c.query_opt(
                "SELECT id, key, message, attempts, created_ms, next_attempt_ms
                 FROM cxr_results_outbox WHERE interface = $1 AND state = 'ready'
                 ORDER BY id LIMIT 1",
                &[&i],
            )?
            .map(|r| Due {
                id: r.get(0),
                key: r.get(1),
                message: r.get(2),
                attempts: r.get::<_, i32>(3).max(0) as u32,
                created_ms: r.get(4),
                next_attempt_ms: r.get(5),
            }))
        })
    }

    pub(crate) fn sent(&self, id: i64, now_ms: i64) -> Result<(), OutboxError> {
        self.run(move |c, _| {
            c.execute(
                "UPDATE cxr_results_outbox SET state = 'sent', sent_ms = $2, last_error = NULL
                 WHERE id = $1",
                &[&id, &now_ms],
            )
            .map(drop)
        })
    }

    pub(crate) fn retry(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), OutboxError> {
        let e = text(error);
        self.run(move |c, _| {
            c.execute(
                "UPDATE cxr_results_outbox SET attempts = attempts + 1, next_attempt_ms = $2,
                        last_error = $3 WHERE id = $1",
                &[&id, &next_attempt_ms, &e],
            )
            .map(drop)
        })
    }

    pub(crate) fn fail(&self, id: i64, error: &str) -> Result<(), OutboxError> {
        let e = text(error);
        self.run(move |c, _| {
            c.execute(
                "UPDATE cxr_results_outbox SET state = 'failed', attempts = attempts + 1,
                        last_error = $2 WHERE id = $1",
                &[&id, &e],
            )
            .map(drop)
        })
    }

    pub(crate) fn tally(&self) -> Result<Tally, OutboxError> {
        let i = self.interface.clone();
        let rows = self.run(move |c, _| {
            c.query(
                "SELECT state, COUNT(*) FROM cxr_results_outbox WHERE interface = $1
                 GROUP BY state",
                &[&i],
            )
        })?;
        Ok(Tally::from_counts(rows.iter().map(|r| {
            (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)
        })))
    }

    pub(crate) fn list(&self, state: Option<&str>, limit: u32) -> Result<Vec<Row>, OutboxError> {
        let (i, state) = (self.interface.clone(), state.map(str::to_string));
        let rows = self.run(move |c, _| {
            c.query(
                "SELECT key, study_uid, state, attempts, last_error FROM cxr_results_outbox
                 WHERE interface = $1 AND ($2::TEXT IS NULL OR state = $2)
                 ORDER BY id DESC LIMIT $3",
                &[&i, &state, &i64::from(limit)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Row {
                key: r.get(0),
                study_instance_uid: r.get(1),
                state: r.get(2),
                attempts: r.get::<_, i32>(3).max(0) as u32,
                last_error: r.get(4),
            })
            .collect())
    }

    pub(crate) fn contains(&self, key: &str) -> Result<bool, OutboxError> {
        let (i, k) = (self.interface.clone(), text(key));
        self.run(move |c, _| {
            Ok(c.query_opt(
                "SELECT 1 FROM cxr_results_outbox WHERE interface = $1 AND key = $2",
                &[&i, &k],
            )?
            .is_some())
        })
    }

    pub(crate) fn requeue(&self, key: &str, now_ms: i64) -> Result<Requeued, OutboxError> {
        let (i, k) = (self.interface.clone(), text(key));
        self.run(move |c, _| {
            let mut tx = c.transaction()?;
            let Some(row) = tx.query_opt(
                "SELECT id, study_uid, state FROM cxr_results_outbox
                 WHERE interface = $1 AND key = $2 FOR UPDATE",
                &[&i, &k],
            )?
            else {
                return Ok(Requeued::Unknown);
            };
            let (id, study, state): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            if state != "failed" {
                return Ok(Requeued::NotFailed(state));
            }
            if let Some(later) = tx.query_opt(
                "SELECT key FROM cxr_results_outbox
                 WHERE interface = $1 AND study_uid = $2 AND id > $3 ORDER BY id DESC LIMIT 1",
                &[&i, &study, &id],
            )? {
                return Ok(Requeued::Superseded(later.get(0)));
            }
            tx.execute(
                "UPDATE cxr_results_outbox SET state = 'ready', attempts = 0, next_attempt_ms = 0,
                        last_error = NULL, created_ms = $2 WHERE id = $1",
                &[&id, &now_ms],
            )?;
            tx.commit()?;
            Ok(Requeued::Yes)
        })
    }

    pub(crate) fn purge_sent(&self, cutoff_ms: i64) -> Result<usize, OutboxError> {
        let i = self.interface.clone();
        self.run(move |c, _| {
            c.execute(
                "DELETE FROM cxr_results_outbox
                 WHERE interface = $1 AND state = 'sent' AND sent_ms < $2",
                &[&i, &cutoff_ms],
            )
            .map(|n| n as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::{Outbox, Requeued};
    use cxr_worklist::testing::ThrowawayPostgres;

    #[test]
    fn replicas_queue_into_one_outbox_and_one_sends_until_it_dies() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared(&url, "hl7").unwrap();
        let b = Outbox::open_shared(&url, "hl7").unwrap();
        let b_fhir = Outbox::open_shared(&url, "fhir").unwrap();
        assert!(a.is_shared());
        assert!(a.lead().unwrap(), "the first replica sends");
        assert!(!b.lead().unwrap(), "one sender per interface");
        assert!(b_fhir.lead().unwrap(), "each interface has its own sender");

        // Both queue; the same key twice is one message.
        assert!(a.add("C1", "1.1", "m1", 10).unwrap());
        assert!(b.add("C2", "1.2", "m2", 11).unwrap());
        assert!(!b.add("C1", "1.1", "m1", 12).unwrap());
        assert!(b_fhir.add("C1", "1.1", "bundle", 12).unwrap());
        let first = a.next().unwrap().unwrap();
        assert_eq!((first.key.as_str(), first.message.as_str()), ("C1", "m1"));
        a.retry(first.id, "connection refused", 500).unwrap();
        a.sent(first.id, 600).unwrap();

        // A dies with C2 unsent: B takes over from there.
        drop(a);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !b.lead().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was not freed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let second = b.next().unwrap().unwrap();
        assert_eq!(second.key, "C2");
        b.fail(second.id, "AR: no such patient").unwrap();
        let t = b.tally().unwrap();
        assert_eq!((t.ready, t.sent, t.failed), (0, 1, 1));
        assert_eq!(b.list(Some("failed"), 10).unwrap()[0].key, "C2");
        assert!(b.contains("C2").unwrap() && !b.contains("C9").unwrap());
        assert_eq!(b.requeue("C2", 700).unwrap(), Requeued::Yes);
        assert_eq!(b.next().unwrap().unwrap().attempts, 0);
        assert_eq!(b.purge_sent(601).unwrap(), 1);
        assert_eq!(b_fhir.tally().unwrap().ready, 1, "interfaces apart");
    }
}
