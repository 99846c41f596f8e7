//! Round trip with a real PACS: Orthanc (Debian's `orthanc`), started on
//! loopback with a temporary storage. The test uploads two films of one
//! study into Orthanc over its REST API, Orthanc forwards them to
//! cxr-triage by C-STORE, and the Secondary Captures and SRs come back into
//! Orthanc under the same patient and study; forwarding the images again
//! adds nothing (results are the same instances, sent once).

use crate::pacs_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cxr_model::ProviderChoice;
use cxr_pacs::{uids, Destination, DicomConfig};
use cxr_synth::OutputSyntax;
use cxr_triage::config::ServiceConfig;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use pacs_support::*;
use serde_json::Value;

/// The study's instances in Orthanc: (Orthanc ID, SOP Class UID).
fn instances(orthanc: &Orthanc, study: &str) -> Vec<(String, String)> {
    let list = orthanc.get_json(&format!("/studies/{study}/instances"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["ID"].as_str().unwrap().to_string();
            let tags = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
            (id, tags["SOPClassUID"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn outbox_states(data: &std::path::Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(data.join("pacs/pacs.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orthanc_forwards_a_study_and_gets_the_sc_and_sr_back_under_it() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let cxr_port = free_port();
    let orthanc = tokio::task::spawn_blocking(move || Orthanc::start("CXR_TRIAGE", cxr_port))
        .await
        .unwrap();

    let mut config = ServiceConfig {
        data_dir: data.path().to_path_buf(),
        metrics_listen: None,
        web: cxr_web::WebConfig {
            listen: None,
            ..Default::default()
        },
        ..ServiceConfig::default()
    };
    config.engine.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    config.engine.session.provider = ProviderChoice::Cpu;
    config.dicom = DicomConfig {
        enabled: true,
        listen: format!("127.0.0.1:{cxr_port}").parse().unwrap(),
        allowed_calling_aes: vec!["ORTHANC".into()],
        study_quiet_s: 1,
        timeout_s: 20,
        destination: Some(Destination {
            ae_title: "ORTHANC".into(),
            host: "127.0.0.1".into(),
            port: orthanc.dicom,
        }),
        ..DicomConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cxr_triage::serve::run(config, listener, async move {
        let _ = stopped.await;
    }));

    // Two films of one study: a TB-positive PA, and a second image of it.
    let (first, first_sop, study_uid) = film(films.path(), 64, 1, OutputSyntax::J2kLossless, true);
    let (second_src, second_sop, _) = film(films.path(), 64, 2, OutputSyntax::ExplicitLe, false);
    let mut second = dicom_object::open_file(&second_src).unwrap();
    let first_obj = dicom_object::open_file(&first).unwrap();
    for tag in [
        tags::STUDY_INSTANCE_UID,
        tags::PATIENT_ID,
        tags::PATIENT_NAME,
        tags::ACCESSION_NUMBER,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_ID,
    ] {
        if let Ok(e) = first_obj.element(tag) {
            second.put(e.clone());
        }
    }
    second.put(DataElement::new(
        tags::INSTANCE_NUMBER,
        VR::IS,
        PrimitiveValue::from("2"),
    ));
    let second_path = films.path().join("second.dcm");
    second.write_to_file(&second_path).unwrap();

    let mut orthanc_study = String::new();
    let mut originals = Vec::new();
    for path in [&first, &second_path] {
        let r = orthanc.post(
            "/instances",
            &std::fs::read(path).unwrap(),
            "application/dicom",
        );
        orthanc_study = r["ParentStudy"].as_str().unwrap().to_string();
        originals.push(r["ID"].as_str().unwrap().to_string());
    }
    assert_eq!(instances(&orthanc, &orthanc_study).len(), 2);

    // Orthanc forwards the radiographs (C-STORE as SCU) to cxr-triage, as
    // a routing rule for CR/DX would.
    let forward = |orthanc: &Orthanc| {
        let body = serde_json::json!({ "Resources": originals, "Synchronous": true });
        orthanc.post(
            "/modalities/cxr/store",
            body.to_string().as_bytes(),
            "application/json",
        )
    };
    let r = forward(&orthanc);
    assert_eq!(r["FailedInstancesCount"], Value::from(0), "{r}");

    // Results come back: an SC and an SR per image, in the same study.
    let start = Instant::now();
    let found = loop {
        let now = instances(&orthanc, &orthanc_study);
        let results = now
            .iter()
            .filter(|(_, c)| c == uids::SECONDARY_CAPTURE || c == uids::COMPREHENSIVE_3D_SR)
            .count();
        if results >= 4 {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "results did not arrive in Orthanc: {now:?}\n{}",
            orthanc.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(found.len(), 6, "{found:?}");
    let reports: Vec<&String> = found
        .iter()
        .filter(|(_, c)| c == uids::COMPREHENSIVE_3D_SR)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(reports.len(), 2);
    let study_info = orthanc.get_json(&format!("/studies/{orthanc_study}"));
    assert_eq!(
        study_info["MainDicomTags"]["StudyInstanceUID"].as_str(),
        Some(study_uid.as_str())
    );
    // Each SR, read back from Orthanc, parses in dsrdump and points at one
    // of the forwarded images.
    let mut referenced = Vec::new();
    for id in reports {
        let file = orthanc.get(&format!("/instances/{id}/file")).unwrap();
        let path = films.path().join(format!("{id}.dcm"));
        std::fs::write(&path, file).unwrap();
        let o = dcmtk("dsrdump", &["+Pu", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("Imaging Measurement Report"), "{out}");
        for sop in [&first_sop, &second_sop] {
            if out.contains(sop.as_str()) {
                referenced.push(sop.clone());
            }
        }
    }
    referenced.sort();
    let mut want = vec![first_sop.clone(), second_sop.clone()];
    want.sort();
    assert_eq!(referenced, want);
    for (id, class) in &found {
        if class == uids::SECONDARY_CAPTURE {
            let t = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
            assert_eq!(t["BurnedInAnnotation"].as_str(), Some("YES"));
            assert_eq!(t["Modality"].as_str(), Some("OT"));
        }
    }

    // Forwarding the radiographs again: they are analysed again, the
    // results are the same instances and were confirmed already, so
    // nothing new is sent.
    let again = cxr_worklist::now_ms();
    let r = forward(&orthanc);
    assert_eq!(r["FailedInstancesCount"], Value::from(0), "{r}");
    let worklist = cxr_worklist::SqliteStore::open(&data.path().join("worklist.sqlite")).unwrap();
    wait_for(
        Duration::from_secs(60),
        "the forwarded images analysed again",
        || {
            use cxr_worklist::WorklistStore;
            worklist
                .get_study(&study_uid)
                .map(|(_, images)| {
                    images.len() == 2 && images.iter().all(|i| i.received_ms >= again)
                })
                .unwrap_or(false)
        },
    )
    .await;
    // Past the study's quiet period: the sender would have run by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(instances(&orthanc, &orthanc_study).len(), 6);
    assert_eq!(outbox_states(data.path()), vec![("sent".to_string(), 4)]);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
