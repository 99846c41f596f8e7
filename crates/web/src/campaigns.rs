//! The campaigns in `[web] campaigns`: each a `score` results file
//! (`NAME.jsonl` / `NAME.csv`) or a folder of shard files (`NAME/`), with
//! `score`'s progress beside each file (`FILE.progress.json`) and,
//! when evaluated, `NAME.evaluation.json` (or `NAME/evaluation.json`).
//! Names are only ever matched against this listing, never joined into a
//! path, so a request cannot reach outside the folder.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use cxr_campaign::report::figures;
use cxr_campaign::results::read_all_results;
use cxr_campaign::score::{progress_path, Progress};

/// One campaign found in the folder.
#[derive(Debug, Clone)]
pub(crate) struct Campaign {
    pub name: String,
    pub files: Vec<PathBuf>,
    pub evaluation: Option<PathBuf>,
}

fn is_results(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_file() && (name.ends_with(".jsonl") || name.ends_with(".csv")) && !name.starts_with('.')
}

fn existing(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// The campaigns in `dir`, by name (none when it does not exist).
pub(crate) fn list(dir: &Path) -> Vec<Campaign> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_results(p))
                .collect();
            files.sort();
            if !files.is_empty() {
                out.push(Campaign {
                    name: file_name.to_string(),
                    files,
                    evaluation: existing(path.join("evaluation.json"))
                        .or_else(|| existing(dir.join(format!("{file_name}.evaluation.json")))),
                });
            }
        } else if is_results(&path) {
            let name = file_name
                .rsplit_once('.')
                .map_or(file_name, |(stem, _)| stem)
                .to_string();
            out.push(Campaign {
                evaluation: existing(dir.join(format!("{name}.evaluation.json"))),
                name,
                files: vec![path],
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The campaign's progress: the sum over its files' progress files.
fn progress(c: &Campaign) -> Value {
    let runs: Vec<Progress> = c
        .files
        .iter()
        .filter_map(|f| std::fs::read(progress_path(f)).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    if runs.is_empty() {
        return Value::Null;
    }
    let sum = |f: fn(&Progress) -> usize| runs.iter().map(f).sum::<usize>();
    json!({
        "runs": runs.len(),
        "files": sum(|p| p.files),
        "resumed": sum(|p| p.resumed),
        "total": sum(|p| p.total),
        "done": sum(|p| p.done),
        "scored": sum(|p| p.scored),
        "failed": sum(|p| p.failed),
        "started_ms": runs.iter().map(|p| p.started_ms).min(),
        "updated_ms": runs.iter().map(|p| p.updated_ms).max(),
        "finished": runs.iter().all(|p| p.finished),
    })
}

/// The listing: name, files and progress of each campaign.
pub(crate) fn summaries(dir: &Path) -> Value {
    let items: Vec<Value> = list(dir)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "files": c.files.len(),
                "evaluated": c.evaluation.is_some(),
                "progress": progress(c),
            })
        })
        .collect();
    json!({ "campaigns": items })
}

/// One campaign's progress and figures (and its evaluation, when there is
/// one); `None` when there is no such campaign.
pub(crate) fn detail(dir: &Path, name: &str) -> Option<Result<Value, String>> {
    let c = list(dir).into_iter().find(|c| c.name == name)?;
    let rows = match read_all_results(&c.files) {
        Ok(rows) => rows,
        Err(e) => return Some(Err(format!("{e:#}"))),
    };
    let evaluation = c
        .evaluation
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    Some(Ok(json!({
        "name": c.name,
        "files": c.files.len(),
        "progress": progress(&c),
        "figures": figures(&rows),
        "evaluation": evaluation,
    })))
}
