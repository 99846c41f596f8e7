//! Attacks from the security review (issue 15) replayed on loopback against
//! the service, each now getting a bounded, clear answer: identifiers that
//! are not UIDs are refused and never echoed, an oversized `by` cannot
//! poison the worklist, megabyte messages to methods that carry no file are
//! refused before decoding, out-of-range sequence numbers and timestamps are
//! refused instead of wrapping, and new evidence reopens a read study.

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_synth::ViewChoice;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use crate::service_grpc::{channel, config, start, synth, wait_serving};

/// `bytes` with its Study and SOP Instance UIDs replaced.
pub(crate) fn with_uids(bytes: &[u8], study: &str, sop: &str) -> Vec<u8> {
    let mut obj = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).unwrap();
    obj.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study),
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(sop),
    ));
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_identifiers_and_arguments_get_bounded_clear_refusals() {
    let data = tempfile::tempdir().unwrap();
    let (film, study, sop) = synth(8101, false, ViewChoice::Pa);
    let running = start(config(data.path())).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;
    let mut client = TriageClient::new(ch);
    client
        .analyze(pb::AnalyzeRequest {
            dicom: film.clone().into(),
            options: None,
        })
        .await
        .unwrap();

    // SOP Instance UIDs that are not UIDs: refused, and not echoed.
    let long = "1.".repeat(30_000) + "1";
    for bad in [
        long.as_str(),
        "1.2.../../etc/passwd",
        "1.2.3\u{1b}[31m",
        "1.2.3\r\nX: y",
    ] {
        let err = client
            .analyze(pb::AnalyzeRequest {
                dicom: with_uids(&film, &study, bad).into(),
                options: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err}");
        assert!(!err.message().contains("passwd") && err.message().len() < 200);
    }
    // A Study Instance UID that is not one: the image is still filed, in a
    // study of its own, without the bad value.
    let r = client
        .analyze(pb::AnalyzeRequest {
            dicom: with_uids(&film, "1.2.3/../../x", "1.2.826.0.1.3680043.10.54321.1").into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.identity.unwrap().study_instance_uid,
        "no-study:1.2.826.0.1.3680043.10.54321.1"
    );

    let err = client
        .get_study(pb::GetStudyRequest {
            study_instance_uid: long.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().len() < 200, "the UID is not echoed");

    // An oversized or control-laden `by` is refused; the worklist still
    // lists for everyone.
    for by in ["x".repeat(200), "dr.lan\u{0}".to_string()] {
        let err = client
            .update_status(pb::UpdateStatusRequest {
                study_instance_uid: study.clone(),
                status: pb::StudyStatus::Claimed as i32,
                by,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    // Messages of methods that carry no file are small: a megabyte `by`
    // or UID is refused before it is decoded.
    let err = client
        .update_status(pb::UpdateStatusRequest {
            study_instance_uid: study.clone(),
            status: pb::StudyStatus::Claimed as i32,
            by: "x".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let err = client
        .get_study(pb::GetStudyRequest {
            study_instance_uid: "1.".repeat(100_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let page = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.studies.iter().any(|s| s.study_instance_uid == study));

    // Sequence numbers and timestamps out of range do not wrap.
    let err = client
        .watch_worklist(pb::WatchWorklistRequest {
            after_sequence: 1 << 63,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .list_worklist(pb::ListWorklistRequest {
            received_after: Some(prost_types::Timestamp {
                seconds: 1 << 62,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let _ = sop;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_image_after_the_study_was_read_reopens_it() {
    let data = tempfile::tempdir().unwrap();
    let (routine, study, _) = synth(8201, false, ViewChoice::Pa);
    let (positive, _, _) = synth(8202, true, ViewChoice::Pa);
    let late = with_uids(&positive, &study, "1.2.826.0.1.3680043.10.54321.2");
    let running = start(config(data.path())).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &routine).await;
    let mut client = TriageClient::new(ch);
    let first = client
        .analyze(pb::AnalyzeRequest {
            dicom: routine.into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.study_priority.unwrap().priority,
        pb::Priority::Routine as i32
    );
    client
        .update_status(pb::UpdateStatusRequest {
            study_instance_uid: study.clone(),
            status: pb::StudyStatus::Read as i32,
            by: "dr.lan".into(),
        })
        .await
        .unwrap();
    let listed = |page: &pb::ListWorklistResponse| {
        page.studies
            .iter()
            .find(|s| s.study_instance_uid == study)
            .cloned()
    };
    let page = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed(&page).is_none(), "a read study leaves the worklist");

    let r = client
        .analyze(pb::AnalyzeRequest {
            dicom: late.into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    let raised = r.study_priority.unwrap().priority;
    assert!(
        raised >= pb::Priority::Urgent as i32,
        "the late film: {raised}"
    );
    let page = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    let back = listed(&page).expect("the study is back on the default worklist");
    assert_eq!(back.status, pb::StudyStatus::New as i32);
    assert!(back.reopened_at.is_some());
    assert!(
        back.reopened_reason.contains("after the study was read"),
        "{}",
        back.reopened_reason
    );
    running.stop().await;
}

/// A client that starts an upload and then sends nothing cannot hold the
/// analysis slot: after `limits.upload_idle_s` its upload fails and the
/// slot goes to a real upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_upload_frees_its_analysis_slot() {
    use tokio_stream::StreamExt as _;
    let data = tempfile::tempdir().unwrap();
    let (film, _, _) = synth(8501, false, ViewChoice::Pa);
    let mut c = config(data.path());
    c.limits.max_concurrent_analyses = 1;
    c.limits.upload_idle_s = 2;
    let running = start(c).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;

    // One chunk, then silence (the stream never ends).
    let first = pb::AnalyzeChunk {
        options: None,
        data: film[..1000].to_vec().into(),
    };
    let stalled = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let mut slow = TriageClient::new(ch.clone());
    let stalled = tokio::spawn(async move { slow.analyze_stream(stalled).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut client = TriageClient::new(ch);
    let started = std::time::Instant::now();
    let mut refused_while_held = 0;
    let response = loop {
        match client
            .analyze(pb::AnalyzeRequest {
                dicom: film.clone().into(),
                options: None,
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                refused_while_held += 1;
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "the stalled upload held the only slot"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(refused_while_held > 0, "the slot was held at first");
    assert!(response.analyzable);
    let stalled = stalled.await.unwrap();
    assert!(stalled.is_err(), "the stalled upload failed");
    running.stop().await;
}

/// One client address cannot take every analysis slot: beyond
/// `limits.max_analyses_per_peer` its uploads are refused at once while
/// slots remain for others, and it gets them back when its uploads end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_hold_every_analysis_slot() {
    use tokio_stream::StreamExt as _;
    let data = tempfile::tempdir().unwrap();
    let (film, _, _) = synth(8502, false, ViewChoice::Pa);
    let mut c = config(data.path());
    c.limits.max_concurrent_analyses = 4;
    c.limits.max_analyses_per_peer = 1;
    c.limits.upload_idle_s = 60;
    let running = start(c).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;

    let first = pb::AnalyzeChunk {
        options: None,
        data: film[..1000].to_vec().into(),
    };
    let stalled = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let mut slow = TriageClient::new(ch.clone());
    let stalled = tokio::spawn(async move { slow.analyze_stream(stalled).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Three of four slots are free, but this address holds its one.
    let mut client = TriageClient::new(ch);
    let refused = client
        .analyze(pb::AnalyzeRequest {
            dicom: film.clone().into(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("this address"), "{refused}");
    // With a hint when to come back, from how long analyses hold a slot.
    let hint: u64 = refused
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric retry-after-ms hint");
    assert!((10..=2000).contains(&hint), "{hint}");

    // The stalled upload goes away: the address gets its slot back.
    stalled.abort();
    let started = std::time::Instant::now();
    let response = loop {
        match client
            .analyze(pb::AnalyzeRequest {
                dicom: film.clone().into(),
                options: None,
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(20),
                    "the slot did not come back: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(response.analyzable);
    running.stop().await;
}

/// Many watchers share one feed: each sees every change, in order, with
/// its study, exactly once; a watcher resuming from an earlier sequence
/// gets the backlog first, then the live feed, without a gap or repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_watchers_share_one_feed_and_see_every_change_in_order() {
    use tokio_stream::StreamExt as _;
    let data = tempfile::tempdir().unwrap();
    let (film, _, _) = synth(8503, true, ViewChoice::Pa);
    let running = start(config(data.path())).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;
    let mut client = TriageClient::new(ch.clone());
    let first = client
        .analyze(pb::AnalyzeRequest {
            dicom: film.clone().into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    let study = first.identity.unwrap().study_instance_uid;

    let mut watches = Vec::new();
    for _ in 0..40 {
        watches.push(
            TriageClient::new(ch.clone())
                .watch_worklist(pb::WatchWorklistRequest { after_sequence: 0 })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // One resumes from before the film arrived.
    let mut resuming = TriageClient::new(ch.clone())
        .watch_worklist(pb::WatchWorklistRequest { after_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut sequences = Vec::new();
    for status in [pb::StudyStatus::Claimed, pb::StudyStatus::Read] {
        let s = client
            .update_status(pb::UpdateStatusRequest {
                study_instance_uid: study.clone(),
                status: status as i32,
                by: "dr.mai".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.status, status as i32);
    }
    for watch in &mut watches {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .unwrap();
            assert_eq!(e.study.as_ref().unwrap().study_instance_uid, study);
            seen.push((e.sequence, e.study.unwrap().status));
        }
        assert_eq!(
            seen.iter().map(|s| s.1).collect::<Vec<_>>(),
            [
                pb::StudyStatus::Claimed as i32,
                pb::StudyStatus::Read as i32
            ]
        );
        assert_eq!(seen[1].0, seen[0].0 + 1);
        if sequences.is_empty() {
            sequences = seen.iter().map(|s| s.0).collect();
        }
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), sequences);
    }
    // The resuming watcher: everything after sequence 1, no repeats, then
    // the two changes.
    let mut resumed = Vec::new();
    while resumed.last() != Some(&sequences[1]) {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), resuming.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        resumed.push(e.sequence);
    }
    assert_eq!(resumed.first(), Some(&2));
    assert!(resumed.windows(2).all(|w| w[1] == w[0] + 1), "{resumed:?}");
    running.stop().await;
}
