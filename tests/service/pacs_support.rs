//! Shared by the PACS tests: free ports, synthetic films as files, dcmtk,
//! a pipeline + DICOM node in-process, waiting, and a loopback Orthanc.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxr_findings::priority::PriorityPolicy;
use cxr_model::{Engine, EngineConfig, ProviderChoice};
use cxr_pacs::{DicomConfig, Pacs};
use cxr_pipeline::{Analyzer, Pipeline};
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, FindingSet, OutputSyntax};
use cxr_triage::config::ServiceConfig;
use cxr_worklist::{SqliteStore, WorklistStore};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The engine configuration of the tests: the bundled reference model, CPU.
pub fn engine_config() -> EngineConfig {
    let mut c = ServiceConfig::default().engine;
    c.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    c.session.provider = ProviderChoice::Cpu;
    c
}

/// A DICOM listener on a free loopback port, accepting the dcmtk tools'
/// default AE titles, no destination, a 1 s study quiet period.
pub fn dicom_config() -> DicomConfig {
    DicomConfig {
        enabled: true,
        ae_title: "CXR_TRIAGE".into(),
        listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        allowed_calling_aes: vec!["ECHOSCU".into(), "STORESCU".into(), "TESTSCU".into()],
        study_quiet_s: 1,
        timeout_s: 10,
        ..DicomConfig::default()
    }
}

/// A synthetic frontal film (TB-positive or not) in `syntax`, written to
/// `dir`; returns its path and SOP Instance and Study Instance UIDs.
pub fn film(
    dir: &Path,
    seed: u64,
    index: u64,
    syntax: OutputSyntax,
    tb: bool,
) -> (PathBuf, String, String) {
    let spec = CaseSpec {
        syntax,
        bits: Some(syntax.max_bits().min(12)),
        positive_rate: if tb { 1.0 } else { 0.0 },
        findings: FindingSet {
            nodule: false,
            tb: true,
        },
        ..CaseSpec::small()
    };
    let case = generate_case(&spec, seed, index).expect("case");
    let bytes = dicom_bytes(&case, syntax).expect("encode");
    let path = dir.join(format!("film-{seed}-{index}-{}.dcm", syntax.name()));
    std::fs::write(&path, bytes).unwrap();
    (
        path,
        case.meta.study.sop_instance_uid.clone(),
        case.meta.study.study_uid.clone(),
    )
}

/// Runs a dcmtk tool; its output.
pub fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (is dcmtk installed? scripts/setup.sh test)"))
}

/// stdout + stderr of an output, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A pipeline over a SQLite worklist in `data`, without an engine yet.
pub fn pipeline(data: &Path) -> (Arc<Pipeline>, Arc<dyn WorklistStore>) {
    let store: Arc<dyn WorklistStore> =
        Arc::new(SqliteStore::open(&data.join("worklist.sqlite")).unwrap());
    let pipeline = Arc::new(Pipeline::new(Arc::clone(&store), 8));
    (pipeline, store)
}

/// Loads the reference model and attaches it (warm-up included).
pub async fn warm(pipeline: &Pipeline) {
    let config = engine_config();
    let engine = tokio::task::spawn_blocking(move || Engine::load(&config))
        .await
        .unwrap()
        .expect("engine");
    pipeline.set_analyzer(Arc::new(Analyzer::new(
        Arc::new(engine),
        PriorityPolicy::default(),
        Default::default(),
    )));
}

/// Starts the DICOM side over `pipeline`.
pub async fn start_pacs(config: &DicomConfig, data: &Path, pipeline: &Arc<Pipeline>) -> Pacs {
    let open = Arc::new(cxr_auth::Authenticator::new(&Default::default()).unwrap());
    Pacs::start(config, data, Arc::clone(pipeline), open)
        .await
        .expect("DICOM start")
        .expect("enabled")
}

/// Polls `check` every 100 ms until it is true or `limit` passes.
pub async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the worklist has a result for `sop` in `study`, and it was analysed.
pub fn in_worklist(store: &dyn WorklistStore, study: &str, sop: &str) -> Option<bool> {
    let (_, images) = store.get_study(study).ok()?;
    images
        .iter()
        .find(|i| i.identity.sop_instance_uid == sop)
        .map(|i| i.analyzable)
}

/// Orthanc (Debian's `orthanc` package) on loopback with a temporary
/// storage and configuration; killed when dropped.
pub struct Orthanc {
    child: Child,
    /// REST port.
    pub http: u16,
    /// DICOM port.
    pub dicom: u16,
    /// Its AE title.
    pub ae: String,
    _dir: tempfile::TempDir,
}

impl Orthanc {
    /// Starts Orthanc knowing one modality, `cxr` = (`ae`, 127.0.0.1, `port`).
    pub fn start(modality_ae: &str, modality_port: u16) -> Orthanc {
        let dir = tempfile::tempdir().unwrap();
        let (http, dicom) = (free_port(), free_port());
        let config = serde_json::json!({
            "Name": "cxr-triage-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http,
            "DicomPort": dicom,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "HttpServerEnabled": true,
            "DicomServerEnabled": true,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowEcho": true,
            "Plugins": [],
            "DicomModalities": { "cxr": [modality_ae, "127.0.0.1", modality_port] },
            "StableAge": 1,
            "SaveJobs": false,
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new(orthanc_binary())
            .arg("--verbose")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Orthanc (Debian package `orthanc`; scripts/setup.sh test installs it)");
        let o = Orthanc {
            child,
            http,
            dicom,
            ae: "ORTHANC".into(),
            _dir: dir,
        };
        let start = Instant::now();
        while o.get("/system").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Orthanc did not start: {}",
                o.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        o
    }

    /// Orthanc's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// GET → body (error on a non-2xx status).
    pub fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        self.request("GET", path, None, "")
    }

    /// GET → JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let body = self.get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_slice(&body).unwrap()
    }

    /// POST → JSON; panics with Orthanc's log on an error.
    pub fn post(&self, path: &str, body: &[u8], content_type: &str) -> serde_json::Value {
        let body = self
            .request("POST", path, Some(body), content_type)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\nOrthanc log:\n{}", self.log()));
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    /// A request to Orthanc's REST API; a non-2xx status is an error.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<Vec<u8>, String> {
        let body = body.unwrap_or(&[]);
        let at = ("127.0.0.1", self.http);
        let (status, payload) = http(at, method, path, content_type, body, None)?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&payload)
            ));
        }
        Ok(payload)
    }
}

/// A plain HTTP/1.1 request (Connection: close): its status and body.
/// `length` overrides the declared Content-Length.
pub fn http(
    at: impl ToSocketAddrs,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    length: Option<u64>,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(at).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        length.unwrap_or(body.len() as u64)
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    let header = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = header
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let mut payload = raw[split + 4..].to_vec();
    if header
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    Ok((status, payload))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

fn orthanc_binary() -> PathBuf {
    for p in ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("Orthanc")
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dcmtk's `storescp` as a destination (AE `STORESCP`) on `port`, writing
/// one file per received object into `dir`.
pub fn storescp(dir: &Path, port: u16) -> Child {
    Command::new("storescp")
        .args(["-aet", "STORESCP", "-uf", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp (dcmtk; scripts/setup.sh test)")
}

/// Files in `dir` (what `storescp` has written), sorted.
pub fn received(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}
