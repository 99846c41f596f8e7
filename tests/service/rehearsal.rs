//! The scaled deployment rehearsed on one machine: a PostgreSQL worklist
//! (a throwaway PostgreSQL 15), two `cxr-triage serve` replicas sharing it,
//! and nginx balancing gRPC between them (`grpc_pass`), as a Kubernetes
//! Service or a hospital's load balancer would. 500 films go through the
//! balancer while one replica is killed with SIGKILL and started again:
//! every acknowledged film is on the worklist exactly once, and a watcher
//! on the surviving replica sees every film stored, the killed replica's
//! included (LISTEN/NOTIFY). Then films arrive by STOW-RS through the
//! balancer and their results go back to PACS (dcmtk's `storescp`) from
//! the outbox the replicas share: each exactly once, and with PACS hung
//! and one replica killed mid-batch, the other sends what was waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_worklist::testing::ThrowawayPostgres;
use tonic::transport::Channel;

use crate::pacs_support::{http, received, storescp};
use crate::service_process::{
    film, free_port, metric, plain_channel, scrape, wait_serving, Server,
};

const FILMS: usize = 500;
/// Films acknowledged before one replica is killed.
const KILL_AFTER: usize = 150;
/// Films sent by STOW-RS afterwards.
const STOW_FILMS: usize = 40;
const STOW_TYPE: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";

fn multipart(part: &[u8]) -> Vec<u8> {
    let mut b = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    b.extend_from_slice(part);
    b.extend_from_slice(b"\r\n--XyZ--\r\n");
    b
}

/// nginx in the foreground with `conf`, everything under `dir`.
struct Nginx(Child);

impl Nginx {
    /// gRPC on `listen` to `upstreams`, HTTP/1.1 (STOW-RS) on
    /// `stow_listen` to `stow_upstreams`.
    fn start(
        dir: &Path,
        (listen, upstreams): (u16, &[u16]),
        (stow_listen, stow_upstreams): (u16, &[u16]),
    ) -> Nginx {
        let servers = |ports: &[u16]| -> String {
            ports
                .iter()
                .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
                .collect()
        };
        let (stow_servers, servers) = (servers(stow_upstreams), servers(upstreams));
        // As root, nginx's workers would switch to `nobody`, who cannot
        // use the private temporary directories.
        let user = if is_root() { "user root root;\n" } else { "" };
        let d = dir.display();
        let conf = format!(
            "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               client_max_body_size 64m;\n  client_body_buffer_size 1m;\n\
               upstream cxr {{\n{servers}  }}\n\
               server {{\n    listen 127.0.0.1:{listen} http2;\n    location / {{\n\
                   grpc_pass grpc://cxr;\n      grpc_read_timeout 300s;\n      grpc_send_timeout 300s;\n\
                   grpc_next_upstream error timeout;\n    }}\n  }}\n\
               upstream stow {{\n{stow_servers}  }}\n\
               server {{\n    listen 127.0.0.1:{stow_listen};\n    location / {{\n\
                   proxy_pass http://stow;\n      proxy_http_version 1.1;\n\
                   proxy_request_buffering on;\n    }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian's nginx package; scripts/setup.sh test)");
        Nginx(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's master takes its worker with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every study on the worklist (open ones: none is read here), page by
/// page, with the number of times each was listed.
async fn every_study(ch: Channel) -> BTreeMap<String, (usize, u32)> {
    let mut client = TriageClient::new(ch);
    let mut seen: BTreeMap<String, (usize, u32)> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_worklist(pb::ListWorklistRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for s in &page.studies {
            let e = seen.entry(s.study_instance_uid.clone()).or_default();
            e.0 += 1;
            e.1 = s.image_count;
        }
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_behind_nginx_on_postgresql_survive_a_kill_9() {
    let db = ThrowawayPostgres::shared().create_database();
    let env = [
        ("CXR_WORKLIST_URL", db.clone()),
        ("CXR_WORKLIST_CONNECTIONS", "4".to_string()),
        ("CXR_LOG", "info".to_string()),
    ];
    // PACS, where results go back to.
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs_port = free_port();
    let mut pacs = storescp(pacs_dir.path(), pacs_port);

    // Each replica: its own data directory (spool and outbox), DICOM and
    // STOW-RS listeners, metrics; the same PACS destination.
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let (stow_a, stow_b) = (free_port(), free_port());
    let (metrics_a, metrics_b) = (free_port(), free_port());
    let config = |data: &Path, stow: u16| {
        let path = data.join("cxr.toml");
        std::fs::write(
            &path,
            format!(
                "[dicom]\nenabled = true\nae_title = \"CXR_TRIAGE\"\nlisten = \"127.0.0.1:{}\"\n\
                 stow_listen = \"127.0.0.1:{stow}\"\nstudy_quiet_s = 1\nsend_sc = false\n\
                 destination = {{ ae_title = \"STORESCP\", host = \"127.0.0.1\", port = {pacs_port} }}\n\
                 timeout_s = 10\n[dicom.retry]\ninitial_s = 1\nmax_s = 2\n",
                free_port()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let (config_a, config_b) = (config(data_a.path(), stow_a), config(data_b.path(), stow_b));
    let with_metrics = |port: u16| {
        let mut env = env.to_vec();
        env.push(("CXR_METRICS_LISTEN", format!("127.0.0.1:{port}")));
        env
    };
    let (env_a, env_b) = (with_metrics(metrics_a), with_metrics(metrics_b));
    let listen = |p: u16| format!("127.0.0.1:{p}");
    let replica_a = Server::start_on(
        &listen(port_a),
        data_a.path(),
        &["--config", &config_a],
        &env_a,
    );
    let mut replica_b = Some(Server::start_on(
        &listen(port_b),
        data_b.path(),
        &["--config", &config_b],
        &env_b,
    ));
    let ch_a = plain_channel(replica_a.addr).await;
    wait_serving(ch_a.clone()).await;
    wait_serving(plain_channel(SocketAddr::from(([127, 0, 0, 1], port_b))).await).await;
    assert!(
        replica_a
            .log()
            .contains("following commits of other replicas"),
        "{}",
        replica_a.log()
    );

    let nginx_dir = tempfile::tempdir().unwrap();
    let (lb_port, lb_stow) = (free_port(), free_port());
    let _nginx = Nginx::start(
        nginx_dir.path(),
        (lb_port, &[port_a, port_b]),
        (lb_stow, &[stow_a, stow_b]),
    );
    wait_port(lb_port).await;
    wait_port(lb_stow).await;
    let lb = Channel::from_shared(format!("http://127.0.0.1:{lb_port}"))
        .unwrap()
        .connect_lazy();

    // A watcher on the replica that stays up, from before the first film.
    let watched: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watcher = {
        let watched = Arc::clone(&watched);
        let mut client = TriageClient::new(ch_a.clone());
        let mut stream = client
            .watch_worklist(pb::WatchWorklistRequest { after_sequence: 0 })
            .await
            .unwrap()
            .into_inner();
        tokio::spawn(async move {
            let mut last = 0;
            while let Ok(Some(event)) = stream.message().await {
                assert!(event.sequence > last, "events arrive in order");
                last = event.sequence;
                if event.kind == pb::worklist_event::Kind::ImageStored as i32 {
                    watched.lock().unwrap().insert(event.sop_instance_uid);
                }
            }
        })
    };

    // 500 films, 8 senders through the balancer; a film whose call fails
    // (its replica died under it) is sent again, as a PACS router or the
    // client library would.
    let films: Vec<(String, Vec<u8>)> = (0..FILMS as u64)
        .map(|i| {
            let (bytes, case) = film(100_000 + i, i % 10 == 0);
            (case.meta.study.sop_instance_uid.clone(), bytes)
        })
        .collect();
    let sent_uids: BTreeSet<String> = films.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(sent_uids.len(), FILMS);
    let queue = Arc::new(Mutex::new(films));
    let acknowledged: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let retries = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (queue, lb, acknowledged, retries) = (
            Arc::clone(&queue),
            lb.clone(),
            Arc::clone(&acknowledged),
            Arc::clone(&retries),
        );
        senders.push(tokio::spawn(async move {
            let mut client = TriageClient::new(lb).max_decoding_message_size(64 << 20);
            loop {
                let Some((uid, dicom)) = queue.lock().unwrap().pop() else {
                    return;
                };
                let mut tries = 0;
                loop {
                    let r = client
                        .analyze(pb::AnalyzeRequest {
                            dicom: dicom.clone().into(),
                            options: None,
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            let got = r.into_inner().identity.unwrap().sop_instance_uid;
                            assert_eq!(got, uid);
                            acknowledged.lock().unwrap().insert(uid);
                            break;
                        }
                        Err(status) => {
                            tries += 1;
                            retries.fetch_add(1, Ordering::SeqCst);
                            assert!(tries < 40, "{uid} refused 40 times, last: {status:?}");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            }
        }));
    }

    // Kill one replica once 150 films are acknowledged, with others in
    // flight on it; start it again on the same port a few seconds later.
    let deadline = Instant::now() + Duration::from_secs(600);
    while acknowledged.lock().unwrap().len() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "films are not being acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica_b.take().unwrap().kill_9();
    let killed_at = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replica_b = Server::start_on(
        &listen(port_b),
        data_b.path(),
        &["--config", &config_b],
        &env_b,
    );
    for s in senders {
        s.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acknowledged, sent_uids,
        "every film was acknowledged in the end"
    );
    assert!(
        killed_at < FILMS,
        "the kill happened while films were being sent"
    );

    // Every film is on the shared worklist exactly once, read through the
    // balancer (either replica answers the same).
    let studies = every_study(lb.clone()).await;
    assert_eq!(studies.len(), FILMS, "one study per film");
    for (uid, (listed, images)) in &studies {
        assert_eq!(*listed, 1, "{uid} listed {listed} times");
        assert_eq!(*images, 1, "{uid} holds {images} images");
    }
    let b_alone = every_study(plain_channel(replica_b.addr).await).await;
    assert_eq!(b_alone.len(), FILMS, "the restarted replica sees it all");

    // The watcher on the surviving replica saw every film stored, the ones
    // the other replica stored included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<String> = sent_uids
            .difference(&watched.lock().unwrap())
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher on the surviving replica missed {} films, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "rehearsal: {FILMS} films, replica killed after {killed_at} acknowledgements, {} calls retried",
        retries.load(Ordering::SeqCst)
    );
    wait_serving(plain_channel(replica_b.addr).await).await;

    // With the surviving replica idle, a film stored by the other one
    // reaches its watcher at once (its NOTIFY, not a later commit of its
    // own, wakes it).
    let (dicom, case) = film(300_000, true);
    let uid = case.meta.study.sop_instance_uid.clone();
    let started = Instant::now();
    TriageClient::new(plain_channel(replica_b.addr).await)
        .analyze(pb::AnalyzeRequest {
            dicom: dicom.into(),
            options: None,
        })
        .await
        .unwrap();
    while !watched.lock().unwrap().contains(&uid) {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a commit on one replica did not reach the other's watcher"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Films by STOW-RS through the balancer. Their results go back to PACS
    // from the outbox the replicas share (in PostgreSQL): each once.
    post_films(lb_stow, 200_000, STOW_FILMS);
    wait_received(pacs_dir.path(), STOW_FILMS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = |port: u16| {
        metric(
            &scrape(port),
            "cxr_dicom_results_sent_total",
            &["kind=\"sr\""],
        )
        .unwrap_or(0.0)
    };
    let (sent_a, sent_b) = (sent(metrics_a), sent(metrics_b));
    assert_eq!(
        sent_a + sent_b,
        STOW_FILMS as f64,
        "each result sent once ({sent_a} + {sent_b})"
    );

    // PACS hangs: it takes connections and never answers (a listener that
    // never accepts; each association attempt waits out the 10 s timeout).
    // More films arrive, through both replicas, and their results wait.
    // One replica is killed in the middle of an attempt, holding a batch's
    // lease: when PACS is back, the other sends everything, the killed
    // replica's batch once its lease (30 s, no longer renewed) runs out.
    let _ = pacs.kill();
    let _ = pacs.wait();
    let hung_pacs = std::net::TcpListener::bind(("127.0.0.1", pacs_port)).unwrap();
    post_films(lb_stow, 400_000, STOW_FILMS / 2);
    let owner_b = format!("%:{}", data_b.path().join("pacs").display());
    // Each round of attempts (10 s) goes to whichever sender asks first:
    // B holds a lease within a few rounds.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready = metric(
            &scrape(metrics_a),
            "cxr_dicom_outbox_objects",
            &["state=\"ready\""],
        );
        let leased_by_b = cxr_worklist::testing::query_text(
            &db,
            &format!(
                "SELECT count(*) FROM pacs_outbox WHERE state = 'ready' \
                 AND lease_owner LIKE '{owner_b}'"
            ),
        )
        .unwrap();
        if ready == Some((STOW_FILMS / 2) as f64) && leased_by_b != ["0"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "results waiting: {ready:?}, leased by B: {leased_by_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    replica_b.kill_9();
    drop(hung_pacs);
    let mut pacs = storescp(pacs_dir.path(), pacs_port);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30 + 150);
    while received(pacs_dir.path()).len() < STOW_FILMS + STOW_FILMS / 2 {
        if Instant::now() >= deadline {
            let rows = cxr_worklist::testing::query_text(
                &db,
                "SELECT id, study_uid, state, attempts, next_attempt_ms, lease_owner, \
                 lease_until, (extract(epoch from now()) * 1000)::bigint AS now_ms, last_error \
                 FROM pacs_outbox WHERE state <> 'sent' ORDER BY id",
            );
            let log: Vec<String> = replica_a
                .log()
                .lines()
                .filter(|l| l.contains("result") || l.contains("outbox"))
                .map(str::to_string)
                .collect();
            panic!(
                "PACS has {} of {} results {:?} after the kill; unsent rows:\n{:#?}\n\
                 the surviving replica's log of results (last 40):\n{}",
                received(pacs_dir.path()).len(),
                STOW_FILMS + STOW_FILMS / 2,
                killed.elapsed(),
                rows,
                log[log.len().saturating_sub(40)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "rehearsal: PACS had every result {:?} after the kill",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sent(metrics_a),
        sent_a + (STOW_FILMS / 2) as f64,
        "the surviving replica sent every waiting result, once"
    );
    assert_eq!(received(pacs_dir.path()).len(), STOW_FILMS + STOW_FILMS / 2);

    let studies = every_study(lb.clone()).await;
    assert_eq!(studies.len(), FILMS + 1 + STOW_FILMS + STOW_FILMS / 2);
    let _ = pacs.kill();
    let _ = pacs.wait();
    watcher.abort();
    replica_a.terminate();
}

/// `n` synthetic films (from `first`), each its own study, posted by
/// STOW-RS to `port` from four threads; every post must be accepted.
fn post_films(port: u16, first: u64, n: usize) {
    let films: Vec<(String, Vec<u8>)> = (first..first + n as u64)
        .map(|i| {
            let (bytes, case) = film(i, i % 5 == 0);
            (case.meta.study.sop_instance_uid.clone(), bytes)
        })
        .collect();
    let posts: Vec<_> = films
        .chunks(n.div_ceil(4))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                for (uid, dicom) in chunk {
                    let (status, reply) = http(
                        ("127.0.0.1", port),
                        "POST",
                        "/studies",
                        STOW_TYPE,
                        &multipart(&dicom),
                        None,
                    )
                    .expect("STOW-RS through nginx answers");
                    assert_eq!(status, 200, "{uid}: {}", String::from_utf8_lossy(&reply));
                }
            })
        })
        .collect();
    for p in posts {
        p.join().unwrap();
    }
}

/// Waits until PACS has `n` results, at most 180 s.
async fn wait_received(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while received(dir).len() < n {
        assert!(
            Instant::now() < deadline,
            "PACS has {} of {n} results",
            received(dir).len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
