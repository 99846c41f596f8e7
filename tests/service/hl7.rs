//! Results to the RIS as HL7 v2.5.1 ORU^R01 over MLLP, received by a peer
//! nobody here wrote (python-hl7's asyncio MLLP server, every message
//! validated by hl7apy against the v2.5.1 structures;
//! `tests/interop/mllp_receiver.py`): a Vietnamese name from ISO_IR 192
//! arrives intact, an AE is retried, an AR is kept as failed, and with the
//! RIS down and `serve` killed by SIGKILL, each result arrives once, in
//! order, after both come back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;

use crate::pacs_support::{dcmtk, text};
use crate::service_process::{
    film, free_port, metric, plain_channel, scrape, wait_serving, Server,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test peer from `tests/interop/` (the MLLP or the FHIR receiver) on
/// `port`, answering as its control file says; killed when dropped.
struct Peer {
    child: Child,
}

impl Peer {
    fn start(script: &str, port: u16, out: &Path, control: &Path, extra: &[&str]) -> Peer {
        let mut child = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/interop").join(script))
            .args(["--port", &port.to_string()])
            .args(extra)
            .arg("--out")
            .arg(out)
            .arg("--control")
            .arg(control)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop peers (scripts/setup.sh test installs them)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "{script}: {line}");
        Peer { child }
    }

    /// The MLLP receiver (python-hl7 + hl7apy).
    fn ris(port: u16, out: &Path, control: &Path) -> Peer {
        Peer::start("mllp_receiver.py", port, out, control, &[])
    }

    /// The FHIR receiver (fhir.resources), requiring `token`.
    fn fhir(port: u16, out: &Path, control: &Path, token: &str) -> Peer {
        Peer::start("fhir_receiver.py", port, out, control, &["--token", token])
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the receiver recorded, one JSON object per message received.
fn received(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until `ok` holds for what was received.
fn wait_for(
    out: &Path,
    what: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = received(out);
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The control IDs acknowledged AA, in the order received.
fn accepted(r: &[serde_json::Value]) -> Vec<String> {
    r.iter()
        .filter(|m| m["ack_code"] == "AA")
        .map(|m| m["control_id"].as_str().unwrap().to_string())
        .collect()
}

/// A synthetic film whose patient is Vietnamese, in ISO_IR 192 (UTF-8).
fn vietnamese_film(dir: &Path, index: u64, name: &str) -> (Vec<u8>, String) {
    modified_film(
        dir,
        index,
        &[
            "(0008,0005)=ISO_IR 192".into(),
            format!("(0010,0010)={name}"),
        ],
    )
}

/// A synthetic film (with TB) changed by dcmodify `-m` assignments; its
/// bytes and Study Instance UID.
fn modified_film(dir: &Path, index: u64, assignments: &[String]) -> (Vec<u8>, String) {
    let (bytes, _) = film(index, true);
    let path = dir.join(format!("film-{index}.dcm"));
    std::fs::write(&path, bytes).unwrap();
    let mut args = vec!["-nb".to_string()];
    for a in assignments {
        args.push("-m".into());
        args.push(a.clone());
    }
    args.push(path.to_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = dcmtk("dcmodify", &args);
    assert!(o.status.success(), "{}", text(&o));
    let study = dcmtk("dcmdump", &["+P", "0020,000d", path.to_str().unwrap()]);
    let study = text(&study);
    let uid = study
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| panic!("no Study Instance UID: {study}"))
        .to_string();
    (std::fs::read(&path).unwrap(), uid)
}

/// `cxr-triage ARGS`: (success, stdout).
fn cli(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
        .args(args)
        .env("CXR_LOG", "warn")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

async fn analyze(addr: std::net::SocketAddr, dicom: Vec<u8>) -> pb::AnalyzeResponse {
    TriageClient::new(plain_channel(addr).await)
        .analyze(pb::AnalyzeRequest {
            dicom: dicom.into(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_reach_the_ris_once_in_order_through_outages_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (ris_port, metrics_port) = (free_port(), free_port());
    let out = dir.path().join("received.jsonl");
    let control = dir.path().join("mode");
    let cfg = dir.path().join("cxr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hl7]\ndestination = \"127.0.0.1:{ris_port}\"\nreceiving_application = \"RIS\"\n\
             receiving_facility = \"BV-BAC-NINH\"\ncountry = \"VNM\"\ntimeout_s = 5\n\
             retry_initial_s = 1\nretry_max_s = 2\n"
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let env = [("CXR_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))];

    // The RIS answers the first message with an application error, then
    // accepts: the result arrives again, with the same control ID.
    std::fs::write(&control, "AE,AA\n").unwrap();
    let ris = Peer::ris(ris_port, &out, &control);
    let server = Server::start(data.path(), &args, &env);
    wait_serving(plain_channel(server.addr).await).await;
    let (film1, study1) = vietnamese_film(dir.path(), 1, "NGUYỄN^THỊ HOA");
    let answer = analyze(server.addr, film1).await;
    assert!(!answer.findings.is_empty());
    let r = wait_for(&out, "the first result accepted", |r| {
        accepted(r).len() == 1
    });
    assert_eq!(r.len(), 2, "AE, then AA: {r:#?}");
    assert_eq!(r[0]["ack_code"], "AE");
    assert_eq!(r[0]["control_id"], r[1]["control_id"]);
    let m = &r[1];
    assert_eq!(m["valid"], true, "hl7apy v2.5.1 strict: {m:#?}");
    assert_eq!(m["message_type"], "ORU^R01^ORU_R01");
    assert_eq!(m["version"], "2.5.1");
    assert_eq!(m["charset"], "UNICODE UTF-8");
    let raw = m["raw"].as_str().unwrap();
    assert!(raw.contains("NGUYỄN^THỊ HOA"), "{raw}");
    assert!(
        raw.contains(&format!("CXR-STUDY-UID^Study Instance UID^L||{study1}|")),
        "{raw}"
    );
    assert!(
        raw.contains("CXR-FINDING^AI finding^L|1|tuberculosis^"),
        "{raw}"
    );
    assert!(
        raw.contains("AI result — not for primary diagnosis"),
        "{raw}"
    );
    // Nothing that names the patient is in the service's log.
    assert!(!server.log().contains("NGUYỄN"), "{}", server.log());
    let metrics = scrape(metrics_port);
    assert_eq!(
        metric(
            &metrics,
            "cxr_results_out_total",
            &["interface=\"hl7\"", "outcome=\"sent\""]
        ),
        Some(1.0),
        "{metrics}"
    );

    // The RIS is down; two results are queued; serve is killed (SIGKILL)
    // and started again; then the RIS comes back.
    drop(ris);
    let (film2, study2) = vietnamese_film(dir.path(), 2, "TRẦN^VĂN BÌNH");
    let (film3, study3) = vietnamese_film(dir.path(), 3, "LÊ^THỊ LAN");
    analyze(server.addr, film2).await;
    analyze(server.addr, film3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9();
    std::fs::write(&control, "AA\n").unwrap();
    let server = Server::start(data.path(), &args, &env);
    let _ris = Peer::ris(ris_port, &out, &control);
    let r = wait_for(&out, "both queued results accepted", |r| {
        accepted(r).len() == 3
    });
    let ids = accepted(&r);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "each result once: {ids:?}");
    let order: Vec<String> = r
        .iter()
        .filter(|m| m["ack_code"] == "AA")
        .map(|m| {
            let raw = m["raw"].as_str().unwrap();
            if raw.contains(&study2) {
                "2"
            } else if raw.contains(&study3) {
                "3"
            } else {
                "1"
            }
            .to_string()
        })
        .collect();
    assert_eq!(order, ["1", "2", "3"], "in the order they were made");
    assert!(r.iter().all(|m| m["valid"] == true), "{r:#?}");

    // A rejection (AR) is not retried; the message is kept as failed.
    std::fs::write(&control, "AR\n").unwrap();
    wait_serving(plain_channel(server.addr).await).await;
    analyze(server.addr, film(4, false).0).await;
    let r = wait_for(&out, "the rejected result", |r| {
        r.iter().any(|m| m["ack_code"] == "AR")
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        received(&out).len(),
        r.len(),
        "a rejected message is not sent again"
    );
    let metrics = scrape(metrics_port);
    assert_eq!(
        metric(
            &metrics,
            "cxr_results_out_outbox",
            &["interface=\"hl7\"", "state=\"failed\""]
        ),
        Some(1.0),
        "{metrics}"
    );

    // An operator sees it, and once the RIS is mended, requeues it.
    let rejected = r.iter().find(|m| m["ack_code"] == "AR").unwrap()["control_id"]
        .as_str()
        .unwrap()
        .to_string();
    let data_dir = data.path().to_str().unwrap();
    let (ok, listed) = cli(&[
        "results",
        "list",
        "--state",
        "failed",
        "--data-dir",
        data_dir,
    ]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains(&rejected) && listed.contains("AR: AR forced"),
        "{listed}"
    );
    assert!(
        !listed.contains("PID|"),
        "no message bodies in the list: {listed}"
    );
    std::fs::write(&control, "AA\n").unwrap();
    let (ok, said) = cli(&["results", "requeue", "--failed", "--data-dir", data_dir]);
    assert!(
        ok && said.contains(&format!("hl7 {rejected}: requeued")),
        "{said}"
    );
    wait_for(&out, "the requeued result accepted", |r| {
        accepted(r).contains(&rejected)
    });
    let (_, audit) = cli(&["audit", "show", "--data-dir", data_dir]);
    assert!(audit.contains("RequeueResult:hl7"), "{audit}");
    server.terminate();
}

/// Orders from the RIS (ORM^O01 sent by python-hl7's `mllp_send`) give
/// the result its order numbers; the result goes over mutual TLS; a second
/// image of the study sends a correction; and `serve` killed while the
/// RIS has not yet acknowledged sends the message again, with the same
/// control ID, and not after it was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_mutual_tls_updates_and_a_kill_9_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    crate::service_process::make_certificates(dir.path());
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ris_port, order_port) = (free_port(), free_port());
    let out = dir.path().join("received.jsonl");
    let control = dir.path().join("mode");
    let cfg = dir.path().join("cxr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hl7]\ndestination = \"127.0.0.1:{ris_port}\"\ntls = true\nca_file = \"{}\"\n\
             cert_file = \"{}\"\nkey_file = \"{}\"\norder_listen = \"127.0.0.1:{order_port}\"\n\
             timeout_s = 4\nretry_initial_s = 1\nretry_max_s = 2\n",
            d("ca.pem"),
            d("client.pem"),
            d("client.key")
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let tls = [
        "--tls-cert",
        &d("server.pem"),
        "--tls-key",
        &d("server.key"),
        "--tls-client-ca",
        &d("ca.pem"),
    ]
    .map(String::from);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let _ris = Peer::start("mllp_receiver.py", ris_port, &out, &control, &tls);
    let server = Server::start(data.path(), &args, &[]);
    wait_serving(plain_channel(server.addr).await).await;

    // The RIS sends the order, then a message that is not an order.
    let orders = dir.path().join("orders.hl7");
    std::fs::write(
        &orders,
        "MSH|^~\\&|RIS|BV-BAC-NINH|CXR-TRIAGE|RADIOLOGY|20261206080000||ORM^O01|ORM0001|P|2.3.1\n\
         PID|1||BN-000123^^^BV-BAC-NINH^MR||NGUYỄN^THỊ HOA||19800101|F\n\
         PV1|1|E|CC^101^1^BV-BAC-NINH\n\
         ORC|NW|ORD-77^RIS|FIL-9^PACS||SC||||20261206080000|||1234^TRẦN^MINH\n\
         OBR|1|ORD-77^RIS|FIL-9^PACS|36643-5^XR Chest 2V^LN||||||||||||||ACC-5501|RP-1\n\
         MSH|^~\\&|RIS|BV-BAC-NINH|CXR-TRIAGE|RADIOLOGY|20261206080001||ADT^A08|ADT0002|P|2.3.1\n\
         PID|1||BN-000123\n",
    )
    .unwrap();
    let sent = Command::new(root().join(".venv/bin/mllp_send"))
        .args(["--port", &order_port.to_string(), "--loose", "--file"])
        .arg(&orders)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let acks = String::from_utf8_lossy(&sent.stdout).into_owned();
    assert!(sent.status.success(), "{acks}");
    assert!(acks.contains("MSA|AA|ORM0001"), "{acks}");
    assert!(acks.contains("MSA|AR|ADT0002"), "{acks}");

    // The film of that order: the result carries the RIS's numbers.
    let (film1, study) = modified_film(dir.path(), 31, &["(0008,0050)=ACC-5501".into()]);
    analyze(server.addr, film1).await;
    let r = wait_for(&out, "the first result", |r| accepted(r).len() == 1);
    let first = &r[0];
    assert_eq!(first["valid"], true, "{first:#?}");
    assert_eq!(first["tls_client"], "client", "mutual TLS");
    let raw = first["raw"].as_str().unwrap();
    assert!(
        raw.contains("\rPID|1||BN-000123^^^BV-BAC-NINH^MR|"),
        "{raw}"
    );
    assert!(raw.contains("\rPV1|1|E|CC^101^1^BV-BAC-NINH\r"), "{raw}");
    assert!(
        raw.contains("\rORC|RE|ORD-77^RIS|FIL-9^PACS|||||||||1234^TRẦN^MINH\r"),
        "{raw}"
    );
    let obr = |raw: &str| -> Vec<String> {
        raw.split('\r')
            .find(|s| s.starts_with("OBR|"))
            .unwrap()
            .split('|')
            .map(String::from)
            .collect()
    };
    let o = obr(raw);
    assert_eq!(
        (o[2].as_str(), o[18].as_str(), o[25].as_str()),
        ("ORD-77^RIS", "ACC-5501", "P")
    );

    // A second image of the same study: a correction, its own control ID.
    let (film2, _) = modified_film(
        dir.path(),
        32,
        &[
            "(0008,0050)=ACC-5501".into(),
            format!("(0020,000d)={study}"),
        ],
    );
    analyze(server.addr, film2).await;
    let r = wait_for(&out, "the update", |r| accepted(r).len() == 2);
    let ids = accepted(&r);
    assert_ne!(ids[0], ids[1]);
    let update = r[1]["raw"].as_str().unwrap();
    assert_eq!(r[1]["valid"], true, "{:#?}", r[1]);
    assert_eq!(obr(update)[25], "C", "{update}");
    assert!(update.contains(&study));

    // The RIS takes its time to acknowledge; serve is killed meanwhile.
    std::fs::write(&control, "SLOW:30\n").unwrap();
    analyze(server.addr, film(33, false).0).await;
    let r = wait_for(&out, "the message awaiting its ACK", |r| r.len() == 3);
    let pending = r[2]["control_id"].as_str().unwrap().to_string();
    server.kill_9();
    std::fs::write(&control, "AA\n").unwrap();
    let server = Server::start(data.path(), &args, &[]);
    // (The receiver records a message before it answers.)
    let r = wait_for(&out, "the unacknowledged message sent again", |r| {
        r.iter()
            .any(|m| m["control_id"] == pending.as_str() && m["mode"] == "AA")
    });
    assert_eq!(r.len(), 4, "{r:#?}");
    assert_eq!(r[3]["control_id"], pending.as_str(), "the same control ID");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(received(&out).len(), 4, "nothing is sent after its AA");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_reach_the_fhir_server_as_a_valid_r4_bundle_with_retries() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let out = dir.path().join("fhir.jsonl");
    let control = dir.path().join("mode");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let cfg = dir.path().join("cxr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[fhir]\nbase_url = \"http://127.0.0.1:{port}/fhir\"\ntoken_file = \"{}\"\n\
             patient_id_system = \"urn:oid:1.2.840.99999.1\"\ntimeout_s = 2\n\
             retry_initial_s = 1\nretry_max_s = 2\n",
            token_file.display()
        ),
    )
    .unwrap();
    // The server is overloaded twice (503), then takes the bundle.
    std::fs::write(&control, "503,500,OK\n").unwrap();
    let _fhir = Peer::fhir(port, &out, &control, "s3cret-token");
    let server = Server::start(
        data.path(),
        &["--config", cfg.to_str().unwrap()],
        &[("CXR_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))],
    );
    wait_serving(plain_channel(server.addr).await).await;
    let (film1, study1) = vietnamese_film(dir.path(), 11, "NGUYỄN^THỊ HOA");
    analyze(server.addr, film1).await;
    let r = wait_for(&out, "the bundle accepted", |r| {
        r.iter().any(|m| m["status"] == 200)
    });
    let statuses: Vec<_> = r.iter().map(|m| m["status"].clone()).collect();
    assert_eq!(statuses, [503, 500, 200], "{r:#?}");
    let ok = r.last().unwrap();
    assert_eq!(ok["valid"], true, "fhir.resources R4: {ok:#?}");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["resource_type"], "Bundle");
    assert!(
        ok["patient_names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "NGUYỄN THỊ HOA"),
        "{ok:#?}"
    );
    let body = ok["body"].to_string();
    assert!(body.contains(&format!("urn:oid:{study1}")), "{body}");
    assert!(body.contains("DiagnosticReport") && body.contains("preliminary"));
    assert!(!server.log().contains("NGUYỄN"), "{}", server.log());

    // A bundle the server refuses (400) is kept as failed, not resent.
    std::fs::write(&control, "400\n").unwrap();
    analyze(server.addr, film(12, false).0).await;
    let r = wait_for(&out, "the refused bundle", |r| {
        r.iter().any(|m| m["status"] == 400)
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        received(&out).len(),
        r.len(),
        "a refused bundle is not resent"
    );
    let metrics = scrape(metrics_port);
    assert_eq!(
        metric(
            &metrics,
            "cxr_results_out_outbox",
            &["interface=\"fhir\"", "state=\"failed\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "cxr_results_out_outbox",
            &["interface=\"fhir\"", "state=\"sent\""]
        ),
        Some(1.0),
        "{metrics}"
    );

    // The server answers too late (after the 2 s timeout): the bundle is
    // sent again (the late answer's connection is gone, so the receiver
    // records only the retry), PUT under the same resource ids.
    std::fs::write(&control, "SLOW:4,OK\n").unwrap();
    let (film3, study3) = vietnamese_film(dir.path(), 13, "LÊ^THỊ LAN");
    analyze(server.addr, film3).await;
    let r = wait_for(&out, "the retry of the slow bundle", |r| {
        r.iter().any(|m| {
            m["mode"] == "OK" && m["status"] == 200 && m["body"].to_string().contains(&study3)
        })
    });
    assert_eq!(r.last().unwrap()["valid"], true);
    assert!(
        server.log().contains("no answer within"),
        "{}",
        server.log()
    );
    server.terminate();
}

/// Two replicas on one PostgreSQL worklist share one HL7 outbox: both
/// queue, one sends; when it is killed, the other sends what is left,
/// each result once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_hl7_outbox_and_one_takes_over_from_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = cxr_worklist::testing::ThrowawayPostgres::shared().create_database();
    let ris_port = free_port();
    let out = dir.path().join("received.jsonl");
    let control = dir.path().join("mode");
    let cfg = dir.path().join("cxr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hl7]\ndestination = \"127.0.0.1:{ris_port}\"\ntimeout_s = 4\n\
             retry_initial_s = 1\nretry_max_s = 2\n"
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let env = [("CXR_WORKLIST_URL", db.clone())];
    let a = Server::start(data_a.path(), &args, &env);
    wait_serving(plain_channel(a.addr).await).await;
    let b = Server::start(data_b.path(), &args, &env);
    wait_serving(plain_channel(b.addr).await).await;

    // The RIS is down: each replica queues a result.
    analyze(a.addr, film(41, true).0).await;
    analyze(b.addr, film(42, true).0).await;
    a.kill_9();
    // The RIS comes back: the replica left sends both, in order.
    let _ris = Peer::ris(ris_port, &out, &control);
    let r = wait_for(&out, "both results", |r| accepted(r).len() == 2);
    let ids = accepted(&r);
    assert!(ids[0] < ids[1], "in the order they were made: {ids:?}");
    assert!(r.iter().all(|m| m["valid"] == true), "{r:#?}");
    analyze(b.addr, film(43, false).0).await;
    wait_for(&out, "a third result", |r| accepted(r).len() == 3);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(received(&out).len(), 3, "each once");
    assert!(
        !data_b.path().join("hl7.sqlite").exists(),
        "no outbox file of its own"
    );
    b.terminate();
}
