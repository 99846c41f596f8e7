//! The memory attacks of the security review (issue 15) replayed against
//! the real `cxr-triage serve` binary on loopback — gRPC, the DICOM
//! listener and STOW-RS in one process — with what each cost read from the
//! process's own figures: its Prometheus `process_resident_memory_peak_bytes`
//! (the kernel's VmHWM of the service process). Each attack now gets a
//! clear refusal, the peak stays within a bound far below what the same
//! attack cost before the fixes (figures in `docs/security.md`), and the
//! service goes on analysing films afterwards.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;

use crate::pacs_support::{dcmtk, http, text};
use crate::service_process::{
    film, free_port, metric, plain_channel, scrape, wait_serving, Server,
};

const MIB: f64 = 1024.0 * 1024.0;
const CR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// One explicit-VR little-endian element.
fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// A text value padded to even length (UIDs with NUL, others with space).
fn padded(s: &str, pad: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// Preamble, `DICM` and a file meta group for `sop` in `ts`.
fn part10_header(ts: &str, sop: &str) -> Vec<u8> {
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(
        &mut meta,
        0x0002,
        0x0002,
        b"UI",
        &padded(CR_IMAGE_STORAGE, 0),
    );
    element(&mut meta, 0x0002, 0x0003, b"UI", &padded(sop, 0));
    element(&mut meta, 0x0002, 0x0010, b"UI", &padded(ts, 0));
    element(
        &mut meta,
        0x0002,
        0x0012,
        b"UI",
        &padded("1.2.826.0.1.3680043.10.54321", 0),
    );
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    element(
        &mut out,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(&meta);
    out
}

/// A CR data set up to the header of its Pixel Data (OW, `rows` ×
/// `columns` 16-bit values), whose value the caller appends.
fn dataset_head(sop: &str, study: &str, rows: u16, columns: u16) -> Vec<u8> {
    let mut d = Vec::new();
    element(&mut d, 0x0008, 0x0016, b"UI", &padded(CR_IMAGE_STORAGE, 0));
    element(&mut d, 0x0008, 0x0018, b"UI", &padded(sop, 0));
    element(&mut d, 0x0008, 0x0060, b"CS", &padded("CR", b' '));
    element(&mut d, 0x0018, 0x5101, b"CS", &padded("PA", b' '));
    element(&mut d, 0x0020, 0x000D, b"UI", &padded(study, 0));
    element(
        &mut d,
        0x0020,
        0x000E,
        b"UI",
        &padded(&format!("{study}.1"), 0),
    );
    element(&mut d, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    element(&mut d, 0x0028, 0x0004, b"CS", &padded("MONOCHROME2", b' '));
    element(&mut d, 0x0028, 0x0010, b"US", &rows.to_le_bytes());
    element(&mut d, 0x0028, 0x0011, b"US", &columns.to_le_bytes());
    element(&mut d, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    element(&mut d, 0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    element(&mut d, 0x0028, 0x0102, b"US", &11u16.to_le_bytes());
    element(&mut d, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    let pixels = u32::from(rows) * u32::from(columns) * 2;
    d.extend_from_slice(&0x7FE0u16.to_le_bytes());
    d.extend_from_slice(&0x0010u16.to_le_bytes());
    d.extend_from_slice(b"OW\0\0");
    d.extend_from_slice(&pixels.to_le_bytes());
    d
}

/// A deflate bomb: a half-megabyte Deflated Explicit VR Little Endian
/// object whose data set inflates to 512 MiB (a 16384² film of zeros).
fn deflate_bomb(sop: &str) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&dataset_head(
        sop,
        "1.2.826.0.1.3680043.10.54321.90",
        16384,
        16384,
    ))
    .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        enc.write_all(&zeros).unwrap();
    }
    let mut out = part10_header(DEFLATED_LE, sop);
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

/// A 250 MiB uncompressed object on disk (11,450² 16-bit: over the
/// 64-megapixel limit, so the AI cannot read it and it goes to a human).
fn huge_film(path: &Path, sop: &str) -> u64 {
    let (rows, columns) = (11_450u16, 11_450u16);
    let mut bytes = part10_header(EXPLICIT_LE, sop);
    bytes.extend_from_slice(&dataset_head(
        sop,
        "1.2.826.0.1.3680043.10.54321.91",
        rows,
        columns,
    ));
    let total = bytes.len() as u64 + u64::from(rows) * u64::from(columns) * 2;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&bytes).unwrap();
    // The pixel values: zeros, without writing them (a sparse file).
    f.set_len(total).unwrap();
    total
}

fn multipart(boundary: &str, part: &[u8]) -> Vec<u8> {
    let mut b = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    b.extend_from_slice(part);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// `n` STOW-RS posts of `body` at once, each from its own thread: every
/// status and reply.
fn post_at_once(stow: std::net::SocketAddr, body: &Arc<Vec<u8>>, n: usize) -> Vec<(u16, Vec<u8>)> {
    let posts: Vec<_> = (0..n)
        .map(|_| {
            let body = Arc::clone(body);
            std::thread::spawn(move || http(stow, "POST", "/studies", STOW_TYPE, &body, None))
        })
        .collect();
    posts
        .into_iter()
        .map(|p| p.join().unwrap().expect("STOW-RS answers"))
        .collect()
}

const STOW_TYPE: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";

/// The service's own peak resident memory, MiB, once its gauge (updated
/// every second) has caught up with what just happened.
async fn peak_mib(metrics: u16) -> f64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = tokio::task::spawn_blocking(move || scrape(metrics))
        .await
        .unwrap();
    metric(&text, "process_resident_memory_peak_bytes", &[]).expect("peak memory gauge") / MIB
}

/// Starts a measurement: resets the service's peak to its current
/// resident size (`5` to `/proc/PID/clear_refs`, Linux ≥ 4.0) and returns
/// that, MiB, as its gauge reports it.
async fn fresh_peak_mib(pid: u32, metrics: u16) -> f64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    peak_mib(metrics).await
}

/// How a refusal reads: typed, short, and not an echo of the input.
fn assert_clear(status: &tonic::Status, code: tonic::Code) {
    assert_eq!(status.code(), code, "{status}");
    assert!(status.message().len() < 300, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_attacks_on_the_real_binary_are_refused_within_bounds() {
    let data = tempfile::tempdir().unwrap();
    let (dicom_port, stow_port, metrics) = (free_port(), free_port(), free_port());
    let config = data.path().join("cxr.toml");
    std::fs::write(
        &config,
        format!(
            "[dicom]\nenabled = true\nae_title = \"CXR_TRIAGE\"\n\
             listen = \"127.0.0.1:{dicom_port}\"\nstow_listen = \"127.0.0.1:{stow_port}\"\n\
             allowed_calling_aes = [\"STORESCU\"]\ntimeout_s = 60\n"
        ),
    )
    .unwrap();
    let server = Server::start(
        &data.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("CXR_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    let mut client = TriageClient::new(ch.clone());
    let (good, case) = film(1, true);
    client
        .analyze(pb::AnalyzeRequest {
            dicom: good.clone().into(),
            options: None,
        })
        .await
        .unwrap();
    let pid = server.child.id();
    let base = fresh_peak_mib(pid, metrics).await;
    eprintln!("attacks: warm service {base:.0} MiB");

    // Finding 2, gRPC: four deflate bombs at once. Before: ~1 GB of RSS
    // each (inflated to 512 MiB, twice). Now each inflates once, capped
    // at 160 MiB, inside the decode slots, and fails with a typed error.
    let bomb = Arc::new(deflate_bomb("1.2.826.0.1.3680043.10.54321.92"));
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let mut calls = Vec::new();
    for _ in 0..4 {
        let mut c = TriageClient::new(ch.clone());
        let dicom = bomb.to_vec();
        calls.push(tokio::spawn(async move {
            c.analyze(pb::AnalyzeRequest {
                dicom: dicom.into(),
                options: None,
            })
            .await
        }));
    }
    for call in calls {
        let err = call
            .await
            .unwrap()
            .expect_err("a deflate bomb is not analysed");
        assert_clear(&err, tonic::Code::InvalidArgument);
        assert!(err.message().contains("over the limit"), "{err}");
    }
    let after_grpc_bombs = peak_mib(metrics).await;
    eprintln!("attacks: after 4 gRPC deflate bombs {after_grpc_bombs:.0} MiB (from {base:.0})");
    assert!(
        after_grpc_bombs - base < 450.0,
        "4 deflate bombs over gRPC raised the peak by {:.0} MiB",
        after_grpc_bombs - base
    );

    // Finding 2, STOW-RS: six posts of the bomb at once. Before: +5.8 GB,
    // all 200. Now every part fails (409) and the peak stays bounded.
    let base = fresh_peak_mib(pid, metrics).await;
    let stow = std::net::SocketAddr::from(([127, 0, 0, 1], stow_port));
    let body = Arc::new(multipart("XyZ", &bomb));
    for (status, reply) in post_at_once(stow, &body, 6) {
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&reply));
    }
    let after_stow_bombs = peak_mib(metrics).await;
    eprintln!("attacks: after 6 STOW-RS deflate bombs {after_stow_bombs:.0} MiB (from {base:.0})");
    assert!(
        after_stow_bombs - base < 450.0,
        "6 STOW-RS deflate bombs raised the peak by {:.0} MiB",
        after_stow_bombs - base
    );

    // Finding 2, STOW-RS part size: three 300 MiB parts at once. Before,
    // a 300 MiB part was accepted and each body was held twice. Now a part
    // over the C-STORE limit (256 MiB) fails alone, each body is held once,
    // and all bodies together may hold at most one largest body's worth
    // (512 MiB): the others wait their turn.
    let big = Arc::new(multipart("XyZ", &vec![0x55u8; 300 << 20]));
    let base = fresh_peak_mib(pid, metrics).await;
    for (status, reply) in post_at_once(stow, &big, 3) {
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&reply));
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        // Failure Reason A700, out of resources.
        assert_eq!(
            reply["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA700,
            "{reply}"
        );
    }
    drop(big);
    let after_big_parts = peak_mib(metrics).await;
    eprintln!("attacks: after 3 x 300 MiB STOW-RS parts {after_big_parts:.0} MiB (from {base:.0})");
    assert!(
        after_big_parts - base < 700.0,
        "three 300 MiB STOW-RS parts raised the peak by {:.0} MiB",
        after_big_parts - base
    );

    // Finding 10: a 250 MiB C-STORE. Before: +751 MiB while it arrived.
    // Now its data goes to the spool file as it arrives; the one copy in
    // memory is the worker's read of the spooled file, and the film (over
    // the pixel limit) is refused from its header before its pixels are
    // parsed: it is filed NOT_ANALYZED for a human.
    let huge = data.path().join("huge.dcm");
    let size = huge_film(&huge, "1.2.826.0.1.3680043.10.54321.93");
    assert!(size > 250 << 20);
    let before_store = fresh_peak_mib(pid, metrics).await;
    let port = dicom_port.to_string();
    let huge_path = huge.clone();
    let stored = tokio::task::spawn_blocking(move || {
        dcmtk(
            "storescu",
            &[
                "-aet",
                "STORESCU",
                "-aec",
                "CXR_TRIAGE",
                "-xe",
                "-to",
                "60",
                "127.0.0.1",
                &port,
                huge_path.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert!(stored.status.success(), "storescu: {}", text(&stored));
    let mut filed = None;
    for _ in 0..600 {
        let r = client
            .get_study(pb::GetStudyRequest {
                study_instance_uid: "1.2.826.0.1.3680043.10.54321.91".into(),
            })
            .await;
        if let Ok(r) = r {
            filed = Some(r.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filed = filed.expect("the 250 MiB film is on the worklist");
    assert_eq!(
        filed.priority.unwrap().priority,
        pb::Priority::NotAnalyzed as i32
    );
    let after_store = peak_mib(metrics).await;
    eprintln!("attacks: after a 250 MiB C-STORE {after_store:.0} MiB (from {before_store:.0})");
    assert!(
        after_store - before_store < 350.0,
        "a 250 MiB C-STORE raised the peak by {:.0} MiB",
        after_store - before_store
    );

    // Finding 7: megabyte messages to methods that carry no file. Before:
    // 32 GetStudy with a 60 MiB UID cost +658 MiB and echoed the UID. Now
    // they are refused after 64 KiB, without an echo.
    let uid = "1.".repeat(30 << 20);
    let before_messages = fresh_peak_mib(pid, metrics).await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = TriageClient::new(ch.clone()).max_encoding_message_size(128 << 20);
        let uid = uid.clone();
        calls.push(tokio::spawn(async move {
            c.get_study(pb::GetStudyRequest {
                study_instance_uid: uid,
            })
            .await
        }));
    }
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_clear(&err, tonic::Code::ResourceExhausted);
        assert!(!err.message().contains("1.1.1.1"), "{err}");
    }
    drop(uid);
    // Finding 5: a 20 MiB `by` is refused, and the worklist still lists.
    let mut big_client = TriageClient::new(ch.clone()).max_encoding_message_size(64 << 20);
    let err = big_client
        .update_status(pb::UpdateStatusRequest {
            study_instance_uid: case.meta.study.study_uid.clone(),
            status: pb::StudyStatus::Read as i32,
            by: "x".repeat(20 << 20),
        })
        .await
        .unwrap_err();
    assert_clear(&err, tonic::Code::ResourceExhausted);
    let list = client
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.total >= 2);
    // GetHeatmap at an absurd size is clamped (4096 px at most).
    let mut calls = Vec::new();
    for _ in 0..16 {
        let mut c = TriageClient::new(ch.clone());
        let sop = case.meta.study.sop_instance_uid.clone();
        calls.push(tokio::spawn(async move {
            c.get_heatmap(pb::GetHeatmapRequest {
                sop_instance_uid: sop,
                finding: pb::FindingKind::Tuberculosis as i32,
                max_side: 100_000,
                ..Default::default()
            })
            .await
        }));
    }
    for call in calls {
        match call.await.unwrap() {
            Ok(r) => assert!(r.into_inner().png.len() < 64 << 20),
            Err(e) => assert_clear(&e, tonic::Code::ResourceExhausted),
        }
    }
    let after_messages = peak_mib(metrics).await;
    eprintln!(
        "attacks: after the message attacks {after_messages:.0} MiB (from {before_messages:.0})"
    );
    assert!(
        after_messages - before_messages < 300.0,
        "the message attacks raised the peak by {:.0} MiB",
        after_messages - before_messages
    );

    // And the service still does its job.
    let (next, _) = film(2, false);
    let r = client
        .analyze(pb::AnalyzeRequest {
            dicom: next.into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.identity.is_some());
    let log = server.terminate();
    assert!(!log.contains("panicked"), "{log}");
}

/// A STOW-RS POST with a bearer token: the status.
fn stow_with_token(at: std::net::SocketAddr, token: &str, body: &[u8]) -> u16 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {STOW_TYPE}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn echo(port: u16) -> bool {
    dcmtk(
        "echoscu",
        &[
            "-aet",
            "STORESCU",
            "-aec",
            "CXR_TRIAGE",
            "-to",
            "5",
            "127.0.0.1",
            &port.to_string(),
        ],
    )
    .status
    .success()
}

type Client = TriageClient<tonic::transport::Channel>;

/// Analyze as the holder of `token`.
async fn analyze_as(
    client: &mut Client,
    dicom: Vec<u8>,
    token: &str,
) -> Result<pb::AnalyzeResponse, tonic::Status> {
    let request = pb::AnalyzeRequest {
        dicom: dicom.into(),
        options: None,
    };
    client
        .analyze(crate::auth::with_token(request, Some(token)))
        .await
        .map(tonic::Response::into_inner)
}

/// GetStudy as the holder of `token`.
async fn study_as(client: &mut Client, study: &str, token: &str) -> pb::Study {
    let request = pb::GetStudyRequest {
        study_instance_uid: study.to_string(),
    };
    client
        .get_study(crate::auth::with_token(request, Some(token)))
        .await
        .unwrap()
        .into_inner()
}

/// The other findings against the real binary with authentication on:
/// anonymous, forged and expired callers are refused and roles are
/// enforced (1); `by` comes from the identity; a film that raises a read
/// study reopens it (3); identifiers that are not UIDs and out-of-range
/// sequence numbers are refused without an echo (13); idle TCP
/// connections cannot hold STOW-RS (4) or the DICOM listener (10).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_and_slot_attacks_on_the_real_binary_get_clear_answers() {
    use crate::auth::{key_pair, now, token, with_token, ISSUER};
    let keys = tempfile::tempdir().unwrap();
    let (provider, public) = key_pair(keys.path(), "provider");
    let (attacker, _) = key_pair(keys.path(), "attacker");
    let data = tempfile::tempdir().unwrap();
    let (dicom_port, stow_port) = (free_port(), free_port());
    let config = data.path().join("cxr.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nenabled = true\n\
             [auth.tokens]\nissuer = \"{ISSUER}\"\naudience = \"cxr-triage\"\n\
             public_keys = [\"{}\"]\n\
             [auth.tokens.role_map]\nradiologist = \"reader\"\nmodality = \"uploader\"\n\
             [dicom]\nenabled = true\nae_title = \"CXR_TRIAGE\"\n\
             listen = \"127.0.0.1:{dicom_port}\"\nstow_listen = \"127.0.0.1:{stow_port}\"\n\
             allowed_calling_aes = [\"STORESCU\"]\nsetup_timeout_s = 2\n\
             max_associations_per_peer = 2\n",
            public.display()
        ),
    )
    .unwrap();
    let health_port = free_port();
    let server = Server::start(
        &data.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("CXR_HEALTH_LISTEN", format!("127.0.0.1:{health_port}"))],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    // The health-only listener answers probes without credentials, and
    // serves nothing else.
    let probe = plain_channel(([127, 0, 0, 1], health_port).into()).await;
    wait_serving(probe.clone()).await;
    let err = TriageClient::new(probe)
        .list_worklist(pb::ListWorklistRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
    // `cxr-triage health` (the image's HEALTHCHECK) reads the same.
    let probe = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
            .args(["health", "--addr", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap()
    };
    let up = probe(health_port);
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert_eq!(String::from_utf8_lossy(&up.stdout).trim(), "SERVING");
    assert_eq!(
        probe(free_port()).status.code(),
        Some(2),
        "nothing listens there"
    );
    let mut client = TriageClient::new(ch.clone());
    let hour = now() + 3600;
    let reader = token(&provider, ISSUER, "dr.lan", &["radiologist"], hour);
    let uploader = token(&provider, ISSUER, "modality-1", &["modality"], hour);
    let forged = token(&attacker, ISSUER, "dr.lan", &["admin"], hour);
    let expired = token(&provider, ISSUER, "dr.lan", &["radiologist"], now() - 3600);

    // Finding 1: who may do what.
    for (who, t) in [
        ("anonymous", None),
        ("forged", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
    ] {
        let err = client
            .list_worklist(with_token(pb::ListWorklistRequest::default(), t))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{who}: {err}");
    }
    let (routine, _) = film(11, false);
    let err = analyze_as(&mut client, routine.clone(), &reader)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let first = analyze_as(&mut client, routine.clone(), &uploader)
        .await
        .unwrap();
    let study = first.identity.unwrap().study_instance_uid;
    client
        .update_status(with_token(
            pb::UpdateStatusRequest {
                study_instance_uid: study.clone(),
                status: pb::StudyStatus::Read as i32,
                by: "someone else".into(),
            },
            Some(&reader),
        ))
        .await
        .unwrap();
    let read = study_as(&mut client, &study, &reader).await;
    assert_eq!(
        read.status_by, "dr.lan",
        "`by` is the caller, not the request"
    );

    // Finding 3: a positive film in the read study reopens it.
    let (positive, _) = film(12, true);
    let late = crate::hardening::with_uids(&positive, &study, "1.2.826.0.1.3680043.10.54321.94");
    let r = analyze_as(&mut client, late, &uploader).await.unwrap();
    assert!(r.study_priority.unwrap().priority >= pb::Priority::Urgent as i32);
    let reopened = study_as(&mut client, &study, &reader).await;
    assert_eq!(reopened.status, pb::StudyStatus::New as i32);
    assert!(reopened
        .reopened_reason
        .contains("after the study was read"));

    // Finding 13: not a UID, and a sequence number past 2^63.
    let bad = crate::hardening::with_uids(&routine, &study, "1.2.../../etc/passwd");
    let err = analyze_as(&mut client, bad, &uploader).await.unwrap_err();
    assert_clear(&err, tonic::Code::InvalidArgument);
    assert!(!err.message().contains("passwd"), "{err}");
    let err = client
        .watch_worklist(with_token(
            pb::WatchWorklistRequest {
                after_sequence: u64::MAX,
            },
            Some(&reader),
        ))
        .await
        .unwrap_err();
    assert_clear(&err, tonic::Code::InvalidArgument);

    // Finding 4: idle connections to STOW-RS are closed after the header
    // timeout; an upload gets through.
    let stow = std::net::SocketAddr::from(([127, 0, 0, 1], stow_port));
    let idle: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(stow).unwrap())
        .collect();
    let (next, _) = film(13, false);
    let body = multipart("XyZ", &next);
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || stow_with_token(stow, &uploader, &body))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(idle);

    // Finding 10: idle connections hold a peer's share of the DICOM
    // listener only until the set-up deadline.
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", dicom_port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !tokio::task::spawn_blocking(move || echo(dicom_port))
            .await
            .unwrap(),
        "a third association from the same address is refused"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        tokio::task::spawn_blocking(move || echo(dicom_port))
            .await
            .unwrap(),
        "the idle connections were closed at the set-up deadline"
    );
    drop(idle);
    let log = server.terminate();
    assert!(!log.contains("passwd"), "the refused UID reached the log");
}

/// `bytes` with its Pixel Data replaced by `pixels`, or removed.
fn with_pixels(bytes: &[u8], pixels: Option<Vec<u8>>) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).unwrap();
    match pixels {
        Some(p) => {
            obj.put(dicom_core::DataElement::new(
                tags::PIXEL_DATA,
                dicom_core::VR::OB,
                dicom_core::PrimitiveValue::from(p),
            ));
        }
        None => {
            obj.remove_element(tags::PIXEL_DATA);
        }
    }
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

/// C-STORE of `file` from `calling_ae`: storescu's verbose output.
fn store_as(calling_ae: &str, port: u16, file: &Path) -> String {
    let o = dcmtk(
        "storescu",
        &[
            "-aet",
            calling_ae,
            "-aec",
            "CXR_TRIAGE",
            "-xe",
            "-v",
            "-to",
            "30",
            "127.0.0.1",
            &port.to_string(),
            file.to_str().unwrap(),
        ],
    );
    text(&o)
}

/// Polls GetStudy until the study is listed (or a minute has passed).
async fn listed(client: &mut Client, study: &str) -> Option<pb::Study> {
    for _ in 0..600 {
        let request = pb::GetStudyRequest {
            study_instance_uid: study.to_string(),
        };
        if let Ok(r) = client.get_study(request).await {
            return Some(r.into_inner());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The last findings against the real binary: a stalled upload holds the
/// only analysis slot only until `upload_idle_s` (6); a STOW-RS client
/// that hangs up right after sending still gets its film analysed, without
/// a restart (11); an object without pixels is refused, a sender of
/// unreadable objects is held off while another is not, and
/// `cxr-triage purge` removes what retention says (12).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickle_hang_up_flood_and_retention_on_the_real_binary() {
    use tokio_stream::StreamExt as _;
    let data = tempfile::tempdir().unwrap();
    let (dicom_port, stow_port) = (free_port(), free_port());
    let config = data.path().join("cxr.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_concurrent_analyses = 1\nupload_idle_s = 2\n\
             [dicom]\nenabled = true\nae_title = \"CXR_TRIAGE\"\n\
             listen = \"127.0.0.1:{dicom_port}\"\nstow_listen = \"127.0.0.1:{stow_port}\"\n\
             allowed_calling_aes = [\"STORESCU\", \"TESTSCU\"]\n\
             max_unreadable_per_source_per_hour = 2\n"
        ),
    )
    .unwrap();
    let data_dir = data.path().join("data");
    let server = Server::start(&data_dir, &["--config", config.to_str().unwrap()], &[]);
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    let mut client = TriageClient::new(ch.clone());

    // Finding 6: one chunk, then silence, on the only analysis slot.
    let (good, _) = film(21, false);
    let first = pb::AnalyzeChunk {
        options: None,
        data: good[..1000].to_vec().into(),
    };
    let stalled = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let mut slow = TriageClient::new(ch.clone());
    let stalled = tokio::spawn(async move { slow.analyze_stream(stalled).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let mut refused_while_held = 0;
    let analysed = loop {
        let request = pb::AnalyzeRequest {
            dicom: good.clone().into(),
            options: None,
        };
        match client.analyze(request).await {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                refused_while_held += 1;
                assert!(started.elapsed() < Duration::from_secs(30), "slot held");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        refused_while_held > 0,
        "the stalled upload held the slot at first"
    );
    assert!(analysed.analyzable);
    assert!(stalled.await.unwrap().is_err(), "the stalled upload failed");

    // Finding 11: the whole request sent, then the client hangs up
    // without waiting for the answer; the film is analysed all the same.
    let (hung_up, case) = film(22, true);
    let body = multipart("XyZ", &hung_up);
    let stow = std::net::SocketAddr::from(([127, 0, 0, 1], stow_port));
    {
        let mut s = std::net::TcpStream::connect(stow).unwrap();
        let head = format!(
            "POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {STOW_TYPE}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
    }
    let Some(study) = listed(&mut client, &case.meta.study.study_uid).await else {
        panic!(
            "the film of a client that hung up is not analysed:\n{}",
            server.log()
        );
    };
    assert!(study.priority.is_some());

    // Finding 12: no pixels, no entry.
    let films = tempfile::tempdir().unwrap();
    let (plain, plain_case) = film(23, false);
    let bare = with_pixels(&plain, None);
    let (status, _) = http(
        stow,
        "POST",
        "/studies",
        STOW_TYPE,
        &multipart("XyZ", &bare),
        None,
    )
    .expect("STOW-RS answers");
    assert_eq!(status, 409);
    // Two films whose pixels cannot be decoded are listed for a human...
    for index in 0..2u64 {
        let (f, c) = film(24 + index, false);
        let path = films.path().join(format!("broken-{index}.dcm"));
        std::fs::write(&path, with_pixels(&f, Some(vec![7; 10]))).unwrap();
        let out = store_as("STORESCU", dicom_port, &path);
        assert!(out.contains("Success"), "{out}");
        let entry = listed(&mut client, &c.meta.study.study_uid)
            .await
            .expect("a broken film is listed");
        assert_eq!(
            entry.priority.unwrap().priority,
            pb::Priority::NotAnalyzed as i32
        );
    }
    // ...then that sender is held off, even with a good film; another is not.
    let good_path = films.path().join("good.dcm");
    std::fs::write(&good_path, &plain).unwrap();
    let out = store_as("STORESCU", dicom_port, &good_path);
    assert!(out.contains("OutOfResources"), "not held off: {out}");
    let out = store_as("TESTSCU", dicom_port, &good_path);
    assert!(out.contains("Success"), "{out}");
    listed(&mut client, &plain_case.meta.study.study_uid)
        .await
        .expect("the good film from another sender is analysed");
    server.terminate();

    // Retention: every study read 100 days ago; `cxr-triage purge` with
    // the default 90 days removes their previews, heatmaps and events and
    // keeps the studies and the audit trail.
    let db = data_dir.join("worklist.sqlite");
    let day_ms: i64 = 86_400_000;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "UPDATE studies SET status = 'READ';
             UPDATE images SET received = received - {d};
             UPDATE events SET at = at - {d};",
            d = 100 * day_ms
        ))
        .unwrap();
    }
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let previews = count("SELECT COUNT(*) FROM images WHERE preview IS NOT NULL");
    assert!(previews > 0);
    let audit = count("SELECT COUNT(*) FROM audit");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
        .args(["purge", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{previews} previews")));
    assert_eq!(
        count("SELECT COUNT(*) FROM images WHERE preview IS NOT NULL"),
        0
    );
    assert_eq!(count("SELECT COUNT(*) FROM heatmaps"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM events"), 0);
    assert!(count("SELECT COUNT(*) FROM studies") >= 5);
    assert_eq!(count("SELECT COUNT(*) FROM audit"), audit);
}
