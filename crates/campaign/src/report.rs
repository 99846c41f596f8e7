//! `cxr-triage report`: one self-contained HTML page for a campaign —
//! counts by priority and by reason, score histograms per finding with the
//! operating points marked, ROC curves when an evaluation is given, the
//! slowest images and the ones the AI could not read. Charts are inline SVG;
//! no scripts, fonts or anything else from outside: it opens offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use super::results::{read_all_results, ResultRow};

/// Options of `cxr-triage report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Results of `cxr-triage score` (`.csv` or `.jsonl`): one file, or a
    /// sharded campaign's files.
    pub results: Vec<PathBuf>,
    /// The JSON of `cxr-triage evaluate --json` (adds ROC curves and metrics).
    pub evaluation: Option<PathBuf>,
    /// The HTML page to write.
    pub out: PathBuf,
    /// Title of the page.
    pub title: String,
}

/// Runs `report`.
pub fn run(args: &ReportOptions) -> anyhow::Result<std::process::ExitCode> {
    let rows = read_all_results(&args.results)?;
    let evaluation = match &args.evaluation {
        Some(p) => Some(
            serde_json::from_str::<serde_json::Value>(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not an evaluation", p.display()))?,
        ),
        None => None,
    };
    let html = render(
        &args.title,
        &rows,
        evaluation.as_ref(),
        &super::results::describe_results(&args.results),
    );
    std::fs::write(&args.out, html).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// A campaign's figures, as data: what the report draws and the web
/// worklist's campaign page shows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    /// Rows (images).
    pub images: usize,
    /// Images by priority.
    pub by_priority: BTreeMap<String, usize>,
    /// Images the AI could not read, by reason code.
    pub by_reason: BTreeMap<String, usize>,
    /// Per finding.
    pub findings: BTreeMap<String, FindingFigures>,
}

/// One finding's score distribution.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FindingFigures {
    /// Analysed images with a score.
    pub analysed: usize,
    /// Images per score bin: 20 bins of 0.05 from 0 to 1.
    pub bins: Vec<usize>,
    /// Per operating point, the lowest score it flagged (where it starts).
    pub flags_from: BTreeMap<String, f32>,
    /// Per operating point, its threshold on the calibrated score (as the
    /// models had it).
    pub thresholds: BTreeMap<String, f64>,
}

/// Bins of [`FindingFigures::bins`].
pub const BINS: usize = 20;

/// The figures of `rows`.
pub fn figures(rows: &[ResultRow]) -> Figures {
    let mut f = Figures {
        images: rows.len(),
        ..Figures::default()
    };
    for r in rows {
        *f.by_priority.entry(r.priority.clone()).or_default() += 1;
        if !r.analyzable {
            *f.by_reason.entry(r.reason_code.clone()).or_default() += 1;
        }
        for (finding, score) in &r.scores {
            let ff = f
                .findings
                .entry(finding.clone())
                .or_insert_with(|| FindingFigures {
                    bins: vec![0; BINS],
                    ..FindingFigures::default()
                });
            ff.analysed += 1;
            ff.bins[((score.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1)] += 1;
            for (op, positive) in r.positive.get(finding).into_iter().flatten() {
                if *positive {
                    let e = ff.flags_from.entry(op.clone()).or_insert(f32::INFINITY);
                    *e = e.min(*score);
                }
            }
            for (op, t) in r.thresholds.get(finding).into_iter().flatten() {
                ff.thresholds.entry(op.clone()).or_insert(*t);
            }
        }
    }
    f
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PRIORITIES: [(&str, &str); 4] = [
    ("CRITICAL", "#b91c1c"),
    ("URGENT", "#d97706"),
    ("NOT_ANALYZED", "#6b7280"),
    ("ROUTINE", "#15803d"),
];

/// The page.
pub fn render(
    title: &str,
    rows: &[ResultRow],
    evaluation: Option<&serde_json::Value>,
    source: &str,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#111827}}\
h1{{font-size:1.5em}}h2{{font-size:1.2em;margin-top:2em;border-bottom:1px solid #e5e7eb}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{padding:.25em .75em;border-bottom:1px solid #e5e7eb;text-align:left}}\
td.n{{text-align:right;font-variant-numeric:tabular-nums}}.bar{{display:inline-block;height:.9em}}\
.note{{color:#6b7280;font-size:.9em}}svg text{{font-size:11px;fill:#374151}}</style></head><body>\
<h1>{t}</h1><p class=\"note\">{n} images from <code>{s}</code>. AI triage output: a reading order, not a diagnosis.</p>",
        t = esc(title),
        n = rows.len(),
        s = esc(source)
    );

    let figures = figures(rows);
    let by_priority = &figures.by_priority;
    h.push_str("<h2>Priority</h2><table><tr><th>priority</th><th>images</th><th></th></tr>");
    let max = by_priority.values().copied().max().unwrap_or(1).max(1);
    for (p, colour) in PRIORITIES {
        let n = by_priority.get(p).copied().unwrap_or(0);
        let _ = write!(
            h,
            "<tr><td>{p}</td><td class=\"n\">{n}</td><td><span class=\"bar\" style=\"width:{}px;background:{colour}\"></span></td></tr>",
            (300 * n / max).max(usize::from(n > 0))
        );
    }
    h.push_str("</table>");

    let by_reason = &figures.by_reason;
    if !by_reason.is_empty() {
        h.push_str("<h2>Not analysed (on the worklist for a human)</h2><table><tr><th>reason</th><th>images</th></tr>");
        for (reason, n) in by_reason {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
                esc(reason)
            );
        }
        h.push_str("</table>");
    }

    // Score histograms with the operating points' verdict boundaries.
    for (f, ff) in &figures.findings {
        let _ = write!(h, "<h2>{} — score distribution</h2>", esc(f));
        h.push_str(&histogram(f, ff));
        if let Some(fe) = evaluation
            .and_then(|e| e.get("findings"))
            .and_then(|x| x.get(f))
        {
            h.push_str(&evaluation_block(fe));
        }
    }

    // The slowest images, and those not analysed.
    let mut slow: Vec<&ResultRow> = rows.iter().collect();
    slow.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    h.push_str("<h2>Slowest images</h2><table><tr><th>file</th><th>total ms</th><th>decode</th><th>preprocess</th><th>queue</th><th>inference</th></tr>");
    for r in slow.iter().take(10) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td></tr>",
            esc(&r.file), r.total_ms, r.decode_ms, r.preprocess_ms, r.queue_ms, r.inference_ms
        );
    }
    h.push_str("</table>");
    let unread: Vec<&ResultRow> = rows.iter().filter(|r| !r.analyzable).collect();
    if !unread.is_empty() {
        h.push_str(
            "<h2>Images the AI could not read</h2><table><tr><th>file</th><th>reason</th></tr>",
        );
        for r in unread.iter().take(200) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&r.file),
                esc(&r.reason)
            );
        }
        h.push_str("</table>");
        if unread.len() > 200 {
            let _ = write!(
                h,
                "<p class=\"note\">… and {} more.</p>",
                unread.len() - 200
            );
        }
    }
    h.push_str("<p class=\"note\">Made by cxr-triage. Reference models are trained on synthetic images and are not for clinical use.</p></body></html>\n");
    h
}

/// 20-bin histogram of a finding's scores over analysed images, with the
/// lowest positive score of each operating point marked.
fn histogram(finding: &str, ff: &FindingFigures) -> String {
    let bins = &ff.bins;
    let max = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, hgt, left, bottom) = (600.0, 200.0, 40.0, 30.0);
    let mut s = format!(
        "<svg width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"histogram of {} scores\">",
        w + left + 10.0,
        hgt + bottom + 10.0,
        esc(finding)
    );
    for (i, n) in bins.iter().enumerate() {
        let bh = hgt * (*n as f64) / max;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#60a5fa\"><title>{:.2}–{:.2}: {n}</title></rect>",
            left + i as f64 * w / 20.0 + 1.0,
            10.0 + hgt - bh,
            w / 20.0 - 2.0,
            bh,
            i as f64 / 20.0,
            (i + 1) as f64 / 20.0
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#374151\"/>",
        y = 10.0 + hgt,
        x2 = left + w
    );
    for t in 0..=10 {
        let x = left + w * t as f64 / 10.0;
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}</text>",
            hgt + 25.0,
            t as f64 / 10.0
        );
    }
    let _ = write!(s, "<text x=\"4\" y=\"20\">{}</text>", max as usize);
    // Each operating point's boundary: the lowest score it flagged.
    for (i, (op, t)) in ff.flags_from.iter().enumerate() {
        let x = left + w * f64::from(t.clamp(0.0, 1.0));
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"10\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#b91c1c\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#b91c1c\">{}</text>",
            10.0 + hgt,
            x + 3.0,
            22 + 13 * i,
            esc(op)
        );
    }
    s.push_str("</svg>");
    let _ = write!(
        s,
        "<p class=\"note\">{} analysed images; dashed lines: where each operating point starts flagging.</p>",
        ff.analysed
    );
    s
}

fn evaluation_block(f: &serde_json::Value) -> String {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let pct = |v: &serde_json::Value| {
        let x = num(v);
        if x.is_finite() {
            format!("{:.1}%", 100.0 * x)
        } else {
            "—".into()
        }
    };
    let mut s = format!(
        "<p>AUC <b>{:.3}</b> (95% CI {:.3}–{:.3}), {} images, {} positive.</p>",
        num(&f["auc"]),
        num(&f["auc_ci95"][0]),
        num(&f["auc_ci95"][1]),
        f["images"],
        f["positives"]
    );
    // ROC curve.
    let size = 260.0;
    let _ = write!(s, "<svg width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"ROC curve\"><rect x=\"30\" y=\"10\" width=\"{size}\" height=\"{size}\" fill=\"none\" stroke=\"#9ca3af\"/><line x1=\"30\" y1=\"{y0}\" x2=\"{x1}\" y2=\"10\" stroke=\"#d1d5db\" stroke-dasharray=\"3 3\"/>", size + 40.0, size + 40.0, y0 = 10.0 + size, x1 = 30.0 + size);
    if let Some(points) = f["roc"].as_array() {
        let path: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    30.0 + size * num(&p[0]),
                    10.0 + size * (1.0 - num(&p[1]))
                )
            })
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\"/>",
            path.join(" ")
        );
    }
    let _ = write!(s, "<text x=\"30\" y=\"{:.0}\">1 − specificity</text><text x=\"2\" y=\"8\">sensitivity</text></svg>", size + 30.0);
    s.push_str("<table><tr><th>operating point</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th><th>flagged</th></tr>");
    if let Some(ops) = f["operating_points"].as_object() {
        for (name, c) in ops {
            let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>", esc(name), pct(&c["sensitivity"]), pct(&c["specificity"]), pct(&c["ppv"]), pct(&c["npv"]), pct(&c["flagged"]));
        }
    }
    let c = &f["at_threshold"];
    let _ = write!(s, "<tr><td>threshold {:.4} (target sensitivity)</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>", num(&f["threshold_for_target"]), pct(&c["sensitivity"]), pct(&c["specificity"]), pct(&c["ppv"]), pct(&c["npv"]), pct(&c["flagged"]));
    s
}
