//! Study grouping: the results of a study go back to PACS only once the
//! study has been quiet for `study_quiet_s` with all its images analysed;
//! an image arriving inside that period restarts it, and a late image
//! (after the study was final) has its results sent after its own quiet
//! period, without sending the earlier ones again. The destination is
//! dcmtk's `storescp` on loopback.

use crate::pacs_support;

use std::path::Path;
use std::time::{Duration, Instant};

use cxr_pacs::outbox::{Entry, EntryState};
use cxr_pacs::Destination;
use cxr_synth::OutputSyntax;
use pacs_support::*;

const QUIET_S: u64 = 4;

/// A film moved into `study` with dcmtk's `dcmodify` (a second image of the
/// same study, as a modality would send).
fn into_study(path: &Path, study: &str) {
    let o = dcmtk(
        "dcmodify",
        &[
            "-nb",
            "-m",
            &format!("(0020,000d)={study}"),
            path.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn store(port: u16, file: &Path) {
    let o = dcmtk(
        "storescu",
        &[
            "-aet",
            "STORESCU",
            "-aec",
            "CXR_TRIAGE",
            "127.0.0.1",
            &port.to_string(),
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn states(entries: &[Entry]) -> Vec<EntryState> {
    entries.iter().map(|e| e.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_is_sent_after_its_quiet_period_and_a_late_image_after_its_own() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let pacs_port = free_port();
    let mut peer = storescp(inbox.path(), pacs_port);

    let (first, _, study) = film(films.path(), 71, 0, OutputSyntax::ExplicitLe, true);
    let (second, second_sop, _) = film(films.path(), 71, 1, OutputSyntax::ExplicitLe, false);
    let (late, late_sop, _) = film(films.path(), 71, 2, OutputSyntax::ExplicitLe, true);
    into_study(&second, &study);
    into_study(&late, &study);

    let (pipeline, store_) = pipeline(data.path());
    warm(&pipeline).await;
    let mut config = dicom_config();
    config.study_quiet_s = QUIET_S;
    config.destination = Some(Destination {
        ae_title: "STORESCP".into(),
        host: "127.0.0.1".into(),
        port: pacs_port,
    });
    let pacs = start_pacs(&config, data.path(), &pipeline).await;
    let port = pacs.local_addr().port();
    let outbox = pacs
        .outbox()
        .expect("a destination makes an outbox")
        .clone();
    let entries = || outbox.entries().unwrap();

    // First image: its SC and SR are made and held, nothing is sent.
    store(port, &first);
    wait_for(Duration::from_secs(60), "the first image's results", || {
        entries().len() == 2
    })
    .await;
    assert_eq!(states(&entries()), [EntryState::Held; 2]);
    assert!(received(inbox.path()).is_empty());

    // A second image of the study inside the quiet period: still held,
    // and the study waits for a quiet period counted from it.
    store(port, &second);
    let second_stored = Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the second image's results",
        || entries().len() == 4,
    )
    .await;
    assert_eq!(in_worklist(&*store_, &study, &second_sop), Some(true));
    let held = states(&entries());
    assert!(
        held.iter().all(|s| *s == EntryState::Held),
        "released before the study was quiet: {held:?}"
    );
    assert!(received(inbox.path()).is_empty());

    // The study goes final: all four objects arrive, none before the
    // quiet period after the last image.
    wait_for(Duration::from_secs(60), "the study's 4 results", || {
        received(inbox.path()).len() == 4
    })
    .await;
    assert!(
        second_stored.elapsed() >= Duration::from_secs(QUIET_S) - Duration::from_millis(500),
        "sent {:?} after the last image, quiet period {QUIET_S} s",
        second_stored.elapsed()
    );
    wait_for(Duration::from_secs(10), "all marked sent", || {
        entries().iter().all(|e| e.state == EntryState::Sent)
    })
    .await;
    for e in entries() {
        assert_eq!(e.study_uid, study);
    }

    // A late image updates the study: its results are held, then sent after
    // their own quiet period; the four already confirmed are not sent again.
    store(port, &late);
    let late_stored = Instant::now();
    wait_for(Duration::from_secs(60), "the late image's results", || {
        entries().len() == 6
    })
    .await;
    let now = entries();
    assert_eq!(
        now.iter().filter(|e| e.state == EntryState::Sent).count(),
        4
    );
    assert_eq!(in_worklist(&*store_, &study, &late_sop), Some(true));
    wait_for(
        Duration::from_secs(60),
        "the late image's 2 results",
        || received(inbox.path()).len() == 6,
    )
    .await;
    assert!(late_stored.elapsed() >= Duration::from_secs(QUIET_S) - Duration::from_millis(500));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received(inbox.path());
    assert_eq!(got.len(), 6, "sent twice: {got:?}");
    // Every object filed under the original study.
    for p in &got {
        let obj = dicom_object::open_file(p).unwrap();
        let uid = obj
            .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        assert_eq!(uid, study);
    }

    pacs.shutdown().await;
    let _ = peer.kill();
    let _ = peer.wait();
}
