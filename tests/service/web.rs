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

use crate::service_process::{film, free_port, plain_channel, wait_serving, Server};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The service with the web worklist on `web` and three local users.
fn config(dir: &Path, web: u16) -> PathBuf {
    let hash = |p: &str| cxr_web::hash_password(p, 1000);
    let path = dir.join("cxr.toml");
    std::fs::write(
        &path,
        format!(
            "[priority]\ncritical_operating_point = \"screening\"\n\
             [web]\nlisten = \"127.0.0.1:{web}\"\n\
             viewer_url = \"https://pacs.example/ohif/viewer?StudyInstanceUIDs={{study_instance_uid}}\"\n\
             [[web.users]]\nname = \"lan\"\npassword = \"{}\"\nroles = [\"reader\"]\n\
             [[web.users]]\nname = \"khoa\"\npassword = \"{}\"\nroles = [\"reader\"]\n\
             [[web.users]]\nname = \"upl\"\npassword = \"{}\"\nroles = [\"uploader\"]\n",
            hash("Phổi-khỏe-2026"),
            hash("Nốt-phổi-2026"),
            hash("upload-only"),
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
    let cfg = config(data.path(), web);
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
    assert!(headers
        .to_ascii_lowercase()
        .contains("httponly; samesite=strict"));
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
}

fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
