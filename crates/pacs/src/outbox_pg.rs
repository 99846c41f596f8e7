//! The outbox in PostgreSQL, shared by every replica of the service that
//! uses the same worklist database: any replica can send any result, and
//! leases make sure that two never send the same one at once.
//!
//! Rows are as in the SQLite outbox, with the object's bytes in the row
//! (`data`, cleared once sent) instead of a file on one replica's disk.
//! A sender takes due rows with `FOR UPDATE SKIP LOCKED` and leases them
//! for [`SEND_LEASE_MS`], renewing the lease every [`LEASE_RENEW_MS`] while
//! its association lasts; another replica takes a row only when its lease
//! has run out (its sender died mid-batch), so a killed replica strands
//! what it was sending for half a minute at most. A held row (its study not yet
//! final) is released by the replica that holds the study after its quiet
//! period, or by any replica once [`HOLD_LEASE_MS`] has passed, so a
//! replica that dies holding a study does not strand its results.
//!
//! Rows are timed by the database's clock, not each replica's: replicas on
//! different hosts agree on when a lease or a backoff runs out however far
//! apart their own clocks are (a replica whose clock ran ahead would
//! otherwise take over rows another is still sending).
//!
//! The synchronous PostgreSQL client must not run on an async runtime's
//! threads (it blocks on a runtime of its own), and the outbox is called
//! from both: every statement runs on one thread of the outbox's own.

use postgres::{Client, GenericClient};

use super::config::RetryPolicy;
use super::derived::ResultObject;
use super::outbox::{Counts, Entry, EntryState, OutboxError};

/// How long a sender owns the rows it took without renewing the lease.
pub const SEND_LEASE_MS: i64 = 30_000;

/// How often a sender renews its lease on a batch it is still sending: a
/// third of the lease, so two renewals may be late before it runs out.
pub const LEASE_RENEW_MS: i64 = SEND_LEASE_MS / 3;

/// How long a study's results may stay held before any replica releases
/// them (their own replica releases them after the quiet period).
pub const HOLD_LEASE_MS: i64 = 3_600_000;

/// Serialises migrations of replicas starting together.
const MIGRATE_LOCK: i64 = 0x6378_725f_7061_6373; // "cxr_pacs"

const MIGRATIONS: &[&str] = &["CREATE TABLE pacs_outbox (
        id BIGSERIAL PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        sop_class_uid TEXT NOT NULL,
        kind TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        data BYTEA,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL DEFAULT 0,
        last_error TEXT,
        created_ms BIGINT NOT NULL,
        sent_ms BIGINT,
        lease_owner TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX pacs_outbox_due ON pacs_outbox (state, next_attempt_ms);
    CREATE INDEX pacs_outbox_study ON pacs_outbox (study_uid, state);"];

const SELECT: &str = "SELECT id, sop_instance_uid, sop_class_uid, kind, study_uid, state,
    attempts, last_error, created_ms, sent_ms, data FROM pacs_outbox";

/// Whose clock times the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The database server's: every replica agrees (the service).
    Database,
    /// The callers' `now_ms` (tests that step through hours).
    #[cfg_attr(not(test), allow(dead_code))]
    Caller,
}

impl Clock {
    /// Now, in milliseconds since the epoch, by this clock; `caller` is
    /// the caller's own idea of it.
    fn now(self, c: &mut impl GenericClient, caller: i64) -> Result<i64, postgres::Error> {
        match self {
            Clock::Caller => Ok(caller),
            Clock::Database => Ok(c
                .query_one(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
                    &[],
                )?
                .get(0)),
        }
    }
}

/// The shared outbox.
pub(crate) struct PgOutbox {
    db: cxr_worklist::PgThread<()>,
    /// This process, as a lease owner.
    owner: String,
    retry: RetryPolicy,
    clock: Clock,
}

/// PostgreSQL text cannot hold NUL.
fn text(s: &str) -> String {
    s.replace('\0', "")
}

fn entry(r: &postgres::Row) -> Entry {
    Entry {
        id: r.get(0),
        sop_instance_uid: r.get(1),
        sop_class_uid: r.get(2),
        kind: r.get(3),
        study_uid: r.get(4),
        path: std::path::PathBuf::new(),
        state: EntryState::parse(r.get(5)),
        attempts: r.get::<_, i32>(6).max(0) as u32,
        last_error: r.get(7),
        created_ms: r.get(8),
        sent_ms: r.get(9),
        data: r.get(10),
    }
}

impl PgOutbox {
    /// Connects to `url` (the worklist's database) and creates or migrates
    /// the outbox table. `owner` names this replica across its restarts
    /// (its host name and state directory): what it held before a restart
    /// it holds again, and rows it had leased it may take again at once.
    /// Rows are timed by `clock`.
    pub(crate) fn open(
        url: &str,
        owner: &str,
        retry: RetryPolicy,
        clock: Clock,
    ) -> Result<PgOutbox, OutboxError> {
        let outbox = PgOutbox {
            db: cxr_worklist::PgThread::spawn("cxr-outbox-pg", url).map_err(OutboxError::Shared)?,
            owner: text(owner),
            retry,
            clock,
        };
        outbox.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS cxr_pacs_schema (version INTEGER NOT NULL)",
            )?;
            let version: i32 = tx
                .query_opt("SELECT version FROM cxr_pacs_schema", &[])?
                .map_or(0, |r| r.get(0));
            for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
                tx.batch_execute(sql)?;
            }
            tx.execute("DELETE FROM cxr_pacs_schema", &[])?;
            tx.execute(
                "INSERT INTO cxr_pacs_schema VALUES ($1)",
                &[&(MIGRATIONS.len() as i32)],
            )?;
            tx.commit()
        })?;
        Ok(outbox)
    }

    /// Runs `f` on the outbox's thread with a live connection.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.db.run(move |c, ()| f(c)).map_err(OutboxError::Shared)
    }

    pub(crate) fn add(
        &self,
        study_uid: &str,
        objects: &[ResultObject],
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        let study = text(study_uid);
        let rows: Vec<(String, String, String, Vec<u8>)> = objects
            .iter()
            .map(|o| {
                (
                    text(&o.sop_instance_uid),
                    text(&o.sop_class_uid),
                    o.kind.to_string(),
                    o.file.clone(),
                )
            })
            .collect();
        let (owner, clock) = (self.owner.clone(), self.clock);
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let now_ms = clock.now(&mut tx, now_ms)?;
            let hold_until = now_ms + HOLD_LEASE_MS;
            let mut added = 0;
            for (sop, class, kind, data) in &rows {
                added += tx.execute(
                    "INSERT INTO pacs_outbox (sop_instance_uid, sop_class_uid, kind, study_uid,
                        data, state, created_ms, lease_owner, lease_until)
                     VALUES ($1, $2, $3, $4, $5, 'held', $6, $7, $8)
                     ON CONFLICT (sop_instance_uid) DO UPDATE SET
                        state = 'held', attempts = 0, next_attempt_ms = 0, last_error = NULL,
                        created_ms = EXCLUDED.created_ms, data = EXCLUDED.data,
                        lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
                     WHERE pacs_outbox.state = 'failed'",
                    &[sop, class, kind, &study, data, &now_ms, &owner, &hold_until],
                )? as usize;
            }
            tx.commit()?;
            Ok(added)
        })
    }

    pub(crate) fn release_study(&self, study_uid: &str) -> Result<usize, OutboxError> {
        let study = text(study_uid);
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE pacs_outbox SET state = 'ready', lease_owner = NULL, lease_until = 0
                 WHERE study_uid = $1 AND state = 'held'",
                &[&study],
            )? as usize)
        })
    }

    /// Studies this replica holds results of (after a restart their quiet
    /// period starts again).
    pub(crate) fn held_studies(&self) -> Result<Vec<String>, OutboxError> {
        let owner = self.owner.clone();
        self.run(move |c| {
            Ok(c.query(
                "SELECT DISTINCT study_uid FROM pacs_outbox
                 WHERE state = 'held' AND lease_owner = $1",
                &[&owner],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    /// Ready rows whose time has come and that no other sender holds,
    /// leased to this one; gives up those past the retry window and
    /// releases holds whose lease ran out first.
    pub(crate) fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let give_up_after_ms = (self.retry.give_up_after_h as i64) * 3_600_000;
        let (owner, clock, limit) = (self.owner.clone(), self.clock, limit as i64);
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let now_ms = clock.now(&mut tx, now_ms)?;
            let (give_up_before, lease_until) = (now_ms - give_up_after_ms, now_ms + SEND_LEASE_MS);
            tx.execute(
                "UPDATE pacs_outbox SET state = 'failed', data = NULL
                 WHERE state = 'ready' AND attempts > 0 AND created_ms < $1
                   AND lease_until <= $2",
                &[&give_up_before, &now_ms],
            )?;
            tx.execute(
                "UPDATE pacs_outbox SET state = 'ready', lease_owner = NULL, lease_until = 0
                 WHERE state = 'held' AND lease_until < $1",
                &[&now_ms],
            )?;
            let mut due: Vec<Entry> = tx
                .query(
                    &format!(
                        "UPDATE pacs_outbox SET lease_owner = $3, lease_until = $4
                         WHERE id IN (
                            SELECT id FROM pacs_outbox
                            WHERE state = 'ready' AND next_attempt_ms <= $1
                              AND (lease_until <= $1 OR lease_owner = $3)
                            ORDER BY id LIMIT $2
                            FOR UPDATE SKIP LOCKED)
                         RETURNING {}",
                        SELECT
                            .trim_start_matches("SELECT ")
                            .trim_end_matches(" FROM pacs_outbox")
                    ),
                    &[&now_ms, &limit, &owner, &lease_until],
                )?
                .iter()
                .map(entry)
                .collect();
            tx.commit()?;
            due.sort_by_key(|e| e.id);
            Ok(due)
        })
    }

    /// Extends this replica's lease on the rows `ids` it is still sending
    /// (rows sent, given back or taken by another replica meanwhile are
    /// left alone); returns how many it renewed.
    pub(crate) fn renew_leases(&self, ids: &[i64], now_ms: i64) -> Result<usize, OutboxError> {
        let (ids, owner, clock) = (ids.to_vec(), self.owner.clone(), self.clock);
        self.run(move |c| {
            let until = clock.now(c, now_ms)? + SEND_LEASE_MS;
            Ok(c.execute(
                "UPDATE pacs_outbox SET lease_until = $3
                 WHERE id = ANY($1) AND lease_owner = $2 AND state = 'ready'",
                &[&ids, &owner, &until],
            )? as usize)
        })
    }

    pub(crate) fn next_due_in(&self, now_ms: i64) -> Result<Option<i64>, OutboxError> {
        let clock = self.clock;
        self.run(move |c| {
            let now_ms = clock.now(c, now_ms)?;
            let next: Option<i64> = c
                .query_one(
                    "SELECT MIN(GREATEST(next_attempt_ms, lease_until))::BIGINT FROM pacs_outbox
                     WHERE state = 'ready'",
                    &[],
                )?
                .get(0);
            Ok(next.map(|t| (t - now_ms).max(0)))
        })
    }

    pub(crate) fn mark_sent(&self, entry: &Entry, now_ms: i64) -> Result<(), OutboxError> {
        let (id, clock) = (entry.id, self.clock);
        self.run(move |c| {
            let now_ms = clock.now(c, now_ms)?;
            c.execute(
                "UPDATE pacs_outbox SET state = 'sent', sent_ms = $2, last_error = NULL,
                    data = NULL, lease_owner = NULL, lease_until = 0
                 WHERE id = $1 AND state = 'ready'",
                &[&id, &now_ms],
            )?;
            Ok(())
        })
    }

    pub(crate) fn mark_failed(
        &self,
        entry: &Entry,
        error: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let attempts = entry.attempts + 1;
        let backoff = self.retry.backoff_ms(attempts);
        let (id, error, attempts, clock) = (entry.id, text(error), attempts as i32, self.clock);
        self.run(move |c| {
            let next = clock.now(c, now_ms)? + backoff;
            c.execute(
                "UPDATE pacs_outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4,
                    lease_owner = NULL, lease_until = 0
                 WHERE id = $1 AND state = 'ready'",
                &[&id, &attempts, &next, &error],
            )?;
            Ok(())
        })
    }

    pub(crate) fn mark_all_failed(
        &self,
        entries: &[Entry],
        error: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let rows: Vec<(i64, i32, i64)> = entries
            .iter()
            .map(|e| {
                let attempts = e.attempts + 1;
                (e.id, attempts as i32, self.retry.backoff_ms(attempts))
            })
            .collect();
        let (error, clock) = (text(error), self.clock);
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let now_ms = clock.now(&mut tx, now_ms)?;
            for (id, attempts, backoff) in &rows {
                let next = now_ms + backoff;
                tx.execute(
                    "UPDATE pacs_outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4,
                        lease_owner = NULL, lease_until = 0
                     WHERE id = $1 AND state = 'ready'",
                    &[id, attempts, &next, &error],
                )?;
            }
            tx.commit()
        })
    }

    pub(crate) fn counts(&self) -> Result<Counts, OutboxError> {
        let rows: Vec<(String, i64)> = self.run(|c| {
            Ok(c.query(
                "SELECT state, COUNT(*) FROM pacs_outbox GROUP BY state",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        Ok(Counts::tally(rows))
    }

    pub(crate) fn entries(&self) -> Result<Vec<Entry>, OutboxError> {
        self.run(|c| {
            Ok(c.query(&format!("{SELECT} ORDER BY id"), &[])?
                .iter()
                .map(entry)
                .collect())
        })
    }

    pub(crate) fn purge_sent(&self, before_ms: i64) -> Result<usize, OutboxError> {
        self.run(move |c| {
            Ok(c.execute(
                "DELETE FROM pacs_outbox WHERE state = 'sent' AND sent_ms < $1",
                &[&before_ms],
            )? as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;
    use cxr_worklist::testing::ThrowawayPostgres;
    use std::collections::BTreeSet;

    fn object(uid: &str) -> ResultObject {
        ResultObject {
            kind: "sr",
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.34".into(),
            sop_instance_uid: uid.into(),
            file: format!("DICM {uid}").into_bytes(),
        }
    }

    fn uids(entries: &[Entry]) -> BTreeSet<String> {
        entries.iter().map(|e| e.sop_instance_uid.clone()).collect()
    }

    #[test]
    fn replicas_share_the_outbox_and_never_take_the_same_row_at_once() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared_on_caller_clock(&url, "host-a:/data", RetryPolicy::default())
            .unwrap();
        let b = Outbox::open_shared_on_caller_clock(&url, "host-b:/data", RetryPolicy::default())
            .unwrap();
        assert!(a.is_shared());

        // A holds study S1; B sees nothing due until A releases it.
        let objects: Vec<ResultObject> = (0..40).map(|i| object(&format!("1.{i}"))).collect();
        assert_eq!(a.add("S1", &objects, 1_000).unwrap(), 40);
        assert_eq!(
            a.add("S1", &objects[..5], 1_001).unwrap(),
            0,
            "same UIDs: nothing new"
        );
        assert!(b.due(2_000, 100).unwrap().is_empty());
        assert_eq!(a.held_studies().unwrap(), ["S1"]);
        assert!(b.held_studies().unwrap().is_empty(), "B holds nothing");
        assert_eq!(a.release_study("S1").unwrap(), 40);

        // Both senders take batches at once: disjoint, and together all.
        let (ta, tb) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.due(2_000, 25).unwrap());
            let tb = s.spawn(|| b.due(2_000, 25).unwrap());
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(uids(&ta).is_disjoint(&uids(&tb)), "a row leased twice");
        assert_eq!(ta.len() + tb.len(), 40);
        assert_eq!(
            ta[0].data.as_deref(),
            Some(format!("DICM {}", ta[0].sop_instance_uid).as_bytes())
        );

        // A sends its batch; B's sender dies without recording anything.
        for e in &ta {
            a.mark_sent(e, 2_500).unwrap();
        }
        assert!(a.due(3_000, 100).unwrap().is_empty(), "B's rows are leased");
        // Once B's lease has run out, A takes them over.
        let later = 2_000 + SEND_LEASE_MS + 1;
        let taken = a.due(later, 100).unwrap();
        assert_eq!(uids(&taken), uids(&tb));
        for e in &taken {
            a.mark_sent(e, later).unwrap();
        }
        let counts = b.counts().unwrap();
        assert_eq!((counts.sent, counts.ready, counts.held), (40, 0, 0));
        assert!(a
            .entries()
            .unwrap()
            .iter()
            .all(|e| e.data.is_none() && e.sent_ms.is_some()));
    }

    #[test]
    fn a_restarted_replica_takes_back_its_rows_and_a_dead_one_strands_nothing() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared_on_caller_clock(&url, "host-a:/data", RetryPolicy::default())
            .unwrap();
        a.add("S1", &[object("1.1")], 0).unwrap();
        a.release_study("S1").unwrap();
        a.add("S2", &[object("2.1")], 0).unwrap();
        assert_eq!(a.due(10, 10).unwrap().len(), 1);
        drop(a); // killed: 1.1 leased, S2 held

        // The same replica started again holds S2 again and may resend 1.1
        // at once (it knows it is not sending it any more).
        let a = Outbox::open_shared_on_caller_clock(&url, "host-a:/data", RetryPolicy::default())
            .unwrap();
        assert_eq!(a.held_studies().unwrap(), ["S2"]);
        let retaken = a.due(20, 10).unwrap();
        assert_eq!(uids(&retaken), BTreeSet::from(["1.1".to_string()]));
        a.mark_sent(&retaken[0], 25).unwrap();

        // Another replica releases S2 only once the hold lease has run out.
        let b = Outbox::open_shared_on_caller_clock(&url, "host-b:/data", RetryPolicy::default())
            .unwrap();
        assert!(b.due(30, 10).unwrap().is_empty());
        let due = b.due(HOLD_LEASE_MS + 1, 10).unwrap();
        assert_eq!(uids(&due), BTreeSet::from(["2.1".to_string()]));

        // A failure backs off, then the row is due again; purge keeps
        // unsent rows.
        b.mark_failed(&due[0], "refused", HOLD_LEASE_MS + 2)
            .unwrap();
        assert!(b.due(HOLD_LEASE_MS + 3, 10).unwrap().is_empty());
        let wait = b.next_due_in(HOLD_LEASE_MS + 3).unwrap().unwrap();
        assert!(wait > 0);
        let again = b.due(HOLD_LEASE_MS + 3 + wait, 10).unwrap();
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("refused"));
        b.mark_sent(&again[0], HOLD_LEASE_MS + 4 + wait).unwrap();
        a.add("S3", &[object("3.1")], 0).unwrap();
        a.release_study("S3").unwrap();
        assert_eq!(b.purge_sent_rows(i64::MAX).unwrap(), 2, "the sent rows go");
        let counts = b.counts().unwrap();
        assert_eq!((counts.sent, counts.ready), (0, 1), "the unsent row stays");
    }

    #[test]
    fn a_batch_that_found_no_destination_is_given_back_at_once() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared_on_caller_clock(&url, "host-a:/data", RetryPolicy::default())
            .unwrap();
        let b = Outbox::open_shared_on_caller_clock(&url, "host-b:/data", RetryPolicy::default())
            .unwrap();
        a.add("S1", &[object("1.1"), object("1.2"), object("1.3")], 0)
            .unwrap();
        a.release_study("S1").unwrap();
        let due = a.due(10, 10).unwrap();
        assert_eq!(due.len(), 3);
        assert!(b.due(20, 10).unwrap().is_empty(), "leased by a");
        a.mark_all_failed(&due, "connection refused", 30).unwrap();
        // Not stranded for the send lease: due to any replica after the
        // first backoff, each with its attempt counted.
        let wait = b.next_due_in(30).unwrap().unwrap();
        assert!(wait > 0 && wait < SEND_LEASE_MS, "{wait}");
        let again = b.due(30 + wait, 10).unwrap();
        assert_eq!(uids(&again), uids(&due));
        assert!(again
            .iter()
            .all(|e| e.attempts == 1 && e.last_error.as_deref() == Some("connection refused")));
    }

    #[test]
    fn a_lease_renewed_while_sending_keeps_the_batch_and_a_dead_one_runs_out() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared_on_caller_clock(&url, "host-a:/data", RetryPolicy::default())
            .unwrap();
        let b = Outbox::open_shared_on_caller_clock(&url, "host-b:/data", RetryPolicy::default())
            .unwrap();
        let objects: Vec<ResultObject> = (0..4).map(|i| object(&format!("1.{i}"))).collect();
        a.add("S1", &objects, 0).unwrap();
        a.release_study("S1").unwrap();
        let batch = a.due(10, 10).unwrap();
        let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
        a.mark_sent(&batch[0], 20).unwrap();

        // A slow PACS: A is still sending when its first lease would run
        // out, and has renewed it; the sent row is not renewed.
        let renewed_at = 10 + SEND_LEASE_MS - 1;
        assert_eq!(a.renew_leases(&ids, renewed_at).unwrap(), 3);
        assert!(
            b.due(10 + SEND_LEASE_MS + 1, 10).unwrap().is_empty(),
            "a renewed lease was taken over"
        );
        // B may not renew what A holds.
        assert_eq!(b.renew_leases(&ids, renewed_at).unwrap(), 0);

        // A is killed: no more renewals, and B takes the rest once the
        // renewed lease has run out.
        let taken = b.due(renewed_at + SEND_LEASE_MS + 1, 10).unwrap();
        assert_eq!(uids(&taken), uids(&batch[1..]));
        // A's late renewal (a replica that stalled past its lease) no
        // longer touches rows B holds now.
        assert_eq!(
            a.renew_leases(&ids, renewed_at + SEND_LEASE_MS + 2)
                .unwrap(),
            0
        );
    }

    #[test]
    fn leases_and_backoffs_run_on_the_database_clock() {
        let url = ThrowawayPostgres::shared().create_database();
        let a = Outbox::open_shared(&url, "host-a:/data", RetryPolicy::default()).unwrap();
        let b = Outbox::open_shared(&url, "host-b:/data", RetryPolicy::default()).unwrap();
        let local = cxr_worklist::now_ms();
        let hour = 3_600_000;
        a.add("S1", &[object("1.1"), object("1.2")], local).unwrap();
        a.release_study("S1").unwrap();
        let taken = a.due(local, 10).unwrap();
        assert_eq!(taken.len(), 2);

        // B's clock runs an hour ahead: A's lease has not run out for it.
        assert!(b.due(local + hour, 10).unwrap().is_empty());
        assert_eq!(b.renew_leases(&[taken[0].id], local + hour).unwrap(), 0);
        let rows = a.entries().unwrap();
        assert!(
            rows.iter().all(|e| (e.created_ms - local).abs() < 60_000),
            "created by the database clock"
        );

        // A's clock runs an hour behind: the backoff after a failure is
        // still the policy's 5 s, for B as for A.
        a.mark_failed(&taken[0], "refused", local - hour).unwrap();
        a.mark_sent(&taken[1], local - hour).unwrap();
        let wait = b.next_due_in(local + hour).unwrap().unwrap();
        assert!(wait > 3_000 && wait <= 5_000, "{wait}");
        assert!(b.due(local + hour, 10).unwrap().is_empty(), "backing off");
        let sent = a.entries().unwrap()[1].sent_ms.unwrap();
        assert!((sent - local).abs() < 60_000, "sent at {sent}, now {local}");
    }
}
