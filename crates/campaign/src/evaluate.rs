//! `cxr-triage evaluate`: a campaign's results against ground truth.
//!
//! Per finding: ROC AUC (the Mann–Whitney statistic, ties counted half)
//! with a percentile bootstrap 95 % confidence interval (resampling images,
//! seeded); sensitivity, specificity, PPV and NPV at each operating point
//! in the results; the threshold that reaches a target sensitivity (default
//! 90 %, WHO's target product profile for a TB triage test, which also asks
//! ≥ 70 % specificity) and its specificity; and the share of images flagged
//! (to watch for drift). Only analysed images with a truth label count;
//! those without one are reported.
//!
//! `--write-operating-points FILE` writes the chosen thresholds as a site
//! file the service and `score` load (`--config FILE`): named operating
//! points added to the models, and selected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::results::read_all_results;

/// Options of `cxr-triage evaluate`.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Results of `cxr-triage score` (`.csv` or `.jsonl`): one file, or a
    /// sharded campaign's files.
    pub results: Vec<PathBuf>,
    /// Ground truth CSV: a `sop_instance_uid` or `file` column, and a 0/1
    /// column per finding (`tuberculosis`, `malignant_nodule`), as `cxr-triage
    /// synth` writes `labels.csv`. Rows match by SOP Instance UID when the
    /// truth has that column; otherwise by path, or by bare file name when
    /// only one result has that name.
    pub truth: PathBuf,
    /// Sensitivity the chosen threshold must reach.
    pub target_sensitivity: f64,
    /// Specificity the chosen threshold should keep (reported as met or not).
    pub min_specificity: f64,
    /// Bootstrap resamples for the AUC's confidence interval.
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Also write the evaluation as JSON here.
    pub json: Option<PathBuf>,
    /// Write the chosen thresholds as a site operating-point file (TOML for
    /// `serve --config` / `score --config`).
    pub write_operating_points: Option<PathBuf>,
    /// Name of the operating point written.
    pub operating_point_name: String,
}

/// Metrics at one threshold or operating point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// The threshold on the calibrated score (for a named operating point,
    /// as the results file recorded it; absent from older files).
    pub threshold: Option<f64>,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
    /// TP / (TP + FN).
    pub sensitivity: f64,
    /// TN / (TN + FP).
    pub specificity: f64,
    /// TP / (TP + FP); NaN when nothing is flagged.
    pub ppv: f64,
    /// TN / (TN + FN); NaN when everything is flagged.
    pub npv: f64,
    /// Share of images flagged.
    pub flagged: f64,
}

impl Confusion {
    /// From verdicts and labels.
    pub fn of(pairs: impl Iterator<Item = (bool, bool)>) -> Confusion {
        let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
        for (flag, truth) in pairs {
            match (flag, truth) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, false) => tn += 1,
                (false, true) => fn_ += 1,
            }
        }
        let ratio = |a: usize, b: usize| {
            if a + b == 0 {
                f64::NAN
            } else {
                a as f64 / (a + b) as f64
            }
        };
        Confusion {
            threshold: None,
            tp,
            fp,
            tn,
            fn_,
            sensitivity: ratio(tp, fn_),
            specificity: ratio(tn, fp),
            ppv: ratio(tp, fp),
            npv: ratio(tn, fn_),
            flagged: ratio(tp + fp, tn + fn_),
        }
    }
}

/// One finding's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct FindingEvaluation {
    /// Analysed images with a label.
    pub images: usize,
    /// Of which positive.
    pub positives: usize,
    /// ROC AUC.
    pub auc: f64,
    /// Bootstrap 95 % interval of the AUC.
    pub auc_ci95: (f64, f64),
    /// At each operating point in the results.
    pub operating_points: BTreeMap<String, Confusion>,
    /// The highest threshold whose sensitivity reaches the target.
    pub threshold_for_target: f64,
    /// Metrics at that threshold.
    pub at_threshold: Confusion,
    /// Whether that threshold also keeps the minimum specificity.
    pub meets_min_specificity: bool,
    /// The ROC curve: (false-positive rate, true-positive rate) per
    /// distinct threshold, from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Rows in the results.
    pub results: usize,
    /// Analysed rows with a truth label.
    pub matched: usize,
    /// Analysed rows without one.
    pub unmatched: usize,
    /// Rows the AI could not read (not in the metrics).
    pub not_analyzed: usize,
    /// Target sensitivity used.
    pub target_sensitivity: f64,
    /// Minimum specificity used.
    pub min_specificity: f64,
    /// Per finding.
    pub findings: BTreeMap<String, FindingEvaluation>,
}

/// ROC AUC: the probability that a positive scores above a negative, ties
/// counted half. NaN without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mid-ranks over tied groups.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += mid;
            }
        }
        i = j + 1;
    }
    let p = labels.iter().filter(|l| **l).count() as f64;
    let n = labels.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    (rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n)
}

fn roc(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let p = labels.iter().filter(|l| **l).count().max(1) as f64;
    let n = (labels.len() - labels.iter().filter(|l| **l).count()).max(1) as f64;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push((fp / n, tp / p));
    }
    out
}

/// The highest threshold t (flag when score ≥ t) with sensitivity ≥ target.
pub fn threshold_for_sensitivity(scores: &[f64], labels: &[bool], target: f64) -> f64 {
    let mut pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() {
        return f64::NAN;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    // Flagging the k highest positives reaches k / P ≥ target.
    let k = ((target * pos.len() as f64) - 1e-9).ceil().max(1.0) as usize;
    pos[k.min(pos.len()) - 1]
}

/// Runs `evaluate`: prints the table, writes what was asked for.
pub fn run(args: &EvaluateOptions) -> anyhow::Result<std::process::ExitCode> {
    let e = evaluate(args)?;
    print_table(&e);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&e)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("evaluation written to {}", path.display());
    }
    if let Some(path) = &args.write_operating_points {
        std::fs::write(path, site_file(&e, &args.operating_point_name, args))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("site operating points written to {}", path.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Truth rows, column → value.
type TruthRows = Vec<BTreeMap<String, String>>;

fn read_truth(path: &Path) -> anyhow::Result<(Vec<String>, TruthRows)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        rows.push(
            header
                .iter()
                .cloned()
                .zip(r.iter().map(|v| v.trim().to_string()))
                .collect(),
        );
    }
    Ok((header, rows))
}

/// Evaluates (see the module docs).
pub fn evaluate(args: &EvaluateOptions) -> anyhow::Result<Evaluation> {
    let results = read_all_results(&args.results)?;
    let (header, truth) = read_truth(&args.truth)?;
    let by_uid = header.iter().any(|h| h == "sop_instance_uid");
    let by_file = header.iter().any(|h| h == "file");
    if !by_uid && !by_file {
        anyhow::bail!(
            "{}: needs a `sop_instance_uid` or a `file` column",
            args.truth.display()
        );
    }
    let mut uid_index: HashMap<String, usize> = HashMap::new();
    let mut file_index: HashMap<String, usize> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        if let Some(u) = t.get("sop_instance_uid").filter(|u| !u.is_empty()) {
            uid_index.insert(u.clone(), i);
        }
        if let Some(f) = t.get("file").filter(|f| !f.is_empty()) {
            file_index.insert(f.clone(), i);
        }
    }
    let file_name = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut name_counts: HashMap<String, usize> = HashMap::new();
    for r in &results {
        *name_counts.entry(file_name(&r.file)).or_default() += 1;
    }
    let mut matched = Vec::new();
    let (mut unmatched, mut not_analyzed) = (0, 0);
    for r in &results {
        if !r.analyzable {
            not_analyzed += 1;
            continue;
        }
        // By UID when the truth has UIDs; else by path, or by bare file
        // name when that names one result only.
        let t = if by_uid {
            uid_index.get(&r.sop_instance_uid)
        } else {
            file_index.get(&r.file).or_else(|| {
                let name = file_name(&r.file);
                (name_counts.get(&name) == Some(&1))
                    .then(|| file_index.get(&name))
                    .flatten()
            })
        };
        match t {
            Some(&i) => matched.push((r, &truth[i])),
            None => unmatched += 1,
        }
    }
    let mut findings = BTreeMap::new();
    let names: Vec<String> = results
        .iter()
        .flat_map(|r| r.scores.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for name in names {
        if !header.contains(&name) {
            continue;
        }
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        let mut rows = Vec::new();
        for (r, t) in &matched {
            let (Some(s), Some(l)) = (r.scores.get(&name), t.get(&name)) else {
                continue;
            };
            let label = match l.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => continue,
            };
            scores.push(f64::from(*s));
            labels.push(label);
            rows.push(*r);
        }
        if scores.is_empty() {
            continue;
        }
        let area = auc(&scores, &labels);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
        let mut boots = Vec::with_capacity(args.bootstrap);
        let (mut bs, mut bl) = (vec![0.0; scores.len()], vec![false; scores.len()]);
        for _ in 0..args.bootstrap {
            for k in 0..scores.len() {
                let j = rng.random_range(0..scores.len());
                bs[k] = scores[j];
                bl[k] = labels[j];
            }
            let a = auc(&bs, &bl);
            if a.is_finite() {
                boots.push(a);
            }
        }
        boots.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if boots.is_empty() {
                f64::NAN
            } else {
                boots[((p * (boots.len() - 1) as f64).round() as usize).min(boots.len() - 1)]
            }
        };
        let mut ops: BTreeMap<String, Confusion> = BTreeMap::new();
        let op_names: std::collections::BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.positive.get(&name))
            .flat_map(|m| m.keys().cloned())
            .collect();
        for op in op_names {
            let mut confusion = Confusion::of(rows.iter().zip(&labels).filter_map(|(r, l)| {
                r.positive
                    .get(&name)
                    .and_then(|m| m.get(&op))
                    .map(|p| (*p, *l))
            }));
            confusion.threshold = rows
                .iter()
                .find_map(|r| r.thresholds.get(&name).and_then(|m| m.get(&op)).copied());
            ops.insert(op.clone(), confusion);
        }
        let t = threshold_for_sensitivity(&scores, &labels, args.target_sensitivity);
        let mut at = Confusion::of(scores.iter().zip(&labels).map(|(s, l)| (*s >= t, *l)));
        at.threshold = Some(t);
        findings.insert(
            name,
            FindingEvaluation {
                images: scores.len(),
                positives: labels.iter().filter(|l| **l).count(),
                auc: area,
                auc_ci95: (q(0.025), q(0.975)),
                operating_points: ops,
                threshold_for_target: t,
                meets_min_specificity: at.specificity >= args.min_specificity,
                at_threshold: at,
                roc: roc(&scores, &labels),
            },
        );
    }
    if findings.is_empty() {
        anyhow::bail!(
            "no finding could be evaluated: {} matched images; truth columns {:?}",
            matched.len(),
            header
        );
    }
    Ok(Evaluation {
        results: results.len(),
        matched: matched.len(),
        unmatched,
        not_analyzed,
        target_sensitivity: args.target_sensitivity,
        min_specificity: args.min_specificity,
        findings,
    })
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "—".into()
    }
}

fn print_table(e: &Evaluation) {
    println!(
        "{} results: {} analysed with truth, {} analysed without truth, {} not analysed",
        e.results, e.matched, e.unmatched, e.not_analyzed
    );
    for (name, f) in &e.findings {
        println!(
            "\n{name}: {} images, {} positive; AUC {:.4} (95% CI {:.4}–{:.4})",
            f.images, f.positives, f.auc, f.auc_ci95.0, f.auc_ci95.1
        );
        println!(
            "  {:<28} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "operating point", "threshold", "sens", "spec", "PPV", "NPV", "flagged"
        );
        for (op, c) in &f.operating_points {
            println!(
                "  {:<28} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                op,
                c.threshold
                    .map_or_else(|| "—".into(), |t| format!("{t:.4}")),
                pct(c.sensitivity),
                pct(c.specificity),
                pct(c.ppv),
                pct(c.npv),
                pct(c.flagged)
            );
        }
        let c = &f.at_threshold;
        println!(
            "  {:<28} {:>10.4} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            format!("sensitivity ≥ {}", pct(e.target_sensitivity)),
            f.threshold_for_target,
            pct(c.sensitivity),
            pct(c.specificity),
            pct(c.ppv),
            pct(c.npv),
            pct(c.flagged),
            if f.meets_min_specificity {
                format!("specificity ≥ {}: met", pct(e.min_specificity))
            } else {
                format!("specificity ≥ {}: NOT met", pct(e.min_specificity))
            }
        );
    }
}

/// The site operating-point file: TOML the service and `score` load.
fn site_file(e: &Evaluation, name: &str, args: &EvaluateOptions) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Site operating points chosen by `cxr-triage evaluate` from {} against {}:\n\
         # the highest threshold reaching {} sensitivity per finding.\n\
         # Load with `cxr-triage serve --config THIS_FILE` (or merge into your configuration).\n",
        super::results::describe_results(&args.results),
        args.truth.display(),
        pct(e.target_sensitivity)
    ));
    for (finding, f) in &e.findings {
        if f.threshold_for_target.is_finite() {
            s.push_str(&format!(
                "# {finding}: sensitivity {}, specificity {}, flagged {} on {} images\n",
                pct(f.at_threshold.sensitivity),
                pct(f.at_threshold.specificity),
                pct(f.at_threshold.flagged),
                f.images
            ));
        }
    }
    s.push_str("\n[engine.operating_points]\n");
    for (finding, f) in &e.findings {
        if f.threshold_for_target.is_finite() {
            s.push_str(&format!("{finding} = \"{name}\"\n"));
        }
    }
    for (finding, f) in &e.findings {
        if f.threshold_for_target.is_finite() {
            // A hair below the chosen score: the results file rounds scores
            // to 6 decimals, the engine compares the unrounded ones.
            s.push_str(&format!(
                "\n[engine.site_operating_points.{finding}]\n{name} = {:.7}\n",
                (f.threshold_for_target - 1e-6).max(0.0)
            ));
        }
    }
    s
}
