//! The service under load: the real `cxr-triage serve` (release build) in
//! its own process on loopback, the bundled reference model, a real SQLite
//! worklist, and tonic clients.
//!
//! 1. Latency and throughput under 1, 4 and 16 concurrent clients sending
//!    distinct synthetic chest films (2000 × 2400, 12-bit, ~9.6 MB each):
//!    end to end as the client sees it, and per stage as the server reports
//!    it (decode, preprocess, queue, inference, store), p50 and p99.
//! 2. Memory: 32 clients each upload a ~20 MB film through `AnalyzeStream`
//!    at the same moment (refused calls retry after the server's hint); the
//!    server's peak resident memory (VmHWM) before and after.
//!
//! `cargo bench --bench service` (`make bench`). Prints a table and writes
//! `target/bench/service.json`. `CXR_BENCH_REQUESTS` sets the requests per
//! concurrency level (default 64); `CXR_BENCH_PROVIDER` the provider (cpu).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax, ViewChoice};
use tonic::transport::Channel;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system, all threads) a process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in the kernel's USER_HZ of 100
/// ticks a second).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // After ')': state is index 0, so utime (field 14) is index 11.
    (ticks(11) + ticks(12)) / 100.0
}

fn film(seed: u64, index: u64, size: (u32, u32)) -> Vec<u8> {
    let spec = CaseSpec {
        view: ViewChoice::Pa,
        size: Some(size),
        bits: Some(12),
        positive_rate: 0.3,
        ..CaseSpec::default()
    };
    let case = generate_case(&spec, seed, index).expect("synthetic film");
    dicom_bytes(&case, OutputSyntax::ExplicitLe).expect("encoding")
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path) -> Server {
    let provider = std::env::var("CXR_BENCH_PROVIDER").unwrap_or_else(|_| "cpu".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
        .args(["serve", "--listen", "127.0.0.1:0", "--provider", &provider])
        .arg("--data-dir")
        .arg(data)
        .arg("--models")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
        .env("CXR_METRICS_LISTEN", "off")
        .env("CXR_WEB_LISTEN", "off")
        .env("CXR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cxr-triage serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("cxr-triage serving gRPC on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap().parse().unwrap());
            } else {
                eprintln!("server: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not start");
    Server { child, addr }
}

async fn wait_serving(ch: Channel) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    loop {
        if let Ok(r) = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
        {
            if r.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One upload, retried while the server says it is full.
async fn send(
    ch: Channel,
    file: bytes::Bytes,
    stream: bool,
    refusals: &AtomicUsize,
) -> pb::AnalyzeResponse {
    let mut client = TriageClient::new(ch)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    loop {
        let result = if stream {
            // Chunks share the film's buffer (as a client holding the file
            // would): the client's own copies are not what is measured.
            let chunks: Vec<pb::AnalyzeChunk> = (0..file.len())
                .step_by(1 << 20)
                .enumerate()
                .map(|(i, at)| pb::AnalyzeChunk {
                    options: (i == 0).then(pb::AnalyzeOptions::default),
                    data: file.slice(at..(at + (1 << 20)).min(file.len())),
                })
                .collect();
            client.analyze_stream(tokio_stream::iter(chunks)).await
        } else {
            client
                .analyze(pb::AnalyzeRequest {
                    dicom: file.clone(),
                    options: None,
                })
                .await
        };
        match result {
            Ok(r) => return r.into_inner(),
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                refusals.fetch_add(1, Ordering::Relaxed);
                let ms = e
                    .metadata()
                    .get("retry-after-ms")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(200u64);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Err(e) => panic!("analysis failed: {e}"),
        }
    }
}

#[derive(Default)]
struct Samples {
    end_to_end: Vec<f64>,
    decode: Vec<f64>,
    preprocess: Vec<f64>,
    queue: Vec<f64>,
    inference: Vec<f64>,
    store: Vec<f64>,
    server_total: Vec<f64>,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let requests: usize = std::env::var("CXR_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 64 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let pid = server.child.id();
    let started = Instant::now();
    eprintln!("making films…");
    let films: Vec<bytes::Bytes> = (0..16).map(|i| film(31, i, (2000, 2400)).into()).collect();
    let big: Vec<bytes::Bytes> = (0..32).map(|i| film(32, i, (2900, 3500)).into()).collect();
    eprintln!(
        "films: {} × {:.1} MB, {} × {:.1} MB ({:.1} s)",
        films.len(),
        films[0].len() as f64 / 1e6,
        big.len(),
        big[0].len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let report = runtime.block_on(async {
        let ch = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        wait_serving(ch.clone()).await;
        let idle_mib = vm_hwm_mib(pid);
        let mut levels = Vec::new();
        for concurrency in [1usize, 4, 16] {
            let samples = Arc::new(Mutex::new(Samples::default()));
            let next = Arc::new(AtomicUsize::new(0));
            let refusals = Arc::new(AtomicUsize::new(0));
            let t0 = Instant::now();
            let (server_cpu0, client_cpu0) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (ch, films, samples, next, refusals) = (
                    ch.clone(),
                    films.clone(),
                    Arc::clone(&samples),
                    Arc::clone(&next),
                    Arc::clone(&refusals),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests {
                            break;
                        }
                        let file = films[i % films.len()].clone();
                        let t = Instant::now();
                        let r = send(ch.clone(), file, false, &refusals).await;
                        let e2e = t.elapsed().as_secs_f64() * 1e3;
                        let timings = r.timings.unwrap_or_default();
                        let mut s = samples.lock().unwrap();
                        s.end_to_end.push(e2e);
                        s.decode.push(timings.decode_ms);
                        s.preprocess.push(timings.preprocess_ms);
                        s.queue.push(timings.queue_ms);
                        s.inference.push(timings.inference_ms);
                        s.store.push(timings.store_ms);
                        s.server_total.push(timings.total_ms);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let seconds = t0.elapsed().as_secs_f64();
            let server_cpu = cpu_seconds(&pid.to_string()) - server_cpu0;
            let client_cpu = cpu_seconds("self") - client_cpu0;
            let mut s = std::mem::take(&mut *samples.lock().unwrap());
            let mut row = serde_json::Map::new();
            row.insert("concurrency".into(), concurrency.into());
            row.insert("requests".into(), requests.into());
            row.insert(
                "images_per_s".into(),
                serde_json::json!(requests as f64 / seconds),
            );
            // Busy share of all the machine's cores over the level, server
            // and clients (which share the cores here) apart.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            row.insert(
                "cpu_utilisation".into(),
                serde_json::json!({
                    "server": server_cpu / (seconds * cores),
                    "clients": client_cpu / (seconds * cores),
                    "server_cpu_ms_per_image": server_cpu * 1e3 / requests as f64,
                    "client_cpu_ms_per_image": client_cpu * 1e3 / requests as f64,
                }),
            );
            row.insert(
                "refused_and_retried".into(),
                refusals.load(Ordering::Relaxed).into(),
            );
            for (name, v) in [
                ("end_to_end", &mut s.end_to_end),
                ("decode", &mut s.decode),
                ("preprocess", &mut s.preprocess),
                ("queue", &mut s.queue),
                ("inference", &mut s.inference),
                ("store", &mut s.store),
                ("server_total", &mut s.server_total),
            ] {
                v.sort_by(f64::total_cmp);
                row.insert(
                    name.into(),
                    serde_json::json!({"p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99)}),
                );
            }
            levels.push(serde_json::Value::Object(row));
        }

        // 32 simultaneous ~20 MB uploads through AnalyzeStream.
        let before_mib = vm_hwm_mib(pid);
        let refusals = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for file in &big {
            let (ch, file, refusals) = (ch.clone(), file.clone(), Arc::clone(&refusals));
            tasks.push(tokio::spawn(async move {
                send(ch, file, true, &refusals).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let uploads = serde_json::json!({
            "uploads": big.len(),
            "mb_each": big[0].len() as f64 / 1e6,
            "seconds": t0.elapsed().as_secs_f64(),
            "refused_and_retried": refusals.load(Ordering::Relaxed),
            "server_peak_rss_mib_before": before_mib,
            "server_peak_rss_mib_after": vm_hwm_mib(pid),
        });
        serde_json::json!({
            "date": chrono_free_date(),
            "provider": std::env::var("CXR_BENCH_PROVIDER").unwrap_or_else(|_| "cpu".into()),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "server_peak_rss_mib_idle": idle_mib,
            "film_mb": films[0].len() as f64 / 1e6,
            "levels": levels,
            "concurrent_large_uploads": uploads,
        })
    });

    println!(
        "\nservice bench: {} requests per level, films {:.1} MB, provider {}",
        requests, report["film_mb"], report["provider"]
    );
    println!(
        "{:>5} {:>8} {:>17} {:>15} {:>15} {:>15} {:>15} {:>15} {:>13} {:>7} {:>13} {:>13}",
        "conc",
        "img/s",
        "e2e p50/p99 ms",
        "server total",
        "decode",
        "preprocess",
        "queue",
        "inference",
        "store",
        "retried",
        "cpu srv/cli",
        "cpu ms/image"
    );
    for l in report["levels"].as_array().unwrap() {
        let pair = |k: &str| {
            format!(
                "{:.1}/{:.1}",
                l[k]["p50_ms"].as_f64().unwrap_or(f64::NAN),
                l[k]["p99_ms"].as_f64().unwrap_or(f64::NAN)
            )
        };
        println!(
            "{:>5} {:>8.1} {:>17} {:>15} {:>15} {:>15} {:>15} {:>15} {:>13} {:>7} {:>13} {:>13}",
            l["concurrency"],
            l["images_per_s"].as_f64().unwrap(),
            pair("end_to_end"),
            pair("server_total"),
            pair("decode"),
            pair("preprocess"),
            pair("queue"),
            pair("inference"),
            pair("store"),
            l["refused_and_retried"],
            format!(
                "{:.0}%/{:.0}%",
                l["cpu_utilisation"]["server"].as_f64().unwrap_or(f64::NAN) * 100.0,
                l["cpu_utilisation"]["clients"].as_f64().unwrap_or(f64::NAN) * 100.0
            ),
            format!(
                "{:.1}/{:.1}",
                l["cpu_utilisation"]["server_cpu_ms_per_image"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                l["cpu_utilisation"]["client_cpu_ms_per_image"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            )
        );
    }
    let u = &report["concurrent_large_uploads"];
    println!(
        "32 concurrent uploads of {:.1} MB: {:.1} s, {} refused and retried; server peak RSS {:.0} MiB idle, {:.0} MiB before, {:.0} MiB after",
        u["mb_each"].as_f64().unwrap(),
        u["seconds"].as_f64().unwrap(),
        u["refused_and_retried"],
        report["server_peak_rss_mib_idle"].as_f64().unwrap(),
        u["server_peak_rss_mib_before"].as_f64().unwrap(),
        u["server_peak_rss_mib_after"].as_f64().unwrap()
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("service.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("written {}", out.join("service.json").display());
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn chrono_free_date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
