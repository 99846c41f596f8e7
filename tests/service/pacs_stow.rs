//! DICOMweb STOW-RS receive over real HTTP on loopback: a multipart
//! request with a real chest CR (NEMA's RG1, JPEG 2000), a synthetic film
//! and a part that is not DICOM gets 202 with a Store Instances Response
//! listing two stored and one failed, and both films reach the worklist;
//! a study in the path that does not match is refused per instance (409);
//! a wrong media type (415), a body declared over the limit (413), a wrong
//! path (404) and a wrong method (405) are refused without spooling.

use crate::pacs_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cxr_ingest::{read_identity, IngestLimits};
use cxr_pacs::uids;
use cxr_synth::OutputSyntax;
use pacs_support::*;

/// A status and a body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }
}

/// One HTTP/1.1 request to the STOW-RS port.
fn http(
    at: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    length: Option<u64>,
) -> Reply {
    let (status, body) = pacs_support::http(at, method, path, content_type, body, length)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Reply { status, body }
}

/// A `multipart/related; type="application/dicom"` body of `parts`.
fn multipart(boundary: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(p);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

fn content_type(boundary: &str) -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={boundary}")
}

/// The instance UIDs of a Store Instances Response sequence.
fn instances(response: &serde_json::Value, tag: &str) -> Vec<String> {
    response[tag]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    i["00081155"]["Value"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn spooled(data: &Path) -> usize {
    std::fs::read_dir(data.join("pacs/incoming"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_rs_stores_each_part_and_reports_each_failure() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let (pipeline, store) = pipeline(data.path());
    let mut config = dicom_config();
    config.stow_listen = Some(format!("127.0.0.1:{}", free_port()).parse().unwrap());
    config.max_object_mib = 4;
    let pacs = start_pacs(&config, data.path(), &pipeline).await;
    let at = pacs.stow_addr().expect("STOW-RS is on");

    let rg1 = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test-images/bundled/RG1_J2KI.dcm"),
    )
    .unwrap();
    let rg1_meta = read_identity(&rg1, &IngestLimits::default()).expect("RG1 identity");
    let (path, film_sop, film_study) = film(films.path(), 83, 0, OutputSyntax::ExplicitLe, true);
    let synthetic = std::fs::read(path).unwrap();
    let garbage = b"this part is not a DICOM file, and says so at length".repeat(20);

    // Requests refused as a whole, on their headers (so these send no
    // body: the server answers without reading one), or on a body that
    // cannot be split: nothing reaches the spool.
    let r = http(at, "POST", "/studies", "application/dicom", b"", None);
    assert_eq!(r.status, 415, "{}", String::from_utf8_lossy(&r.body));
    let r = http(
        at,
        "POST",
        "/studies",
        &content_type("b0undary"),
        b"",
        Some(1 << 30),
    );
    assert_eq!(r.status, 413, "a body declared over 8 × 4 MiB");
    let r = http(
        at,
        "POST",
        "/instances",
        &content_type("b0undary"),
        b"",
        None,
    );
    assert_eq!(r.status, 404);
    let r = http(at, "GET", "/studies", "", b"", None);
    assert_eq!(r.status, 405);
    let r = http(
        at,
        "POST",
        "/studies",
        &content_type("b0undary"),
        b"--b0undary\r\n\r\nno end",
        None,
    );
    assert_eq!(r.status, 400, "a body without its closing delimiter");
    assert_eq!(spooled(data.path()), 0, "refused requests spool nothing");
    let body = multipart("b0undary", &[&synthetic]);

    // The study in the path must match each instance's.
    let r = http(
        at,
        "POST",
        &format!("/studies/{}", rg1_meta.study_instance_uid),
        &content_type("b0undary"),
        &body,
        None,
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    let response = r.json();
    assert_eq!(instances(&response, "00081198"), vec![film_sop.clone()]);
    assert_eq!(
        response["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA900,
        "failure reason: data set does not match"
    );
    assert!(response.get("00081199").is_none());
    assert_eq!(spooled(data.path()), 0);

    // Two films and one part that is not DICOM: 202, two stored, one failed.
    let boundary = "cxr-triage-test-7f3a";
    let body = multipart(boundary, &[&rg1, &garbage, &synthetic]);
    let r = http(at, "POST", "/studies", &content_type(boundary), &body, None);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let response = r.json();
    assert_eq!(
        instances(&response, "00081199"),
        vec![rg1_meta.sop_instance_uid.clone(), film_sop.clone()]
    );
    assert_eq!(
        response["00081199"]["Value"][0]["00081150"]["Value"][0],
        rg1_meta.sop_class_uid.as_str()
    );
    assert!(uids::is_accepted_storage(&rg1_meta.sop_class_uid));
    let failed = response["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["00081197"]["Value"][0], 0xC000,
        "cannot understand"
    );
    // Stored means spooled: both are on disk before the pipeline runs.
    assert_eq!(spooled(data.path()), 2);

    // With the model loaded, both flow onto the worklist, analysed.
    warm(&pipeline).await;
    wait_for(
        Duration::from_secs(120),
        "both STOW-RS films on the worklist",
        || {
            in_worklist(store.as_ref(), &film_study, &film_sop).is_some()
                && in_worklist(
                    store.as_ref(),
                    &rg1_meta.study_instance_uid,
                    &rg1_meta.sop_instance_uid,
                )
                .is_some()
        },
    )
    .await;
    assert_eq!(
        in_worklist(store.as_ref(), &film_study, &film_sop),
        Some(true)
    );
    assert_eq!(
        in_worklist(
            store.as_ref(),
            &rg1_meta.study_instance_uid,
            &rg1_meta.sop_instance_uid
        ),
        Some(true)
    );
    // The same film again is a duplicate the pipeline already holds, and
    // still a success for the sender.
    let body = multipart(boundary, &[&synthetic]);
    let r = http(
        at,
        "POST",
        &format!("/studies/{film_study}"),
        &content_type(boundary),
        &body,
        None,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(instances(&r.json(), "00081199"), vec![film_sop]);
    drop(pacs);
}

/// Idle connections cannot hold STOW-RS: with every connection slot taken
/// by peers that never send a request, a real upload still gets through
/// once their header timeout (10 s) frees the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_do_not_block_stow_rs() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let (pipeline, _store) = pipeline(data.path());
    let mut config = dicom_config();
    config.stow_listen = Some(format!("127.0.0.1:{}", free_port()).parse().unwrap());
    config.max_associations = 2;
    let pacs = start_pacs(&config, data.path(), &pipeline).await;
    let at = pacs.stow_addr().expect("STOW-RS is on");
    let idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(at).unwrap())
        .collect();
    let (path, _, _) = film(films.path(), 84, 0, OutputSyntax::ExplicitLe, false);
    let body = multipart("idle-test", &[&std::fs::read(path).unwrap()]);
    let started = std::time::Instant::now();
    let r = tokio::task::spawn_blocking(move || {
        http(
            at,
            "POST",
            "/studies",
            &content_type("idle-test"),
            &body,
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the upload waited {:?} behind idle connections",
        started.elapsed()
    );
    drop(idle);
    pacs.shutdown().await;
}
