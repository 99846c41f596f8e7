//! The service as an operator runs it: the real `cxr-triage serve` binary in
//! its own process, driven over loopback. `kill -9` loses nothing that was
//! acknowledged; the Prometheus endpoint reports what happened and neither
//! it nor the log carries patient identifiers; TLS and mutual TLS (a
//! configuration file, certificates made by `openssl`); and the Python
//! client in `examples/python/` (grpcio) against the running server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax, ViewChoice};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (for the metrics listener, which reports no
/// address of its own).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cxr-triage serve` in a child process; its stderr is collected.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) fn start(data: &Path, extra: &[&str], env: &[(&str, String)]) -> Server {
        Server::start_on("127.0.0.1:0", data, extra, env)
    }

    /// `serve` on `listen` (a fixed port, for a balancer in front).
    pub(crate) fn start_on(
        listen: &str,
        data: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cxr-triage"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data)
            .arg("--models")
            .arg(root().join("models"))
            .arg("--provider")
            .arg("cpu")
            .args(extra)
            .env("CXR_METRICS_LISTEN", "off")
            .env("CXR_WEB_LISTEN", "off")
            .env("CXR_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting cxr-triage serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("cxr-triage serving gRPC on ") {
                        if let Some(addr) = rest.split_whitespace().next() {
                            let _ = tx.send(addr.parse().unwrap());
                        }
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not start:\n{}", log.lock().unwrap()));
        Server { child, addr, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown path runs.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        // The stderr reader sees EOF shortly after exit.
        std::thread::sleep(Duration::from_millis(200));
        assert!(status.success(), "exit {status}:\n{}", self.log());
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn plain_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub(crate) async fn wait_serving(ch: Channel) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if matches!(&r, Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never SERVING");
}

/// A synthetic frontal film (TB-positive or not) with its own study; the
/// case carries the fake patient name and ID written into the file.
pub(crate) fn film(index: u64, tb: bool) -> (Vec<u8>, cxr_synth::SyntheticCase) {
    let spec = CaseSpec {
        positive_rate: if tb { 1.0 } else { 0.0 },
        findings: cxr_synth::FindingSet {
            nodule: false,
            tb: true,
        },
        view: ViewChoice::Pa,
        ..CaseSpec::small()
    };
    let case = generate_case(&spec, 7_001, index).unwrap();
    (dicom_bytes(&case, OutputSyntax::ExplicitLe).unwrap(), case)
}

async fn analyze(ch: Channel, dicom: Vec<u8>) -> Result<pb::AnalyzeResponse, tonic::Status> {
    TriageClient::new(ch)
        .analyze(pb::AnalyzeRequest {
            dicom: dicom.into(),
            options: None,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_result() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[], &[]);
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;

    // 24 films sent 4 at a time; the server is killed once 10 have been
    // acknowledged, with others still in flight.
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let films: Vec<_> = (0..24).map(|i| film(i, i % 3 == 0).0).collect();
    let queue = Arc::new(Mutex::new(films));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (queue, ch, ack_tx) = (Arc::clone(&queue), ch.clone(), ack_tx.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(file) = queue.lock().unwrap().pop() else {
                    break;
                };
                match analyze(ch.clone(), file).await {
                    Ok(r) => {
                        let _ = ack_tx.send(r.identity.unwrap().sop_instance_uid);
                    }
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    drop(ack_tx);
    let mut acknowledged = Vec::new();
    while let Some(uid) = ack_rx.recv().await {
        acknowledged.push(uid);
        if acknowledged.len() == 10 {
            break;
        }
    }
    server.kill_9();
    for s in senders {
        s.await.unwrap();
    }
    // Whatever else was acknowledged before the process died counts too.
    while let Ok(uid) = ack_rx.try_recv() {
        acknowledged.push(uid);
    }
    assert!(acknowledged.len() >= 10);

    // The database is intact without any shutdown path having run.
    let db = rusqlite::Connection::open(data.path().join("worklist.sqlite")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);

    // Restarted on the same data directory: every acknowledged image is on
    // the worklist with its result.
    let server = Server::start(data.path(), &[], &[]);
    let ch = plain_channel(server.addr).await;
    let mut client = TriageClient::new(ch.clone());
    let mut found = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_worklist(pb::ListWorklistRequest {
                page_size: 50,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for s in &page.studies {
            let study = client
                .get_study(pb::GetStudyRequest {
                    study_instance_uid: s.study_instance_uid.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            for image in study.images {
                assert!(image.analyzable);
                assert_eq!(image.findings.len(), 2);
                found.insert(image.identity.unwrap().sop_instance_uid);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for uid in &acknowledged {
        assert!(found.contains(uid), "acknowledged {uid} lost after kill -9");
    }
    server.terminate();
}

/// GET /metrics over plain HTTP/1.1.
pub(crate) fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

pub(crate) fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split([' ', '{']).next() == Some(name) && labels.iter().all(|lab| l.contains(lab))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_the_work_and_nothing_identifies_a_patient() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(
        data.path(),
        &[],
        &[("CXR_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;

    let mut identifiers = Vec::new();
    for i in 0..3 {
        let (file, case) = film(100 + i, i == 0);
        identifiers.push(case.meta.patient.name.clone());
        identifiers.push(case.meta.patient.id.clone());
        identifiers.push(case.meta.study.study_uid.clone());
        identifiers.push(case.meta.study.sop_instance_uid.clone());
        identifiers.push(case.meta.study.accession.clone());
        analyze(ch.clone(), file).await.unwrap();
    }
    // A file that is not DICOM at all: refused.
    assert_eq!(
        analyze(ch.clone(), b"not a dicom file".to_vec())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );

    // Gauges are refreshed every few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(port);
        let open: f64 = ["CRITICAL", "URGENT", "NOT_ANALYZED", "ROUTINE"]
            .iter()
            .filter_map(|p| {
                metric(
                    &text,
                    "cxr_worklist_open_studies",
                    &[&format!("priority=\"{p}\"")],
                )
            })
            .sum();
        if open == 3.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        metric(&text, "cxr_analyses_total", &["outcome=\"analyzed\""]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "cxr_requests_failed_total",
            &["code=\"InvalidArgument\""]
        ),
        Some(1.0),
        "{text}"
    );
    for stage in ["decode", "preprocess", "inference"] {
        let count = metric(
            &text,
            "cxr_stage_seconds_count",
            &[&format!("stage=\"{stage}\"")],
        );
        assert!(count.is_some_and(|c| c >= 3.0), "{stage}: {text}");
    }
    assert_eq!(
        metric(
            &text,
            "cxr_model_info",
            &["model=\"cxr-reference-v1\"", "provider=\"cpu\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, "cxr_batch_size_count", &[]).is_some_and(|c| c >= 1.0));
    let open: f64 = ["CRITICAL", "URGENT", "NOT_ANALYZED", "ROUTINE"]
        .iter()
        .filter_map(|p| {
            metric(
                &text,
                "cxr_worklist_open_studies",
                &[&format!("priority=\"{p}\"")],
            )
        })
        .sum();
    assert_eq!(open, 3.0, "{text}");

    let log = server.terminate();
    assert!(
        log.contains("analysis committed"),
        "a span-tagged line per request: {log}"
    );
    for id in identifiers.iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(id.as_str()), "metrics carry {id}");
        assert!(!log.contains(id.as_str()), "log carries {id}:\n{log}");
    }
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, made with the openssl command-line tool.
pub(crate) fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cxr-triage test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
}

async fn tls_channel(addr: SocketAddr, dir: &Path, client_cert: bool) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(dir.join("ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    if client_cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(dir.join("client.pem")).unwrap(),
            std::fs::read(dir.join("client.key")).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

async fn health(ch: Channel) -> Result<i32, tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("cxr-triage.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\nclient_ca = \"{0}/ca.pem\"\n",
            certs.path().display()
        ),
    )
    .unwrap();
    let server = Server::start(data.path(), &["--config", config.to_str().unwrap()], &[]);

    // With a client certificate: served, and an analysis works.
    let ch = tls_channel(server.addr, certs.path(), true).await.unwrap();
    wait_serving(ch.clone()).await;
    let (file, _) = film(200, true);
    let r = analyze(ch, file).await.unwrap();
    assert!(r.analyzable);

    // TLS without a client certificate: refused in the handshake.
    let anonymous = match tls_channel(server.addr, certs.path(), false).await {
        Ok(ch) => health(ch).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    assert!(anonymous.is_err(), "served without a client certificate");

    // Plaintext: refused.
    let plain = match Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
    {
        Ok(ch) => health(ch).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain.is_err(), "served over plaintext");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_rs_is_https_with_the_service_tls_identity() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let data = tempfile::tempdir().unwrap();
    let stow_port = free_port();
    let config = data.path().join("cxr-triage.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\n\n\
             [dicom]\nenabled = true\nlisten = \"127.0.0.1:{1}\"\nstow_listen = \"127.0.0.1:{2}\"\n",
            certs.path().display(),
            free_port(),
            stow_port
        ),
    )
    .unwrap();
    let server = Server::start(data.path(), &["--config", config.to_str().unwrap()], &[]);
    let ch = tls_channel(server.addr, certs.path(), false).await.unwrap();
    wait_serving(ch).await;

    let (file, _) = film(210, false);
    let boundary = "cxr-stow-tls";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body_path = data.path().join("body.bin");
    std::fs::write(&body_path, &body).unwrap();
    let post = |scheme: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(certs.path().join("ca.pem"))
            .arg("-H")
            .arg(format!(
                "Content-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}"
            ))
            .arg("--data-binary")
            .arg(format!("@{}", body_path.display()))
            .arg(format!("{scheme}://127.0.0.1:{stow_port}/studies"))
            .output()
            .expect("curl (Debian package curl)")
    };
    // HTTPS, verified against the CA: stored.
    let o = post("https");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.trim_end().ends_with("200"), "{out}");
    assert!(out.contains("00081199"), "no ReferencedSOPSequence: {out}");
    // Plain HTTP to the same port: no answer.
    let o = post("http");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.trim_end().ends_with("200"),
        "served over plain HTTP: {out}"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_goes_to_a_syslog_collector_in_rfc_5424() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = collector.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[],
        &[("CXR_AUDIT_SYSLOG", format!("udp://127.0.0.1:{port}"))],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    let (file, _) = film(220, false);
    analyze(ch, file).await.unwrap();

    let mut messages = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while !messages
        .iter()
        .any(|m: &String| m.contains("action=\"Analyze\""))
    {
        let (n, _) = collector
            .recv_from(&mut buf)
            .expect("no audit message within 30 s");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    for (i, m) in messages.iter().enumerate() {
        // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
        let fields: Vec<&str> = m.splitn(7, ' ').collect();
        assert!(fields[0] == "<110>1" || fields[0] == "<108>1", "{m}");
        assert!(fields[1].ends_with('Z') && fields[1].contains('T'), "{m}");
        assert_eq!(
            &fields[3..6],
            ["cxr-triage", &server.child.id().to_string(), "cxr-audit"],
            "{m}"
        );
        assert!(
            fields[6].starts_with(&format!("[cxr-audit@32473 seq=\"{}\" hash=\"", i + 1)),
            "{m}"
        );
    }
    let analyze = messages.last().unwrap();
    assert!(analyze.starts_with("<110>1 "), "{analyze}");
    assert!(analyze.contains("outcome=\"OK\""), "{analyze}");
    assert!(analyze.contains(" image:2."), "{analyze}");
    server.terminate();
    let progress: u64 = std::fs::read_to_string(data.path().join("audit-syslog.seq"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(progress >= messages.len() as u64, "{progress}");
}

fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} missing: run `make test` (scripts/setup.sh test installs the client's packages)",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_client_sends_files_and_reads_the_worklist() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[], &[]);
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;

    // A synthetic TB-positive film, the bundled lateral, and a 5 MB file
    // (AnalyzeStream: larger than the client's single-message size).
    let files = tempfile::tempdir().unwrap();
    let (positive, case) = film(300, true);
    let positive_path = files.path().join("positive.dcm");
    std::fs::write(&positive_path, &positive).unwrap();
    let lateral = root().join("test-images/bundled/synthetic-cr-lateral.dcm");
    let big_spec = CaseSpec {
        size: Some((1600, 1600)),
        bits: Some(12),
        ..CaseSpec::small()
    };
    let big_case = generate_case(&big_spec, 7_002, 0).unwrap();
    let big = dicom_bytes(&big_case, OutputSyntax::ExplicitLe).unwrap();
    assert!(big.len() > 4 << 20);
    let big_path = files.path().join("large.dcm");
    std::fs::write(&big_path, &big).unwrap();

    let out = Command::new(python())
        .arg(root().join("examples/python/triage_client.py"))
        .arg("--server")
        .arg(server.addr.to_string())
        .arg("--json")
        .args([&positive_path, &lateral, &big_path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(
        rows[0]["sop_instance_uid"],
        case.meta.study.sop_instance_uid
    );
    assert_eq!(rows[0]["analyzable"], true);
    assert_ne!(rows[0]["priority"], "ROUTINE", "{stdout}");
    let tb = rows[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["finding"] == "TUBERCULOSIS")
        .unwrap();
    assert_eq!(tb["positive"]["screening"], true, "{stdout}");
    assert_eq!(rows[1]["analyzable"], false);
    assert_eq!(rows[1]["reason"], "lateral_view");
    assert_eq!(
        rows[2]["sop_instance_uid"],
        big_case.meta.study.sop_instance_uid
    );
    assert_eq!(rows[2]["analyzable"], true);

    // The worklist as the client prints it: the positive study first.
    let out = Command::new(python())
        .arg(root().join("examples/python/triage_client.py"))
        .args(["--server", &server.addr.to_string(), "--worklist", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["study_instance_uid"], case.meta.study.study_uid);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");

    // A file that is not DICOM: reported, and the exit status says so.
    let junk = files.path().join("notes.txt");
    std::fs::write(&junk, "not a radiograph").unwrap();
    let out = Command::new(python())
        .arg(root().join("examples/python/triage_client.py"))
        .args(["--server", &server.addr.to_string()])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_ARGUMENT"));
    server.terminate();
}

/// Every file the service writes under its data directory is its user's
/// alone (0600, folders 0700), even when the directory was left open by an
/// earlier version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patient_data_on_disk_is_readable_by_the_service_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dicom_port = free_port();
    let server = Server::start(
        &data,
        &[],
        &[
            ("CXR_DICOM_ENABLED", "true".into()),
            ("CXR_DICOM_LISTEN", format!("127.0.0.1:{dicom_port}")),
        ],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    analyze(ch, film(900, true).0).await.unwrap();
    server.terminate();

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut seen = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 1, "the worklist database at least");
    assert!(data.join("worklist.sqlite").exists());
}

/// Worklist watches are capped, and an open one does not hold up a
/// SIGTERM: the service stops within seconds and the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_are_capped_and_end_on_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[], &[("CXR_LIMITS_MAX_WATCHERS", "2".into())]);
    let ch = plain_channel(server.addr).await;
    wait_serving(ch.clone()).await;
    let mut client = TriageClient::new(ch);
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            client
                .watch_worklist(pb::WatchWorklistRequest { after_sequence: 0 })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let third = client
        .watch_worklist(pb::WatchWorklistRequest { after_sequence: 0 })
        .await
        .unwrap_err();
    assert_eq!(third.code(), tonic::Code::ResourceExhausted);

    let started = Instant::now();
    server.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SIGTERM with open watches took {:?}",
        started.elapsed()
    );
    for mut stream in open {
        // The stream ends (cleanly or with the connection) instead of
        // hanging.
        let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
        assert!(end.is_ok(), "a watch outlived the service");
    }
}
