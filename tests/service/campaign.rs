//! Screening campaigns through the real binary: the `cxr-synth` library makes a
//! campaign with known truth, `cxr-triage score` scores it with the bundled
//! reference model on ONNX Runtime (CPU), `cxr-triage evaluate` measures it.
//! A bad file in the middle, non-DICOM files, resuming after a run is cut
//! short, sharding, the evaluation against hand-computed figures, the site
//! operating-point file loading into the engine, the worklist database, and
//! a 1,000-image campaign in bounded memory.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cxr_campaign::evaluate::{auc, threshold_for_sensitivity};
use cxr_campaign::read_results;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxr-triage"));
    c.env("CXR_LOG", "error");
    c
}

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running cxr-triage");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `count` small synthetic films in `dir` (with labels.csv), as
/// `cxr-synth --small --nodule-contrast 3` makes them.
fn campaign(dir: &Path, count: usize, seed: u64) {
    let spec = cxr_synth::CaseSpec {
        size: Some((512, 512)),
        nodule_contrast: 3.0,
        ..cxr_synth::CaseSpec::default()
    };
    std::fs::create_dir_all(dir).unwrap();
    let records = cxr_synth::generate_batch(&spec, seed, 1, count as u64, dir).unwrap();
    cxr_synth::write_sidecars(dir, &records).unwrap();
}

fn score(paths: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg("score")
        .args(paths)
        .arg("--out")
        .arg(out)
        .arg("--models")
        .arg(models())
        .args(["--provider", "cpu"])
        .args(extra);
    run(&mut c)
}

fn labels(dir: &Path) -> HashMap<String, (bool, bool)> {
    let text = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), (f[2] == "1", f[3] == "1"))
        })
        .collect()
}

#[test]
fn a_campaign_is_scored_resumed_sharded_and_evaluated() {
    let tmp = tempfile::tempdir().unwrap();
    let films = tmp.path().join("films");
    let nested = films.join("site-b");
    campaign(&films, 40, 901);
    campaign(&nested, 20, 902);
    std::fs::write(films.join("000020-notes.txt"), "not a radiograph").unwrap();
    let sample = std::fs::read(films.join("000001.dcm")).unwrap();
    std::fs::write(films.join("000020-cut.dcm"), &sample[..600]).unwrap();

    // Without --recursive: the top folder only. The truncated file fails
    // (exit 1), the text file and the sidecars are skipped, and every film
    // still has its row.
    let results = tmp.path().join("top.csv");
    let out = score(&[&films], &results, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAILED: ") && stderr.contains("000020-cut.dcm"),
        "{stderr}"
    );
    assert!(stderr.contains("000020-notes.txt"), "{stderr}");
    assert_eq!(read_results(&results).unwrap().len(), 40);

    // Recursive, JSON Lines; then cut short (the last 25 rows and half a row
    // lost) and resumed: every film once, only the missing ones rescored.
    let results = tmp.path().join("all.jsonl");
    let out = score(&[&films], &results, &["--recursive"]);
    assert_eq!(out.status.code(), Some(1));
    let full = read_results(&results).unwrap();
    assert_eq!(full.len(), 60);
    let text = std::fs::read_to_string(&results).unwrap();
    let mut kept: Vec<&str> = text.lines().take(35).collect();
    let half = &text.lines().nth(35).unwrap()[..40];
    kept.push(half);
    std::fs::write(&results, kept.join("\n")).unwrap();
    let out = score(&[&films], &results, &["--recursive"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("35 already scored"), "{stderr}");
    assert!(stderr.contains("scored 25 images"), "{stderr}");
    let resumed = read_results(&results).unwrap();
    let uids: BTreeSet<&str> = resumed
        .iter()
        .map(|r| r.sop_instance_uid.as_str())
        .collect();
    assert_eq!(resumed.len(), 60);
    assert_eq!(uids.len(), 60);
    // The same images got the same scores.
    let before: HashMap<&str, f32> = full
        .iter()
        .map(|r| (r.sop_instance_uid.as_str(), r.scores["tuberculosis"]))
        .collect();
    for r in &resumed {
        assert!((before[r.sop_instance_uid.as_str()] - r.scores["tuberculosis"]).abs() < 1e-5);
    }

    // Three shards: together the whole campaign, no image twice.
    let mut union = Vec::new();
    for i in 0..3 {
        let part = tmp.path().join(format!("shard-{i}.csv"));
        score(
            &[&films],
            &part,
            &["--recursive", "--shard", &format!("{i}/3")],
        );
        let rows = read_results(&part).unwrap();
        assert!(
            !rows.is_empty() && rows.len() < 60,
            "shard {i}: {}",
            rows.len()
        );
        union.extend(rows.into_iter().map(|r| r.sop_instance_uid));
    }
    assert_eq!(union.len(), 60);
    assert_eq!(union.iter().collect::<BTreeSet<_>>().len(), 60);
    // The merge step: evaluate reads the three shard files as one campaign
    // (what the campaign Job's merge does), and refuses a shard given twice.
    let shards: Vec<String> = (0..3)
        .map(|i| {
            tmp.path()
                .join(format!("shard-{i}.csv"))
                .display()
                .to_string()
        })
        .collect();
    let labels_csv = films.join("labels.csv");
    let merged_json = tmp.path().join("merged.json");
    let mut args = vec!["evaluate".to_string()];
    args.extend(shards.iter().cloned());
    args.extend([
        "--truth".into(),
        labels_csv.display().to_string(),
        "--json".into(),
        merged_json.display().to_string(),
    ]);
    assert!(run(bin().args(&args)).status.success());
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).unwrap()).unwrap();
    assert_eq!(merged["results"], 60);
    assert_eq!(merged["matched"], 40);
    let twice = bin()
        .args(["evaluate", &shards[0], &shards[0], "--truth"])
        .arg(&labels_csv)
        .output()
        .unwrap();
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("must not overlap"));

    // Evaluate against the synthetic truth; the AUC and the operating-point
    // figures agree with ones computed here from the rows and labels.
    let truth = labels(&films);
    let eval_json = tmp.path().join("eval.json");
    let site = tmp.path().join("site.toml");
    let out = run(bin().args([
        "evaluate",
        results.to_str().unwrap(),
        "--truth",
        films.join("labels.csv").to_str().unwrap(),
        "--json",
        eval_json.to_str().unwrap(),
        "--write-operating-points",
        site.to_str().unwrap(),
    ]));
    assert!(out.status.success());
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&eval_json).unwrap()).unwrap();
    // Only the top folder's 40 films are in its labels.csv.
    assert_eq!(e["matched"], 40);
    assert_eq!(e["unmatched"], 20);
    let top: Vec<_> = resumed
        .iter()
        .filter(|r| truth.contains_key(&r.sop_instance_uid))
        .collect();
    let scores: Vec<f64> = top
        .iter()
        .map(|r| f64::from(r.scores["tuberculosis"]))
        .collect();
    let ys: Vec<bool> = top.iter().map(|r| truth[&r.sop_instance_uid].0).collect();
    // By pairs, the definition.
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, si) in scores.iter().enumerate() {
        for (j, sj) in scores.iter().enumerate() {
            if ys[i] && !ys[j] {
                pairs += 1.0;
                wins += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    let tb = &e["findings"]["tuberculosis"];
    assert!((tb["auc"].as_f64().unwrap() - wins / pairs).abs() < 1e-9);
    let ci = tb["auc_ci95"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() <= wins / pairs && wins / pairs <= ci[1].as_f64().unwrap());
    let tp = top
        .iter()
        .filter(|r| r.positive["tuberculosis"]["screening"] && truth[&r.sop_instance_uid].0)
        .count() as f64;
    let p = ys.iter().filter(|y| **y).count() as f64;
    assert!(
        (tb["operating_points"]["screening"]["sensitivity"]
            .as_f64()
            .unwrap()
            - tp / p)
            .abs()
            < 1e-12
    );

    // The report: one offline page, a histogram and a ROC curve per finding.
    let page = tmp.path().join("report.html");
    let out = run(bin().args([
        "report",
        results.to_str().unwrap(),
        "--evaluation",
        eval_json.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]));
    assert!(out.status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    assert_eq!(html.matches("aria-label=\"ROC curve\"").count(), 2);
    for outside in ["<script", "<link", "http://", "https://", "url("] {
        assert!(
            !html.contains(outside),
            "the report refers outside: {outside}"
        );
    }
    let critical = resumed.iter().filter(|r| r.priority == "CRITICAL").count();
    assert!(html.contains(&format!("<td>CRITICAL</td><td class=\"n\">{critical}</td>")));

    // The site file loads into the engine, and `score --config` applies it:
    // the chosen threshold flags at least 90 % of the TB-positive films.
    let config = cxr_triage::config::ServiceConfig::load(Some(&site)).unwrap();
    assert_eq!(
        config.engine.operating_points[&cxr_model::FindingId::tuberculosis()],
        "site"
    );
    let rescored = tmp.path().join("site.csv");
    let pngs = tmp.path().join("heatmaps");
    score(
        &[&films],
        &rescored,
        &[
            "--config",
            site.to_str().unwrap(),
            "--heatmaps",
            pngs.to_str().unwrap(),
        ],
    );
    // A heatmap overlay per analysed film and finding, as PNG.
    let written: Vec<_> = std::fs::read_dir(&pngs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 40 * 2);
    for p in written.iter().take(4) {
        assert!(std::fs::read(p).unwrap().starts_with(b"\x89PNG"));
    }
    let rows = read_results(&rescored).unwrap();
    let flagged = rows
        .iter()
        .filter(|r| truth.get(&r.sop_instance_uid).is_some_and(|t| t.0))
        .filter(|r| r.positive["tuberculosis"]["site"])
        .count() as f64;
    assert!(flagged / p >= 0.9, "{flagged} of {p}");
}

#[test]
fn evaluation_figures_match_a_hand_computed_example() {
    // 4 positives, 5 negatives, one tie across the classes.
    let scores = [0.9, 0.8, 0.4, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05];
    let labels = [true, true, true, true, false, false, false, false, false];
    // Pairs won by positives: 0.9 and 0.8 beat all 5 (10); 0.4 beats
    // 0.2, 0.1, 0.05 and ties 0.4 (3.5); 0.3 beats 3 (3) → 16.5 / 20.
    assert!((auc(&scores, &labels) - 16.5 / 20.0).abs() < 1e-12);
    // 75 % sensitivity needs the 3 highest positives: threshold 0.4.
    assert_eq!(threshold_for_sensitivity(&scores, &labels, 0.75), 0.4);
    assert_eq!(threshold_for_sensitivity(&scores, &labels, 0.9), 0.3);

    // The same through the command, from files.
    let tmp = tempfile::tempdir().unwrap();
    let mut results = String::from(
        "file,sop_instance_uid,study_instance_uid,series_instance_uid,accession_number,analyzable,reason_code,reason,priority,tuberculosis_score,tuberculosis_raw_score,tuberculosis@screening,models,provider,decode_ms,preprocess_ms,queue_ms,inference_ms,total_ms\n",
    );
    let mut truth = String::from("file,tuberculosis\n");
    for (i, (s, l)) in scores.iter().zip(labels).enumerate() {
        let flag = u8::from(*s >= 0.35);
        results.push_str(&format!(
            "/campaign/{i}.dcm,1.2.{i},1.3.{i},1.4.{i},,1,,,ROUTINE,{s},{s},{flag},m 1,cpu,1,1,1,1,4\n"
        ));
        truth.push_str(&format!("{i}.dcm,{}\n", u8::from(l)));
    }
    // A film the AI could not read is not counted.
    results.push_str("/campaign/lat.dcm,1.2.99,1.3.99,1.4.99,,0,lateral_view,lateral,NOT_ANALYZED,,,,m 1,cpu,1,0,0,0,1\n");
    std::fs::write(tmp.path().join("r.csv"), results).unwrap();
    std::fs::write(tmp.path().join("t.csv"), truth).unwrap();
    let json = tmp.path().join("e.json");
    let out = run(bin().args([
        "evaluate",
        tmp.path().join("r.csv").to_str().unwrap(),
        "--truth",
        tmp.path().join("t.csv").to_str().unwrap(),
        "--target-sensitivity",
        "0.75",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(out.status.success());
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(e["not_analyzed"], 1);
    let tb = &e["findings"]["tuberculosis"];
    assert!((tb["auc"].as_f64().unwrap() - 0.825).abs() < 1e-9);
    // (Scores are f32 in the results.)
    assert!((tb["threshold_for_target"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    // At 0.4: TP 3 (0.9, 0.8, 0.4), FN 1, FP 2 (0.7, 0.4), TN 3.
    let at = &tb["at_threshold"];
    assert_eq!(
        (
            at["tp"].as_u64(),
            at["fp"].as_u64(),
            at["tn"].as_u64(),
            at["fn_"].as_u64()
        ),
        (Some(3), Some(2), Some(3), Some(1))
    );
    assert!((at["specificity"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    assert!((at["ppv"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    assert!((at["npv"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert!((at["flagged"].as_f64().unwrap() - 5.0 / 9.0).abs() < 1e-12);
    assert_eq!(tb["meets_min_specificity"], false);
    // The screening column (score ≥ 0.35): the same verdicts as 0.4.
    assert_eq!(tb["operating_points"]["screening"]["tp"], 3);
    assert_eq!(tb["operating_points"]["screening"]["fp"], 2);
}

/// Peak resident memory of a running child, polled.
fn vm_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_thousand_image_campaign_runs_in_bounded_memory_into_the_worklist() {
    let tmp = tempfile::tempdir().unwrap();
    let films = tmp.path().join("films");
    campaign(&films, 1000, 903);
    let results = tmp.path().join("results.csv");
    let db = tmp.path().join("worklist.sqlite");
    let mut child = bin()
        .arg("score")
        .arg(&films)
        .arg("--out")
        .arg(&results)
        .arg("--db")
        .arg(&db)
        .arg("--models")
        .arg(models())
        .args(["--provider", "cpu", "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(k) = vm_rss_kib(pid) {
            peak = peak.max(k);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows = read_results(&results).unwrap();
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r.analyzable));
    // Holding every film decoded would take well over a gigabyte.
    eprintln!("peak RSS {} MiB; {stderr}", peak / 1024);
    assert!(
        peak > 0 && peak < 600 * 1024,
        "peak RSS {} MiB",
        peak / 1024
    );

    // The same results are on the service's worklist.
    let store = cxr_worklist::SqliteStore::open(&db).unwrap();
    use cxr_worklist::WorklistStore;
    let counts = store.open_counts().unwrap();
    let studies: u64 = counts.iter().map(|c| c.1).sum();
    let unique: BTreeSet<&str> = rows.iter().map(|r| r.study_instance_uid.as_str()).collect();
    assert_eq!(studies as usize, unique.len());
}

#[test]
fn bench_reports_every_stage_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let films = tmp.path().join("films");
    campaign(&films, 2, 904);
    let out = run(bin().args([
        "bench",
        "--models",
        models().to_str().unwrap(),
        "--images",
        films.to_str().unwrap(),
        "--requests",
        "6",
        "--batch",
        "1,2",
        "--concurrency",
        "1,3",
        "--provider",
        "cpu",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(out.status.success());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(r["provider"], "cpu");
    assert_eq!(r["model"], "cxr-reference-v1 1.2.0");
    for stage in [
        &r["decode"],
        &r["preprocess"],
        &r["inference"]["1"],
        &r["inference"]["2"],
    ] {
        assert!(stage["images_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(stage["p50_ms"].as_f64().unwrap() <= stage["p99_ms"].as_f64().unwrap());
    }
    let pipeline = r["pipeline"].as_array().unwrap();
    assert_eq!(pipeline.len(), 2);
    assert_eq!(pipeline[1]["concurrency"], 3);
    assert!(r["pipeline_efficiency"]["ratio"].as_f64().unwrap() > 0.0);
}
