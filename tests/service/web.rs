//! The web worklist: the `serve` binary with local users, checked over
//! HTTP on loopback (sign-in, roles, security headers, the live stream
//! resuming by sequence number), then in headless Chromium by
//! `tests/web/browser.py` (Playwright), which saves screenshots to
//! `target/web-screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::service_process::{
    film, free_port, make_certificates, plain_channel, wait_serving, Server,
};

/// The test OpenID provider (PyPI `oidc-provider-mock`, nobody here wrote
/// it) on a free loopback port, with `dr.minh` a reader and admin.
struct Idp {
    child: std::process::Child,
    port: u16,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// Starts it and saves its signing keys (made afresh at each start)
    /// as `dir/jwks.json`, as an operator saves the provider's `jwks_uri`.
    fn start(dir: &Path) -> Idp {
        let port = free_port();
        let mut child = Command::new(python())
            .arg(root().join("tests/web/oidc_idp.py"))
            .args([
                "--port",
                &port.to_string(),
                "--user",
                "dr.minh:reader,admin",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tests/web/oidc_idp.py (oidc-provider-mock; scripts/setup.sh test)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "the OpenID provider: {line}");
        let idp = Idp { child, port };
        let (status, _, jwks) = request(
            port,
            "GET /jwks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert_eq!(status, 200);
        std::fs::write(dir.join("jwks.json"), jwks).unwrap();
        idp
    }
}

/// A scored and evaluated campaign, `dir/campaigns/van-1.jsonl` with
/// `van-1.evaluation.json`: `count` synthetic films with known truth
/// through the real `score` and `evaluate`.
fn campaign(dir: &Path, count: u64) {
    let films = dir.join("van-1-films");
    let spec = cxr_synth::CaseSpec {
        size: Some((512, 512)),
        nodule_contrast: 3.0,
        ..cxr_synth::CaseSpec::default()
    };
    std::fs::create_dir_all(&films).unwrap();
    let records = cxr_synth::generate_batch(&spec, 7, 1, count, &films).unwrap();
    cxr_synth::write_sidecars(&films, &records).unwrap();
    let out = dir.join("campaigns");
    std::fs::create_dir_all(&out).unwrap();
    let cli = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
            .args(args)
            .env("CXR_LOG", "error")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let results = out.join("van-1.jsonl");
    let models = root().join("models");
    cli(&[
        "score".as_ref(),
        films.as_os_str(),
        "--out".as_ref(),
        results.as_os_str(),
        "--models".as_ref(),
        models.as_os_str(),
        "--provider".as_ref(),
        "cpu".as_ref(),
        "--quiet".as_ref(),
    ]);
    cli(&[
        "evaluate".as_ref(),
        results.as_os_str(),
        "--truth".as_ref(),
        films.join("labels.csv").as_os_str(),
        "--json".as_ref(),
        out.join("van-1.evaluation.json").as_os_str(),
    ]);
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The service with the web worklist on `web`, four local users, browser
/// sign-in at the OpenID provider on `idp` (its keys saved in
/// `jwks.json`), and the campaigns in `dir/campaigns`.
fn config(dir: &Path, web: u16, idp: u16) -> PathBuf {
    let hash = |p: &str| cxr_web::hash_password(p, 1000);
    let path = dir.join("cxr.toml");
    std::fs::write(dir.join("client-secret"), "a-client-secret\n").unwrap();
    std::fs::write(
        &path,
        format!(
            "[priority]\ncritical_operating_point = \"screening\"\n\
             [auth.tokens]\nissuer = \"http://127.0.0.1:{idp}\"\njwks_file = \"{d}/jwks.json\"\n\
             roles_claim = \"roles\"\nsubject_claim = \"sub\"\n\
             [web]\nlisten = \"127.0.0.1:{web}\"\ncampaigns = \"{d}/campaigns\"\n\
             viewer_url = \"https://pacs.example/ohif/viewer?StudyInstanceUIDs={{study_instance_uid}}\"\n\
             [web.oidc]\nauthorization_endpoint = \"http://127.0.0.1:{idp}/oauth2/authorize\"\n\
             token_endpoint = \"http://127.0.0.1:{idp}/oauth2/token\"\nclient_id = \"cxr-triage\"\n\
             client_secret_file = \"{d}/client-secret\"\n\
             redirect_url = \"http://127.0.0.1:{web}/oidc/callback\"\n\
             [[web.users]]\nname = \"lan\"\npassword = \"{}\"\nroles = [\"reader\"]\n\
             [[web.users]]\nname = \"khoa\"\npassword = \"{}\"\nroles = [\"reader\"]\n\
             [[web.users]]\nname = \"upl\"\npassword = \"{}\"\nroles = [\"uploader\"]\n\
             [[web.users]]\nname = \"tam\"\npassword = \"{}\"\nroles = [\"reader\"]\n",
            hash("Phổi-khỏe-2026"),
            hash("Nốt-phổi-2026"),
            hash("upload-only"),
            hash("Tâm-2026"),
            d = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// One HTTP/1.1 request; the status line, headers and body.
fn request(port: u16, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, headers, raw[split + 4..].to_vec())
}

fn get(port: u16, path: &str, cookie: &str) -> (u16, String, Vec<u8>) {
    request(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
        ),
        b"",
    )
}

fn sign_in(port: u16, user: &str, password: &str) -> (u16, String) {
    let form = format!("user={user}&password={}&next=%2F", encode(password));
    let (status, headers, _) = request(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        ),
        form.as_bytes(),
    );
    (status, headers)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn session_cookie(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_worklist_signs_in_shows_the_worklist_live_and_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let web = free_port();
    let idp = Idp::start(data.path());
    campaign(data.path(), 24);
    let cfg = config(data.path(), web, idp.port);
    let server = Server::start(
        data.path(),
        &["--config", cfg.to_str().unwrap()],
        &[("CXR_WEB_LISTEN", format!("127.0.0.1:{web}"))],
    );
    let ch = plain_channel(server.addr).await;
    wait_serving(ch).await;

    // Anonymous: pages send to sign-in, the API says 401; assets are public.
    let (status, headers, _) = get(web, "/", "");
    assert_eq!(status, 303);
    assert!(headers.contains("location: /login?next=/"), "{headers}");
    assert_eq!(get(web, "/api/worklist", "").0, 401);
    let (status, headers, _) = get(web, "/assets/i18n.js", "");
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-security-policy: default-src 'self'"),
        "{headers}"
    );
    assert!(headers.contains("x-frame-options: DENY"), "{headers}");

    // A wrong password, then the right one.
    let (status, headers) = sign_in(web, "lan", "guess");
    assert_eq!(status, 303);
    assert!(headers.contains("location: /login?error=1"), "{headers}");
    let (status, headers) = sign_in(web, "lan", "Phổi-khỏe-2026");
    assert_eq!(status, 303);
    assert!(
        headers.contains("location: /\r") || headers.ends_with("location: /"),
        "{headers}"
    );
    // Lax, not Strict: the OpenID provider's redirect back is cross-site.
    assert!(headers
        .to_ascii_lowercase()
        .contains("httponly; samesite=lax"));
    let lan = session_cookie(&headers);
    let (status, _, body) = get(web, "/api/me", &lan);
    assert_eq!(status, 200);
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(me["user"], "lan");
    // An open redirect is not one.
    let form = "user=lan&password=Ph%E1%BB%95i-kh%E1%BB%8Fe-2026&next=%2F%2Fevil.example";
    let (_, headers, _) = request(
        web,
        &format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        ),
        form.as_bytes(),
    );
    assert!(headers.contains("location: /\r"), "{headers}");

    // An uploader signs in but may not read.
    let (_, headers) = sign_in(web, "upl", "upload-only");
    assert_eq!(get(web, "/api/worklist", &session_cookie(&headers)).0, 403);

    // With [auth] off but sign-in configured, an Authorization header is
    // not a way in (the authenticator's open mode must not leak here).
    let (status, _, _) = request(
        web,
        "GET /api/worklist HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer whatever\r\n\r\n",
        b"",
    );
    assert_eq!(status, 401);

    // A reader cannot reach the audit trail (admin).
    let (status, _, _) = get(web, "/admin", &lan);
    assert_eq!(status, 403);
    assert_eq!(get(web, "/api/audit?latest=1", &lan).0, 403);

    // Guessing passwords: after 5 failures a user name waits, even with
    // the right password; other users are not affected.
    for _ in 0..5 {
        let (_, headers) = sign_in(web, "tam", "wrong");
        assert!(headers.contains("location: /login?error=1"), "{headers}");
    }
    let (_, headers) = sign_in(web, "tam", "Tâm-2026");
    assert!(
        headers.contains("location: /login?error=throttled"),
        "{headers}"
    );
    assert!(headers.to_ascii_lowercase().contains("retry-after: "));
    assert_eq!(sign_in(web, "khoa", "Nốt-phổi-2026").0, 303);

    // The campaign page's data: progress and the report's figures.
    let (status, _, body) = get(web, "/api/campaigns", &lan);
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let van = &list["campaigns"][0];
    assert_eq!(van["name"], "van-1", "{list}");
    assert_eq!(van["evaluated"], true);
    assert_eq!(van["progress"]["finished"], true);
    // 24 films and the generator's two sidecars, which score reports
    // as not DICOM rather than dropping silently.
    assert_eq!(van["progress"]["done"], 26, "{list}");
    assert_eq!(van["progress"]["scored"], 24);
    assert_eq!(van["progress"]["failed"], 2);
    let (status, _, body) = get(web, "/api/campaigns/van-1", &lan);
    assert_eq!(status, 200);
    let c: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(c["figures"]["images"], 24);
    let by_priority: u64 = c["figures"]["by_priority"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_priority, 24);
    for (finding, f) in c["figures"]["findings"].as_object().unwrap() {
        let bins: u64 = f["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(bins, f["analysed"].as_u64().unwrap(), "{finding}");
        assert!(
            c["evaluation"]["findings"][finding]["roc"].is_array(),
            "{finding}"
        );
    }
    // Names are matched, never joined into a path.
    assert_eq!(get(web, "/api/campaigns/..%2Fcxr.toml", &lan).0, 404);
    assert_eq!(get(web, "/api/campaigns/van-1.evaluation", &lan).0, 404);

    // The live stream resumes from a sequence number: a film stored while
    // no browser listened is replayed to one that says where it was.
    let films = tempfile::tempdir().unwrap();
    let (routine, _) = film(500_001, false);
    let (critical, _) = film(500_002, true);
    let routine_path = films.path().join("routine.dcm");
    let critical_path = films.path().join("critical.dcm");
    std::fs::write(&routine_path, &routine).unwrap();
    std::fs::write(&critical_path, &critical).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", web)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: {lan}\r\nLast-Event-ID: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let send = Command::new(python())
        .arg(root().join("examples/python/triage_client.py"))
        .args(["--server", &server.addr.to_string(), "--json"])
        .arg(&routine_path)
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut got_event = false;
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("id: 1") {
            got_event = true;
        }
        if line.starts_with("data: {") && got_event {
            let event: serde_json::Value =
                serde_json::from_str(line.trim_start_matches("data: ").trim()).unwrap();
            assert_eq!(event["kind"], "image_stored");
            assert!(event["study"]["assessment"]["priority"].is_string());
            break;
        }
        line.clear();
    }
    assert!(got_event, "the stream replayed event 1");

    // The browser part.
    let out = root().join("target/web-screenshots");
    let run = Command::new(python())
        .arg(root().join("tests/web/browser.py"))
        .args(["--web", &format!("http://127.0.0.1:{web}")])
        .args(["--grpc", &server.addr.to_string()])
        .args(["--idp", &format!("http://127.0.0.1:{}", idp.port)])
        .args(["--campaign", "van-1"])
        .arg("--critical")
        .arg(&critical_path)
        .arg("--routine")
        .arg(&routine_path)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("tests/web/browser.py (Playwright; scripts/setup.sh test)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{report}");
    assert!(
        run.status.success(),
        "browser checks failed:\n{report}\n{}",
        server.log()
    );
    for shot in [
        "worklist-en.png",
        "study-en.png",
        "worklist-vi.png",
        "study-vi.png",
        "campaign-en.png",
        "campaign-vi.png",
        "audit-en.png",
    ] {
        assert!(out.join(shot).exists(), "{shot}");
    }
    // Every status change made in the browser is in the audit trail.
    let log = server.terminate();
    let _ = log;
    let audit = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
        .args(["audit", "--data-dir"])
        .arg(data.path())
        .args(["show", "--last", "1000"])
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("WebUpdateStatus:CLAIMED") && audit.contains("lan"),
        "{audit}"
    );
    // Sign-ins too: by password, refused, throttled, and at the provider.
    for needle in ["WebSignIn", "REFUSED", "THROTTLED", "web/oidc", "dr.minh"] {
        assert!(audit.contains(needle), "{needle}: {audit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_with_a_client_certificate_is_known_by_it_over_https() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let data = tempfile::tempdir().unwrap();
    let web = free_port();
    let cfg = data.path().join("cxr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\nclient_ca = \"{0}/ca.pem\"\n\
             [auth]\nenabled = true\n[auth.clients]\nclient = [\"reader\"]\n\
             [web]\nlisten = \"127.0.0.1:{web}\"\n",
            certs.path().display()
        ),
    )
    .unwrap();
    let server = Server::start(
        data.path(),
        &["--config", cfg.to_str().unwrap()],
        &[("CXR_WEB_LISTEN", format!("127.0.0.1:{web}"))],
    );
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(certs.path().join("ca.pem"))
            .args(args)
            .arg(format!("https://127.0.0.1:{web}/api/me"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for _ in 0..50 {
        if curl(&[]) != "000" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let with_cert = [
        "--cert",
        &format!("{}/client.pem", certs.path().display()),
        "--key",
        &format!("{}/client.key", certs.path().display()),
    ]
    .map(|s| s.to_string());
    let with_cert: Vec<&str> = with_cert.iter().map(String::as_str).collect();
    // The certificate is known by its common name, with the roles
    // [auth.clients] gives it; without one the browser must sign in.
    assert_eq!(curl(&with_cert), "200", "{}", server.log());
    assert_eq!(curl(&[]), "401");
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(certs.path().join("ca.pem"))
        .args(&with_cert)
        .arg(format!("https://127.0.0.1:{web}/api/me"))
        .output()
        .unwrap();
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["user"], "client");
    assert_eq!(me["method"], "certificate");
    assert_eq!(me["roles"], serde_json::json!(["reader"]));
    server.terminate();
}

fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
