//! The service end to end: a real server on loopback with the bundled
//! reference model and a real SQLite file, driven by the generated tonic
//! client: health after warm-up, analysis, the worklist's order, status,
//! watching with resume, heatmaps, a large file through AnalyzeStream,
//! overload, and persistence across a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_model::ProviderChoice;
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax, ViewChoice};
use cxr_triage::config::ServiceConfig;
use tonic::transport::Channel;

pub(crate) struct Running {
    pub(crate) addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

pub(crate) fn config(data: &Path) -> ServiceConfig {
    let mut c = ServiceConfig {
        data_dir: data.to_path_buf(),
        metrics_listen: None,
        web: cxr_web::WebConfig {
            listen: None,
            ..Default::default()
        },
        ..ServiceConfig::default()
    };
    c.engine.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    c.engine.session.provider = ProviderChoice::Cpu;
    c
}

pub(crate) async fn start(config: ServiceConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(cxr_triage::serve::run(config, listener, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

pub(crate) async fn channel(addr: std::net::SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// Whether health says the Triage service is SERVING (health needs no
/// credentials).
pub(crate) async fn serving(ch: Channel) -> bool {
    let status = tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cxr_triage.v1.Triage".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
}

/// Polls health until SERVING; checks that Analyze is refused before that.
pub(crate) async fn wait_serving(ch: Channel, sample: &[u8]) {
    let mut triage = TriageClient::new(ch.clone());
    for _ in 0..600 {
        if serving(ch.clone()).await {
            return;
        }
        let early = triage
            .analyze(pb::AnalyzeRequest {
                dicom: sample.to_vec().into(),
                options: None,
            })
            .await;
        // Before SERVING a request is refused as UNAVAILABLE — unless the
        // models became warm between the two calls.
        if let Err(e) = early {
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never SERVING");
}

/// A synthetic frontal image: TB-positive or negative, in its own study.
pub(crate) fn synth(index: u64, tb: bool, view: ViewChoice) -> (Vec<u8>, String, String) {
    let spec = CaseSpec {
        positive_rate: if tb { 1.0 } else { 0.0 },
        findings: cxr_synth::FindingSet {
            nodule: false,
            tb: true,
        },
        view,
        ..CaseSpec::small()
    };
    let case = generate_case(&spec, 99, index).unwrap();
    let study = case.meta.study.study_uid.clone();
    let sop = case.meta.study.sop_instance_uid.clone();
    (
        dicom_bytes(&case, OutputSyntax::ExplicitLe).unwrap(),
        study,
        sop,
    )
}

/// A DICOM file whose header parses but whose pixels cannot be decoded
/// (Pixel Data cut short).
fn undecodable(index: u64) -> (Vec<u8>, String) {
    let (bytes, study, _) = synth(index, false, ViewChoice::Pa);
    let mut obj = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).unwrap();
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(vec![0u8; 1000]),
    ));
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    (out, study)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_scores_orders_watches_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (positive, pos_study, pos_sop) = synth(1, true, ViewChoice::Pa);
    let server = start(config(data.path())).await;
    let ch = channel(server.addr).await;
    wait_serving(ch.clone(), &positive).await;
    let mut client = TriageClient::new(ch.clone());

    let models = client
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models[0].id, "cxr-reference-v1");
    assert_eq!(models.models[0].execution_provider, "cpu");

    // A TB-positive film: URGENT or CRITICAL, with a heatmap overlay.
    let r = client
        .analyze(pb::AnalyzeRequest {
            dicom: positive.clone().into(),
            options: Some(pb::AnalyzeOptions {
                include_heatmaps: true,
                overlay_max_side: 256,
                source: "test".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.analyzable);
    let tb = r
        .findings
        .iter()
        .find(|f| f.kind == pb::FindingKind::Tuberculosis as i32)
        .unwrap();
    assert!(
        tb.positive,
        "TB-positive synthetic film scored {}",
        tb.score
    );
    let heatmap = tb.heatmap.as_ref().unwrap();
    assert!(heatmap.overlay_png.starts_with(b"\x89PNG"));
    assert_eq!(
        heatmap.grid.len(),
        (heatmap.grid_width * heatmap.grid_height) as usize
    );
    let study_priority = r.study_priority.as_ref().unwrap().priority;
    assert!(
        study_priority == pb::Priority::Urgent as i32
            || study_priority == pb::Priority::Critical as i32
    );
    assert_eq!(r.provenance[0].model_id, "cxr-reference-v1");
    assert!(r.timings.as_ref().unwrap().total_ms > 0.0);
    let first_sequence = r.sequence;

    // A negative, a lateral alone, an undecodable file, and garbage.
    let (negative, neg_study, _) = synth(2, false, ViewChoice::Pa);
    let (lateral, lat_study, _) = synth(3, false, ViewChoice::Lateral);
    let (broken, broken_study) = undecodable(4);
    for file in [&negative, &lateral, &broken] {
        client
            .analyze(pb::AnalyzeRequest {
                dicom: file.clone().into(),
                options: None,
            })
            .await
            .unwrap();
    }
    let garbage = client
        .analyze(pb::AnalyzeRequest {
            dicom: b"not dicom".to_vec().into(),
            options: None,
        })
        .await;
    assert_eq!(garbage.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Re-sending the positive replaces its result: still one image.
    client
        .analyze(pb::AnalyzeRequest {
            dicom: positive.clone().into(),
            options: None,
        })
        .await
        .unwrap();

    let list = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    let order: Vec<&str> = list
        .studies
        .iter()
        .map(|s| s.study_instance_uid.as_str())
        .collect();
    assert_eq!(list.total, 4);
    assert_eq!(order[0], pos_study);
    assert_eq!(*order.last().unwrap(), neg_study);
    assert!(
        order[1..3].contains(&lat_study.as_str()) && order[1..3].contains(&broken_study.as_str())
    );
    let broken_entry = list
        .studies
        .iter()
        .find(|s| s.study_instance_uid == broken_study)
        .unwrap();
    assert_eq!(
        broken_entry.priority.as_ref().unwrap().priority,
        pb::Priority::NotAnalyzed as i32
    );
    let study = client
        .get_study(pb::GetStudyRequest {
            study_instance_uid: pos_study.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(study.image_count, 1);
    assert_eq!(
        study.images[0].identity.as_ref().unwrap().sop_instance_uid,
        pos_sop
    );

    // GetHeatmap renders at the requested size.
    let png = client
        .get_heatmap(pb::GetHeatmapRequest {
            sop_instance_uid: pos_sop.clone(),
            finding: pb::FindingKind::Tuberculosis as i32,
            max_side: 200,
            heatmap_only: false,
            // A v1 client: the enum alone names the finding.
            finding_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(png.width.max(png.height), 200);
    assert!(png.png.starts_with(b"\x89PNG"));

    // Status workflow, seen by a watcher resuming from the first result.
    let mut watch = client
        .watch_worklist(pb::WatchWorklistRequest {
            after_sequence: first_sequence,
        })
        .await
        .unwrap()
        .into_inner();
    let claimed = client
        .update_status(pb::UpdateStatusRequest {
            study_instance_uid: pos_study.clone(),
            status: pb::StudyStatus::Claimed as i32,
            by: "dr.hoa".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.status_by, "dr.hoa");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    assert!(seen.windows(2).all(|w| w[1].sequence == w[0].sequence + 1));
    assert_eq!(seen[0].sequence, first_sequence + 1);
    assert_eq!(seen[4].kind, pb::worklist_event::Kind::StatusChanged as i32);
    drop(watch);

    server.stop().await;

    // Everything is still there after a restart on the same data directory.
    let server = start(config(data.path())).await;
    let ch = channel(server.addr).await;
    let mut client = TriageClient::new(ch);
    let after = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    let order_after: Vec<&str> = after
        .studies
        .iter()
        .map(|s| s.study_instance_uid.as_str())
        .collect();
    assert_eq!(order_after, order);
    assert_eq!(after.studies[0].status, pb::StudyStatus::Claimed as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_file_streams_and_excess_load_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.limits.max_concurrent_analyses = 1;
    let (small, _, _) = synth(10, true, ViewChoice::Pa);
    let server = start(c).await;
    let ch = channel(server.addr).await;
    wait_serving(ch.clone(), &small).await;

    // ~30 MB: the image plus a 30 MB private element, in 1 MiB chunks.
    let mut obj = dicom_object::from_reader(std::io::Cursor::new(&small[128..])).unwrap();
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    obj.put(DataElement::new(
        Tag(0x0009, 0x0010),
        VR::LO,
        PrimitiveValue::from("CXR TEST"),
    ));
    obj.put(DataElement::new(
        Tag(0x0009, 0x1000),
        VR::OB,
        PrimitiveValue::from(vec![7u8; 30 << 20]),
    ));
    let mut big = Vec::new();
    obj.write_all(&mut big).unwrap();
    assert!(big.len() > 30 << 20);
    let chunks: Vec<pb::AnalyzeChunk> = big
        .chunks(1 << 20)
        .enumerate()
        .map(|(i, d)| pb::AnalyzeChunk {
            options: (i == 0).then(pb::AnalyzeOptions::default),
            data: d.to_vec().into(),
        })
        .collect();
    let mut client = TriageClient::new(ch.clone());
    let r = client
        .analyze_stream(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert!(r.analyzable);

    // One analysis at a time: 6 at once are each answered or refused.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut client = TriageClient::new(ch.clone());
        let (file, _, _) = synth(20 + i, false, ViewChoice::Pa);
        tasks.push(tokio::spawn(async move {
            client
                .analyze(pb::AnalyzeRequest {
                    dicom: file.into(),
                    options: None,
                })
                .await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
                assert!(e.metadata().get("retry-after-ms").is_some());
                refused += 1;
            }
        }
    }
    // How many overlap depends on timing; each is answered or refused with
    // the hint. (Refusal itself is proven deterministically below.)
    assert!(ok >= 1 && ok + refused == 6, "ok {ok}, refused {refused}");

    // The slot is taken when a call's headers arrive: while an upload is
    // still streaming, another call is refused before its bytes are read,
    // and the upload then completes. (Should the probe win the race for
    // the one slot, the upload is the one refused: try again.)
    let (head, tail) = small.split_at(small.len() / 2);
    let mut proven = false;
    for _ in 0..20 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::AnalyzeChunk>(4);
        let mut streaming = TriageClient::new(ch.clone());
        let upload = tokio::spawn(async move {
            streaming
                .analyze_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        tx.send(pb::AnalyzeChunk {
            options: Some(pb::AnalyzeOptions::default()),
            data: head.to_vec().into(),
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let probe = TriageClient::new(ch.clone())
            .analyze(pb::AnalyzeRequest {
                dicom: small.clone().into(),
                options: None,
            })
            .await;
        let refused = matches!(&probe, Err(e) if e.code() == tonic::Code::ResourceExhausted);
        let _ = tx
            .send(pb::AnalyzeChunk {
                options: None,
                data: tail.to_vec().into(),
            })
            .await;
        drop(tx);
        let uploaded = upload.await.unwrap();
        if refused {
            assert!(uploaded.unwrap().into_inner().analyzable);
            proven = true;
            break;
        }
        // The probe was admitted first: the upload was refused, or went
        // through after the probe finished.
        assert!(probe.is_ok(), "{probe:?}");
        if let Err(e) = uploaded {
            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
        }
    }
    assert!(
        proven,
        "a call was never refused while an upload held the slot"
    );

    // Larger than limits.max_stream_mib: refused, and the service goes on.
    let mut c2 = TriageClient::new(ch.clone());
    let too_big = (0..(129 + 1))
        .map(|i| pb::AnalyzeChunk {
            options: (i == 0).then(pb::AnalyzeOptions::default),
            data: vec![0u8; 1 << 20].into(),
        })
        .collect::<Vec<_>>();
    let e = c2
        .analyze_stream(tokio_stream::iter(too_big))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(c2
        .analyze(pb::AnalyzeRequest {
            dicom: small.clone().into(),
            options: None,
        })
        .await
        .is_ok());
    server.stop().await;
}
