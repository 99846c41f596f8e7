//! Findings are data: a model whose manifest declares findings the
//! reference model does not have (`pneumothorax`, with a display name and a
//! SNOMED CT code, and `abnormal`, with neither) flows from the manifest to
//! the gRPC results, the worklist's priority under a per-finding policy,
//! heatmaps, the campaign CSV and the DICOM SR — with no code naming them.

use std::path::{Path, PathBuf};
use std::process::Command;

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_findings::priority::FindingPolicy;
use cxr_findings::FindingId;
use cxr_ingest::{read_object, IngestLimits};
use cxr_pacs::derived::ResultInput;
use cxr_pacs::sr;
use cxr_synth::ViewChoice;

use crate::service_grpc::{channel, config, start, synth, wait_serving};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/pneumothorax")
}

fn pneumothorax() -> FindingId {
    FindingId::new("pneumothorax").unwrap()
}

fn service_config(
    data: &Path,
    pneumothorax_critical_at_screening: bool,
) -> cxr_triage::config::ServiceConfig {
    let mut c = config(data);
    c.engine.models_dir = models();
    if pneumothorax_critical_at_screening {
        c.priority.findings.insert(
            pneumothorax(),
            FindingPolicy {
                critical: Some("screening".into()),
                urgent: None,
            },
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_finding_flows_through_grpc_the_worklist_and_its_priority_policy() {
    let data = tempfile::tempdir().unwrap();
    let (film, study, sop) = synth(7001, false, ViewChoice::Pa);
    let running = start(service_config(data.path(), true)).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;
    let mut client = TriageClient::new(ch);

    let models = client
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models.len(), 1);
    assert_eq!(models.models[0].finding_ids, ["abnormal", "pneumothorax"]);
    // Neither has a v1 enum value: clients read finding_id.
    assert!(models.models[0].findings.is_empty());

    let response = client
        .analyze(pb::AnalyzeRequest {
            dicom: film.clone().into(),
            options: Some(pb::AnalyzeOptions {
                include_heatmaps: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = response
        .findings
        .iter()
        .map(|f| f.finding_id.as_str())
        .collect();
    // Findings other than the reference ones come in id order.
    assert_eq!(ids, ["abnormal", "pneumothorax"]);
    let ptx = &response.findings[1];
    assert_eq!(ptx.display_name, "Pneumothorax");
    assert_eq!(ptx.kind, pb::FindingKind::Unspecified as i32);
    assert_eq!(response.findings[0].display_name, "Abnormal");
    assert!(
        ptx.positive && ptx.score < 0.999,
        "the brightest block of a chest film is positive at screening (0.5) and not at high_specificity: {}",
        ptx.score
    );
    assert!(ptx.heatmap.is_some(), "the model's heatmap comes back");

    // The site's rule makes a pneumothorax positive at `screening`
    // CRITICAL (its high_specificity point was not reached).
    let image = response.image_priority.unwrap();
    assert_eq!(image.priority, pb::Priority::Critical as i32);
    let reason = image
        .reasons
        .iter()
        .find(|r| r.finding_id == "pneumothorax")
        .expect("a pneumothorax reason");
    assert_eq!(reason.operating_point, "screening");
    assert!(reason.text.starts_with("pneumothorax "), "{}", reason.text);

    let page = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed = page
        .studies
        .iter()
        .find(|s| s.study_instance_uid == study)
        .expect("study on the worklist");
    assert_eq!(
        listed.priority.as_ref().unwrap().priority,
        pb::Priority::Critical as i32
    );
    let stored = client
        .get_study(pb::GetStudyRequest {
            study_instance_uid: study.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.images[0].findings[1].finding_id, "pneumothorax");
    let heatmap = client
        .get_heatmap(pb::GetHeatmapRequest {
            sop_instance_uid: sop.clone(),
            finding_id: "pneumothorax".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!heatmap.png.is_empty());
    let unknown = client
        .get_heatmap(pb::GetHeatmapRequest {
            sop_instance_uid: sop.clone(),
            finding_id: "tuberculosis".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    running.stop().await;

    // Without the site's rule the same film is URGENT: the policy, not the
    // code, decides.
    let data = tempfile::tempdir().unwrap();
    let running = start(service_config(data.path(), false)).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone(), &film).await;
    let response = TriageClient::new(ch)
        .analyze(pb::AnalyzeRequest {
            dicom: film.into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.image_priority.unwrap().priority,
        pb::Priority::Urgent as i32
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_finding_is_coded_in_the_sr_and_has_its_columns_in_the_csv() {
    let data = tempfile::tempdir().unwrap();
    let (film, _, _) = synth(7002, false, ViewChoice::Pa);

    // The SR, from the service's own pipeline.
    let (pipeline, _store) = crate::pacs_support::pipeline(data.path());
    let mut engine = crate::pacs_support::engine_config();
    engine.models_dir = models();
    let engine = tokio::task::spawn_blocking(move || cxr_model::Engine::load(&engine))
        .await
        .unwrap()
        .unwrap();
    pipeline.set_analyzer(std::sync::Arc::new(cxr_pipeline::Analyzer::new(
        std::sync::Arc::new(engine),
        Default::default(),
        Default::default(),
    )));
    let header = read_object(&film, &IngestLimits::default()).unwrap();
    let filed = pipeline
        .analyze(film.clone(), cxr_pipeline::Source::named("test"))
        .await
        .unwrap();
    let report = sr::build(&ResultInput {
        source: &header,
        outcome: &filed.outcome,
        station: "CXR_TRIAGE",
        now_ms: 1_795_398_307_250,
    })
    .unwrap();
    let sr_path = data.path().join("sr.dcm");
    std::fs::write(&sr_path, &report.file).unwrap();
    let dump = Command::new("dsrdump").arg(&sr_path).output().unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.status.success(), "{text}");
    assert!(text.contains("(36118008,SCT,\"Pneumothorax\")"), "{text}");
    assert!(
        text.contains("(abnormal,99CXRTRIAGE,\"Abnormal\")"),
        "{text}"
    );

    // The campaign CSV, from `cxr-triage score` with a site file.
    let dir = data.path().join("films");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.dcm"), &film).unwrap();
    let site = data.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[engine]\nmodels_dir = {:?}\n[engine.session]\nprovider = \"cpu\"\n",
            models().display().to_string()
        ),
    )
    .unwrap();
    let csv = data.path().join("results.csv");
    let status = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
        .args(["score", "--quiet", "--config"])
        .arg(&site)
        .arg("--out")
        .arg(&csv)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    for column in ["pneumothorax_score", "abnormal_score"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(!header.contains("tuberculosis"), "{header}");
}
