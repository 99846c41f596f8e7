//! Several writers on one database, as replicas of the service share one
//! PostgreSQL worklist (and as `score` and `serve` may share one SQLite
//! file): nothing is lost, every study sums up all its images, and a
//! reader following the change log by sequence number sees every event
//! once, in order — even while the writers are committing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::backends::Db;
use crate::worklist_store::record;
use cxr_findings::priority::Priority;
use cxr_worklist::WorklistStore;

fn writers_on_one_database_lose_nothing_and_followers_miss_no_event(db: &Db) {
    let replicas: Vec<Arc<dyn WorklistStore>> = (0..2).map(|_| Arc::from(db.open())).collect();
    let done = Arc::new(AtomicBool::new(false));
    // A follower, reading "after the last sequence I saw" while the
    // writers commit, as a WatchWorklist stream does.
    let follower = {
        let store = Arc::from(db.open());
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let store: Arc<dyn WorklistStore> = store;
            let mut seen = Vec::new();
            let mut last = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.events_after(last, 50).unwrap();
                for e in &batch {
                    seen.push(e.sequence);
                    last = e.sequence;
                }
                if batch.is_empty() && finished {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&replicas[w % 2]);
            std::thread::spawn(move || {
                for i in 0..40 {
                    let study = format!("study-{}", i % 5);
                    let priority = if i % 7 == 0 {
                        Priority::Urgent
                    } else {
                        Priority::Routine
                    };
                    store
                        .put_image(&record(
                            &study,
                            &format!("img-{w}-{i}"),
                            priority,
                            0.1 + (i as f32) / 100.0,
                            1_000 + i,
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = follower.join().unwrap();

    let all: Vec<u64> = replicas[1]
        .events_after(0, 10_000)
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(
        all,
        (1..=160).collect::<Vec<u64>>(),
        "{}: one event per image, numbered without gaps",
        db.name
    );
    assert_eq!(
        seen, all,
        "{}: the follower saw every event, in order",
        db.name
    );
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        160,
        "{}: and each once",
        db.name
    );
    for s in 0..5 {
        let (study, images) = replicas[0].get_study(&format!("study-{s}")).unwrap();
        assert_eq!(images.len(), 32, "{}", db.name);
        assert_eq!(
            study.image_count, 32,
            "{}: the study counts every image",
            db.name
        );
        // i = 0, 35 (study 0), 7 (2), 14 (4), 21 (1), 28 (3): one urgent
        // image per study and writer.
        assert_eq!(study.assessment.priority, Priority::Urgent, "{}", db.name);
    }
}

fn a_commit_on_one_replica_wakes_the_watchers_of_another(db: &Db) {
    let (a, b) = (db.open(), db.open());
    let (tx, rx) = mpsc::channel::<u64>();
    let wants = Arc::new(AtomicBool::new(true));
    let still = Arc::clone(&wants);
    let shared = b.watch_commits(Arc::new(move |seq| {
        let _ = tx.send(seq);
        still.load(Ordering::SeqCst)
    }));
    if db.name == "sqlite" {
        // Only this process writes an embedded database: the pipeline
        // announces its own events, and the store has no feed.
        assert!(!shared);
        return;
    }
    assert!(shared);
    // The feed is up once it asks for a first look (after LISTEN).
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    let stored = a
        .put_image(&record("s", "img", Priority::Critical, 0.9, 5))
        .unwrap();
    let woke = loop {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            0 => continue,
            seq => break seq,
        }
    };
    assert_eq!(woke, stored.sequence);
    let (_, status_seq) = a
        .update_status("s", cxr_worklist::StudyStatus::Read, "dr.an", 6)
        .unwrap();
    let woke = loop {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            0 => continue,
            seq => break seq,
        }
    };
    assert_eq!(woke, status_seq);
    // A watcher that has gone stops the feed.
    wants.store(false, Ordering::SeqCst);
}

crate::on_both_backends!(
    writers_on_one_database_lose_nothing_and_followers_miss_no_event,
    a_commit_on_one_replica_wakes_the_watchers_of_another,
);
