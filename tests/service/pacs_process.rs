//! The DICOM side of the real `cxr-triage serve` binary, killed with
//! `kill -9`: every image acknowledged by C-STORE reaches the worklist after
//! a restart, and results waiting in the outbox for a destination that was
//! down are delivered after a restart — each exactly once (dcmtk's
//! `storescp` as the destination, one file per object received). The log
//! carries no patient or instance identifiers.

use crate::pacs_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxr_synth::OutputSyntax;
use cxr_worklist::{SqliteStore, WorklistStore};
use pacs_support::*;

struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `cxr-triage serve` with `config` (TOML), up once its DICOM port echoes.
    fn start(data: &Path, config: &Path, dicom_port: u16) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
            .args(["serve", "--listen", "127.0.0.1:0", "--provider", "cpu"])
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .arg("--models")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
            .env("CXR_METRICS_LISTEN", "off")
            .env("CXR_WEB_LISTEN", "off")
            .env("CXR_LOG", "debug,ort=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cxr-triage serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let server = Server { child, log };
        let start = Instant::now();
        loop {
            let o = dcmtk(
                "echoscu",
                &[
                    "-aet",
                    "STORESCU",
                    "-aec",
                    "CXR_TRIAGE",
                    "127.0.0.1",
                    &dicom_port.to_string(),
                ],
            );
            if o.status.success() {
                return server;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "DICOM port never answered:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn kill_9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, dicom_port: u16, destination: Option<u16>) -> PathBuf {
    let mut toml = format!(
        "[dicom]\nenabled = true\nae_title = \"CXR_TRIAGE\"\nlisten = \"127.0.0.1:{dicom_port}\"\n\
         allowed_calling_aes = [\"STORESCU\"]\nstudy_quiet_s = 1\ntimeout_s = 10\n"
    );
    if let Some(port) = destination {
        toml.push_str(&format!(
            "destination = {{ ae_title = \"STORESCP\", host = \"127.0.0.1\", port = {port} }}\n\
             [dicom.retry]\ninitial_s = 1\nmax_s = 2\n"
        ));
    }
    let path = dir.join("cxr.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn spool_count(data: &Path) -> usize {
    std::fs::read_dir(data.join("pacs/incoming"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sends files in one association; panics unless every one is acknowledged.
fn store_all(port: u16, files: &[PathBuf]) {
    let port = port.to_string();
    let mut args: Vec<&str> = vec![
        "-aet",
        "STORESCU",
        "-aec",
        "CXR_TRIAGE",
        "-xe",
        "127.0.0.1",
        &port,
    ];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    let o = dcmtk("storescu", &args);
    assert!(o.status.success(), "storescu: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_image_acknowledged_by_c_store() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(films.path(), port, None);
    let sent: Vec<(PathBuf, String, String)> = (0..24)
        .map(|i| film(films.path(), 65, i, OutputSyntax::ExplicitLe, i % 3 == 0))
        .collect();
    let server = Server::start(data.path(), &config, port);
    let files: Vec<PathBuf> = sent.iter().map(|s| s.0.clone()).collect();
    store_all(port, &files);
    // Every C-STORE was answered success: kill at once.
    let log = server.kill_9();
    let waiting = spool_count(data.path());
    eprintln!(
        "spooled and not yet analysed at kill -9: {waiting} of {}",
        sent.len()
    );

    let server = Server::start(data.path(), &config, port);
    let store = SqliteStore::open(&data.path().join("worklist.sqlite")).unwrap();
    wait_for(
        Duration::from_secs(120),
        "every acknowledged film on the worklist",
        || {
            sent.iter()
                .all(|(_, sop, study)| in_worklist(&store, study, sop).is_some())
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "an empty spool", || {
        spool_count(data.path()) == 0
    })
    .await;
    let log = log + &server.kill_9();
    // Logs name spool items and AE titles, never the patient or the image.
    for (path, sop, study) in &sent {
        let obj = dicom_object::open_file(path).unwrap();
        let patient_id =
            cxr_pacs::derived::text(&obj, dicom_dictionary_std::tags::PATIENT_ID).unwrap();
        for secret in [sop, study, &patient_id] {
            assert!(
                !log.contains(secret.as_str()),
                "log carries an identifier `{secret}`"
            );
        }
    }
    assert!(log.contains("DICOM image analysed"), "{log}");
    let _ = store.list(&Default::default());
}

fn outbox(data: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(data.join("pacs/pacs.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT state, attempts FROM outbox ORDER BY id")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_retries_survives_kill_9_and_sends_each_result_once() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let (port, pacs_port) = (free_port(), free_port());
    let config = write_config(films.path(), port, Some(pacs_port));
    let files: Vec<PathBuf> = (0..2)
        .map(|i| film(films.path(), 66, i, OutputSyntax::ExplicitLe, true).0)
        .collect();

    // The destination is down: results wait in the outbox, retried.
    let server = Server::start(data.path(), &config, port);
    store_all(port, &files);
    wait_for(
        Duration::from_secs(120),
        "failed attempts at a closed port",
        || {
            let rows = outbox(data.path());
            rows.len() == 4 && rows.iter().all(|(s, a)| s == "ready" && *a >= 1)
        },
    )
    .await;
    server.kill_9();

    // The destination comes up; after a restart everything is delivered.
    let mut peer = storescp(inbox.path(), pacs_port);
    let server = Server::start(data.path(), &config, port);
    wait_for(
        Duration::from_secs(60),
        "4 results at the destination",
        || received(inbox.path()).len() >= 4,
    )
    .await;
    wait_for(Duration::from_secs(10), "the outbox marked sent", || {
        outbox(data.path()).iter().all(|(s, _)| s == "sent")
    })
    .await;
    // Killed and restarted again: nothing confirmed is sent a second time.
    server.kill_9();
    let server = Server::start(data.path(), &config, port);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = received(inbox.path());
    assert_eq!(got.len(), 4, "{got:?}");
    let mut classes: Vec<String> = got
        .iter()
        .map(|p| {
            let obj = dicom_object::open_file(p).unwrap();
            obj.meta().media_storage_sop_class_uid().to_string()
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            cxr_pacs::uids::SECONDARY_CAPTURE,
            cxr_pacs::uids::SECONDARY_CAPTURE,
            cxr_pacs::uids::COMPREHENSIVE_3D_SR,
            cxr_pacs::uids::COMPREHENSIVE_3D_SR,
        ]
    );
    server.kill_9();
    let _ = peer.kill();
    let _ = peer.wait();
}
