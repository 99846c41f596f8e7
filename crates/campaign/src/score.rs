//! `cxr-triage score`: rescoring a screening campaign.
//!
//! Folders are walked (sorted, so runs are repeatable), files are read by a
//! pool of workers (one more than the cores by default) that decode and preprocess in
//! parallel and hand images to the engine's batching thread; results go
//! through a bounded channel to one writer that appends and flushes a row
//! per image. Memory is one image per worker plus the channel, whatever the
//! campaign's size.
//!
//! Nothing is lost: a file that is not DICOM is reported and skipped; an
//! image the AI cannot read gets a row (NOT_ANALYZED, with the reason); a
//! file that cannot be read at all is a failure, listed in the summary and
//! making the exit status 1. A re-run with the same results file skips the
//! images already scored by the same model versions (`--shard` with the
//! same I/N included), so a stopped run resumes.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::results::{csv_header, is_jsonl, read_results, ResultRow, ResultWriter};
use cxr_findings::priority::PriorityAssessment;
use cxr_findings::{overlay, FindingResult, PriorityPolicy};
use cxr_ingest::IngestLimits;
use cxr_model::{Engine, EngineConfig};
use cxr_pipeline::{Analyzer, Outcome, PipelineError};
use cxr_worklist::SqliteStore;

/// What to score and how (the `cxr-triage score` command line builds it).
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// DICOM files and folders to score.
    pub paths: Vec<PathBuf>,
    /// Walk folders recursively (otherwise their top level only).
    pub recursive: bool,
    /// Results file: `.csv`, or `.jsonl` for JSON Lines. An existing one is
    /// resumed: images already in it, scored by the same model versions, are
    /// skipped.
    pub out: PathBuf,
    /// Also file every result in this worklist database (the service's
    /// SQLite store, e.g. `data/worklist.sqlite`).
    pub db: Option<PathBuf>,
    /// Score only this shard, chosen by a hash of the SOP Instance UID.
    pub shard: Option<Shard>,
    /// Models, provider, batching, operating points.
    pub engine: EngineConfig,
    /// Which operating points make CRITICAL and URGENT.
    pub priority: PriorityPolicy,
    /// JPEG 2000 at a reduced resolution level (`[decode] jpeg2000_reduce`).
    pub jpeg2000_reduce: cxr_pipeline::jpeg2000::Jpeg2000Reduce,
    /// Decode/preprocess workers (default: one more than the cores).
    pub workers: Option<usize>,
    /// Write a heatmap overlay PNG per analysed image and finding here
    /// (`SOP_FINDING.png`).
    pub heatmaps: Option<PathBuf>,
    /// No progress on stderr.
    pub quiet: bool,
}

/// `I/N`: this process scores the images whose SOP Instance UID hashes to I
/// modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 0-based.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: I is not a number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("`{s}`: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether `key` (a SOP Instance UID, or a path for files without one)
    /// belongs to this shard: FNV-1a 64 of its bytes, modulo N. Stable across
    /// machines, platforms and versions.
    pub fn owns(&self, key: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.trim_end_matches('\0').trim().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % self.count == self.index
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScoreSummary {
    /// Files found by the walk.
    pub files: usize,
    /// Rows written by this run.
    pub scored: usize,
    /// Skipped: already in the results file with the same model versions.
    pub resumed: usize,
    /// Skipped: another shard's.
    pub other_shard: usize,
    /// Skipped: not DICOM (path, why).
    pub not_dicom: Vec<(String, String)>,
    /// Failed: could not be read or scored (path, error).
    pub failed: Vec<(String, String)>,
    /// Rows by priority.
    pub by_priority: BTreeMap<String, usize>,
    /// Not-analysed rows by reason code.
    pub by_reason: BTreeMap<String, usize>,
    /// Wall time, s.
    pub seconds: f64,
}

enum Message {
    Row(Box<ResultRow>),
    NotDicom(String, String),
    Failed(String, String),
    OtherShard,
}

/// Scores a campaign (see the module docs) and prints the summary.
pub fn score(args: &ScoreOptions) -> anyhow::Result<ScoreSummary> {
    let started = Instant::now();
    let mut summary = ScoreSummary::default();
    let mut files = Vec::new();
    for p in &args.paths {
        walk(p, args.recursive, true, &mut files, &mut summary.failed);
    }
    files.sort();
    files.dedup();
    summary.files = files.len();

    let engine = Arc::new(Engine::load(&args.engine).context("loading the models")?);
    let models: Vec<String> = engine
        .models()
        .map(|m| format!("{} {}", m.id, m.version))
        .collect();
    let models = models.join(";");
    let mut finding_ops: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in engine.models() {
        for (k, ops) in &m.thresholds {
            finding_ops.insert(k.to_string(), ops.keys().cloned().collect());
        }
    }

    // Resume: keep the rows of the same model versions, drop the rest.
    let jsonl = is_jsonl(&args.out);
    let header = csv_header(&finding_ops);
    let mut done: HashSet<String> = HashSet::new();
    if args.out.exists() && std::fs::metadata(&args.out)?.len() > 0 {
        let rows = read_results(&args.out)
            .with_context(|| format!("resuming from {}", args.out.display()))?;
        let kept: Vec<ResultRow> = rows.into_iter().filter(|r| r.models == models).collect();
        let tmp = args.out.with_extension("resume-tmp");
        {
            let file = std::fs::File::create(&tmp)?;
            let mut w = ResultWriter::new(
                Box::new(std::io::BufWriter::new(file)),
                jsonl,
                header.clone(),
                true,
            )?;
            for r in &kept {
                w.write(r)?;
            }
        }
        std::fs::rename(&tmp, &args.out)?;
        done.extend(kept.into_iter().map(|r| r.file));
    }
    let write_header = !args.out.exists() || std::fs::metadata(&args.out)?.len() == 0;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .with_context(|| format!("opening {}", args.out.display()))?;
    let mut writer = ResultWriter::new(Box::new(out), jsonl, header, write_header)?;

    let todo: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let skip = done.contains(&f.display().to_string());
            if skip {
                summary.resumed += 1;
            }
            !skip
        })
        .collect();
    if let Some(dir) = &args.heatmaps {
        std::fs::create_dir_all(dir)?;
    }

    // The worklist, when asked for: results go through the service's own
    // pipeline (previews, heatmaps and all) into its store.
    let workers = args
        .workers
        // One more than the cores: while one worker waits for its batch's
        // inference, the others keep every core decoding (measured: 2
        // workers on 2 cores kept 1.5 busy, 3 kept 1.75).
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 1)
        .max(1);
    let db = match &args.db {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).ok();
            }
            Some(SqliteStore::open(path)?)
        }
        None => None,
    };
    let analyzer = Analyzer::new(
        Arc::clone(&engine),
        args.priority.clone(),
        IngestLimits::default(),
    )
    .reducing_jpeg2000(args.jpeg2000_reduce);

    let progress_file = ProgressFile {
        path: progress_path(&args.out),
        started_ms: now_ms(),
        shard: args.shard.map(|s| format!("{}/{}", s.index, s.count)),
    };
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let total = todo.len();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Message>(64);
    let progress = !args.quiet;
    let tty = std::io::stderr().is_terminal();
    let models_ref = &models;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (todo, next, analyzer, db) = (&todo, &next, &analyzer, &db);
            let (shard, heatmaps) = (args.shard, args.heatmaps.as_deref());
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = todo.get(i) else { break };
                let message = score_one(path, analyzer, shard, db.as_ref(), models_ref, heatmaps);
                if tx.send(message).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut last = Instant::now();
        let mut last_line = Instant::now();
        let mut last_file = Instant::now();
        progress_file.write(&summary, 0, total, false);
        loop {
            let message = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => Some(m),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if let Some(message) = message {
                finished.fetch_add(1, Ordering::Relaxed);
                match message {
                    Message::Row(row) => {
                        writer
                            .write(&row)
                            .with_context(|| format!("writing {}", args.out.display()))?;
                        summary.scored += 1;
                        *summary.by_priority.entry(row.priority.clone()).or_default() += 1;
                        if !row.analyzable {
                            *summary
                                .by_reason
                                .entry(row.reason_code.clone())
                                .or_default() += 1;
                        }
                    }
                    Message::NotDicom(p, why) => summary.not_dicom.push((p, why)),
                    Message::Failed(p, e) => summary.failed.push((p, e)),
                    Message::OtherShard => summary.other_shard += 1,
                }
            }
            if last_file.elapsed() >= Duration::from_secs(1) {
                last_file = Instant::now();
                progress_file.write(&summary, finished.load(Ordering::Relaxed), total, false);
            }
            if progress {
                let n = finished.load(Ordering::Relaxed);
                let elapsed = started.elapsed().as_secs_f64();
                let every = if tty { 0.5 } else { 10.0 };
                if last.elapsed().as_secs_f64() >= every || (tty && n == total) {
                    last = Instant::now();
                    let rate = n as f64 / elapsed.max(1e-9);
                    let eta = (total - n) as f64 / rate.max(1e-9);
                    let line = format!(
                        "{n}/{total} images ({:.0} %), {rate:.1} images/s, ETA {}",
                        100.0 * n as f64 / total.max(1) as f64,
                        clock(eta)
                    );
                    if tty {
                        let filled = (30 * n / total.max(1)).min(30);
                        let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled));
                        eprint!("\r{bar} {line}   ");
                    } else if last_line.elapsed().as_secs_f64() >= every {
                        eprintln!("score: {line}");
                        last_line = Instant::now();
                    }
                }
            }
        }
        if progress && tty {
            eprintln!();
        }
        Ok(())
    })?;
    summary.seconds = started.elapsed().as_secs_f64();
    progress_file.write(&summary, finished.load(Ordering::Relaxed), total, true);
    print_summary(&summary, &args.out);
    Ok(summary)
}

/// Where `score` keeps a running campaign's progress: beside its results,
/// `OUT.progress.json` (rewritten every second; the web worklist's campaign
/// page reads it).
pub fn progress_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".progress.json");
    out.with_file_name(name)
}

/// A campaign run's progress, as written to [`progress_path`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Files the walk found.
    pub files: usize,
    /// Skipped: already scored by an earlier run.
    pub resumed: usize,
    /// To go through in this run.
    pub total: usize,
    /// Gone through so far in this run.
    pub done: usize,
    /// Rows written by this run.
    pub scored: usize,
    /// Files that could not be read or scored, or were not DICOM.
    pub failed: usize,
    /// `I/N` when sharded.
    pub shard: Option<String>,
    /// When the run started, ms since the epoch.
    pub started_ms: i64,
    /// When this was written.
    pub updated_ms: i64,
    /// Whether the run has ended.
    pub finished: bool,
}

struct ProgressFile {
    path: PathBuf,
    started_ms: i64,
    shard: Option<String>,
}

impl ProgressFile {
    /// Writes the progress (atomically: a reader never sees half); a
    /// failure is logged, not fatal: the results are what matter.
    fn write(&self, summary: &ScoreSummary, done: usize, total: usize, finished: bool) {
        let p = Progress {
            files: summary.files,
            resumed: summary.resumed,
            total,
            done,
            scored: summary.scored,
            failed: summary.failed.len() + summary.not_dicom.len(),
            shard: self.shard.clone(),
            started_ms: self.started_ms,
            updated_ms: now_ms(),
            finished,
        };
        let tmp = self.path.with_extension("tmp");
        let result = serde_json::to_vec(&p)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(error = %e, path = %self.path.display(), "score: progress not written");
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn print_summary(s: &ScoreSummary, out: &Path) {
    eprintln!(
        "scored {} images in {:.1} s ({:.1} images/s) → {}",
        s.scored,
        s.seconds,
        s.scored as f64 / s.seconds.max(1e-9),
        out.display()
    );
    eprintln!(
        "files: {} found, {} already scored (resumed), {} in other shards, {} not DICOM, {} failed",
        s.files,
        s.resumed,
        s.other_shard,
        s.not_dicom.len(),
        s.failed.len()
    );
    for (p, n) in &s.by_priority {
        eprintln!("  {p:<13} {n}");
    }
    for (r, n) in &s.by_reason {
        eprintln!("  not analysed, {r}: {n}");
    }
    for (p, why) in &s.not_dicom {
        eprintln!("skipped (not DICOM): {p}: {why}");
    }
    for (p, e) in &s.failed {
        eprintln!("FAILED: {p}: {e}");
    }
}

/// Collects files under `path`; unreadable folders are failures.
fn walk(
    path: &Path,
    recursive: bool,
    top: bool,
    files: &mut Vec<PathBuf>,
    failed: &mut Vec<(String, String)>,
) {
    if path.is_dir() {
        if !top && !recursive {
            return;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut entries: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for e in entries {
                    walk(&e, recursive, false, files, failed);
                }
            }
            Err(e) => failed.push((path.display().to_string(), e.to_string())),
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else if top {
        failed.push((path.display().to_string(), "no such file or folder".into()));
    }
}

/// A file's bytes: memory-mapped (read from the page cache in place, no
/// copy into the process), or read when it cannot be mapped.
enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl FileBytes {
    fn open(path: &Path) -> std::io::Result<FileBytes> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Read(Vec::new()));
        }
        // SAFETY: a campaign's files are inputs nobody rewrites while they
        // are scored; were one truncated meanwhile, the process could get
        // SIGBUS, which is why the service itself reads its spool instead.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => Ok(FileBytes::Mapped(map)),
            Err(_) => std::fs::read(path).map(FileBytes::Read),
        }
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

/// One file through the shared analysis path, into a row (and the
/// worklist, when asked).
fn score_one(
    path: &Path,
    analyzer: &Analyzer,
    shard: Option<Shard>,
    db: Option<&SqliteStore>,
    models: &str,
    heatmaps: Option<&Path>,
) -> Message {
    let name = path.display().to_string();
    let bytes = match FileBytes::open(path) {
        Ok(b) => b,
        Err(e) => return Message::Failed(name, e.to_string()),
    };
    if let Some(s) = shard {
        // The shard is chosen by SOP Instance UID, read from the header
        // alone so that other shards' films cost no decoding.
        let key = cxr_ingest::read_identity(&bytes, analyzer.limits())
            .map_or_else(|| name.clone(), |m| m.sop_instance_uid);
        if !s.owns(&key) {
            return Message::OtherShard;
        }
    }
    let with_preview = db.is_some() || heatmaps.is_some();
    let mut outcome = match analyzer.analyze_blocking(&bytes, with_preview) {
        Ok(o) => o,
        Err(PipelineError::NotDicom(why)) => {
            let magic = bytes.len() >= 132 && &bytes[128..132] == b"DICM";
            return if magic {
                Message::Failed(
                    name,
                    format!("a DICOM file whose header cannot be read: {why}"),
                )
            } else {
                Message::NotDicom(
                    name,
                    "not a DICOM file (no DICM preamble, no readable dataset)".into(),
                )
            };
        }
        // The queue is sized for the workers; should it be full, this image
        // is a failure, never dropped.
        Err(e) => return Message::Failed(name, e.to_string()),
    };
    drop(bytes);
    if let Some(store) = db {
        if let Err(e) =
            cxr_pipeline::file(store, &mut outcome, &cxr_pipeline::Source::named("score"))
        {
            return Message::Failed(name, e.to_string());
        }
    }
    write_heatmaps(
        heatmaps,
        &outcome.identity.sop_instance_uid,
        &outcome.findings,
        outcome.preview.as_ref().map(|p| &p.0),
    );
    Message::Row(Box::new(row_of_outcome(&name, &outcome, models)))
}

fn providers<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.dedup();
    v.join(";")
}

fn fill(row: &mut ResultRow, findings: &[FindingResult], assessment: &PriorityAssessment) {
    row.analyzable = true;
    row.priority = assessment.priority.as_str().into();
    for f in findings {
        let k = f.finding.to_string();
        row.scores.insert(k.clone(), f.score);
        row.raw_scores.insert(k.clone(), f.raw_score);
        row.positive.insert(
            k.clone(),
            f.operating_points
                .iter()
                .map(|op| (op.name.clone(), op.positive))
                .collect(),
        );
        row.thresholds.insert(
            k,
            f.operating_points
                .iter()
                .map(|op| (op.name.clone(), op.threshold))
                .collect(),
        );
    }
}

fn row_of_outcome(file: &str, o: &Outcome, models: &str) -> ResultRow {
    let mut row = ResultRow {
        file: file.to_string(),
        sop_instance_uid: o.identity.sop_instance_uid.clone(),
        study_instance_uid: o.identity.study_instance_uid.clone(),
        series_instance_uid: o.identity.series_instance_uid.clone(),
        accession_number: o.identity.accession_number.clone(),
        analyzable: false,
        reason_code: String::new(),
        reason: String::new(),
        priority: o.image_priority.priority.as_str().into(),
        scores: BTreeMap::new(),
        raw_scores: BTreeMap::new(),
        positive: BTreeMap::new(),
        thresholds: BTreeMap::new(),
        models: models.to_string(),
        provider: providers(o.provenance.iter().map(|p| p.provider.as_str())),
        decode_ms: o.timings.decode_ms,
        preprocess_ms: o.timings.engine.preprocess_ms,
        queue_ms: o.timings.engine.queue_ms,
        inference_ms: o.timings.engine.inference_ms,
        total_ms: o.timings.total_ms,
    };
    match &o.reason {
        None => fill(&mut row, &o.findings, &o.image_priority),
        Some(reason) => {
            row.reason_code = reason.code().into();
            row.reason = reason.to_string();
        }
    }
    row
}

fn write_heatmaps(
    dir: Option<&Path>,
    sop: &str,
    findings: &[FindingResult],
    preview: Option<&overlay::Preview>,
) {
    let (Some(dir), Some(preview)) = (dir, preview) else {
        return;
    };
    let safe: String = sop
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for f in findings {
        if let Some(h) = &f.heatmap {
            let (png, _, _) = overlay::overlay_png(preview, h, 1024);
            let path = dir.join(format!("{safe}_{}.png", f.finding));
            if let Err(e) = std::fs::write(&path, png) {
                tracing::warn!(file = %path.display(), error = %e, "heatmap not written");
            }
        }
    }
}
