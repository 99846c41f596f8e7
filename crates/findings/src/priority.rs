//! Reading priority: of an image from its findings (or from why it could not
//! be read), and of a study from its images.
//!
//! Order on the worklist: CRITICAL > URGENT > NOT_ANALYZED > ROUTINE. An
//! image the AI could not read may hold anything, so a human sees it before
//! the routine films; it never outranks a positive finding.
//!
//! A study's priority is the worst of its images, except that images the
//! gate set aside on purpose — laterals, other views, non-chest — are
//! recorded but do not change it (their frontal companion is what the models
//! read). A study with nothing but such images is NOT_ANALYZED, so it stays
//! visible for a human.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FindingResult, NotAnalyzed};
use cxr_model::FindingId;

/// Reading priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// No finding positive.
    Routine,
    /// The AI could not read the image.
    NotAnalyzed,
    /// A finding positive at its operating point.
    Urgent,
    /// A finding positive at its critical (high-specificity) operating point.
    Critical,
}

impl Priority {
    /// Worklist rank: higher is read first.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Routine => 1,
            Priority::NotAnalyzed => 2,
            Priority::Urgent => 3,
            Priority::Critical => 4,
        }
    }

    /// The priority of a rank (unknown ranks read as NOT_ANALYZED).
    pub fn from_rank(rank: i64) -> Priority {
        match rank {
            1 => Priority::Routine,
            3 => Priority::Urgent,
            4 => Priority::Critical,
            _ => Priority::NotAnalyzed,
        }
    }

    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "ROUTINE",
            Priority::NotAnalyzed => "NOT_ANALYZED",
            Priority::Urgent => "URGENT",
            Priority::Critical => "CRITICAL",
        }
    }
}

/// One reason for a priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityReason {
    /// The finding (none for NOT_ANALYZED reasons).
    pub finding: Option<FindingId>,
    /// Its calibrated score.
    pub score: f32,
    /// The operating point reached.
    pub operating_point: String,
    /// Its threshold.
    pub threshold: f64,
    /// The image it comes from.
    pub sop_instance_uid: String,
    /// Readable summary.
    pub text: String,
}

/// A priority with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityAssessment {
    /// The priority.
    pub priority: Priority,
    /// Most important first.
    pub reasons: Vec<PriorityReason>,
    /// Highest calibrated score of any finding (0 when none): orders
    /// studies of the same priority, so that near-misses come first among
    /// the routine ones.
    pub top_score: f32,
}

/// Which operating points make a finding URGENT and CRITICAL (from the
/// site configuration, `[priority]`), per finding. A finding reaches a level
/// when its calibrated score is at or above the named operating point's
/// threshold; an operating point its model does not have never fires.
///
/// ```toml
/// [priority]
/// critical_operating_point = "high_specificity"   # every finding's default
/// [priority.findings.pneumothorax]
/// critical = "screening"      # any positive pneumothorax is CRITICAL
/// [priority.findings.tuberculosis]
/// urgent = "screening"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriorityPolicy {
    /// Operating point whose verdict makes an image CRITICAL, for findings
    /// without their own (default `high_specificity`).
    pub critical_operating_point: String,
    /// Operating point whose verdict makes an image URGENT, for findings
    /// without their own; when absent, the operating point in use for the
    /// finding (the site's choice, or the model's default).
    pub urgent_operating_point: Option<String>,
    /// Per finding: which operating point makes it CRITICAL and URGENT.
    pub findings: BTreeMap<FindingId, FindingPolicy>,
}

/// One finding's priority rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FindingPolicy {
    /// Operating point that makes it CRITICAL.
    pub critical: Option<String>,
    /// Operating point that makes it URGENT.
    pub urgent: Option<String>,
}

impl Default for PriorityPolicy {
    fn default() -> Self {
        PriorityPolicy {
            critical_operating_point: "high_specificity".into(),
            urgent_operating_point: None,
            findings: BTreeMap::new(),
        }
    }
}

impl PriorityPolicy {
    /// The operating point that makes `finding` CRITICAL.
    pub fn critical_for(&self, finding: &FindingId) -> &str {
        self.findings
            .get(finding)
            .and_then(|p| p.critical.as_deref())
            .unwrap_or(&self.critical_operating_point)
    }

    /// The operating point that makes `finding` URGENT (`in_use` when the
    /// policy names none).
    pub fn urgent_for<'a>(&'a self, finding: &FindingId, in_use: &'a str) -> &'a str {
        self.findings
            .get(finding)
            .and_then(|p| p.urgent.as_deref())
            .or(self.urgent_operating_point.as_deref())
            .unwrap_or(in_use)
    }
}

/// Why an image was not analysed, as far as priority is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Set aside on purpose (lateral, other view, not a chest): does not
    /// change its study's priority.
    SetAside,
    /// Could not be read (decode failure, unsupported, inference failure):
    /// a human must look.
    Failed,
}

/// The priority of an analysed image.
pub fn image_priority(
    sop_instance_uid: &str,
    findings: &[FindingResult],
    policy: &PriorityPolicy,
) -> PriorityAssessment {
    let mut reasons = Vec::new();
    let mut priority = Priority::Routine;
    let mut top_score = 0.0f32;
    for f in findings {
        top_score = top_score.max(f.score);
        let fired = |name: &str| {
            f.operating_points
                .iter()
                .find(|op| op.name == name && op.positive)
        };
        let critical = fired(policy.critical_for(&f.finding));
        let urgent = fired(policy.urgent_for(&f.finding, &f.operating_point));
        let (level, op_name, threshold) = match (critical, urgent) {
            (Some(op), _) => (Priority::Critical, op.name.as_str(), op.threshold),
            (None, Some(op)) => (Priority::Urgent, op.name.as_str(), op.threshold),
            (None, None) => continue,
        };
        if level.rank() > priority.rank() {
            priority = level;
        }
        reasons.push(PriorityReason {
            finding: Some(f.finding.clone()),
            score: f.score,
            operating_point: op_name.to_string(),
            threshold,
            sop_instance_uid: sop_instance_uid.to_string(),
            text: format!(
                "{} {:.2} ≥ {:.2} ({op_name})",
                f.finding, f.score, threshold
            ),
        });
    }
    reasons.sort_by(|a, b| b.score.total_cmp(&a.score));
    PriorityAssessment {
        priority,
        reasons,
        top_score,
    }
}

/// The priority of an image the AI did not read.
pub fn unread_priority(sop_instance_uid: &str, reason: &NotAnalyzed) -> PriorityAssessment {
    PriorityAssessment {
        priority: Priority::NotAnalyzed,
        reasons: vec![PriorityReason {
            finding: None,
            score: 0.0,
            operating_point: String::new(),
            threshold: 0.0,
            sop_instance_uid: sop_instance_uid.to_string(),
            text: format!("not analyzed ({}): {reason}", reason.code()),
        }],
        top_score: 0.0,
    }
}

/// A study's priority from its images' (assessment, unread kind if unread).
pub fn study_priority<'a>(
    images: impl IntoIterator<Item = (&'a PriorityAssessment, Option<Unread>)>,
) -> PriorityAssessment {
    let mut counted: Vec<&PriorityAssessment> = Vec::new();
    let mut set_aside: Vec<&PriorityAssessment> = Vec::new();
    for (assessment, unread) in images {
        match unread {
            Some(Unread::SetAside) => set_aside.push(assessment),
            _ => counted.push(assessment),
        }
    }
    let pool = if counted.is_empty() {
        set_aside
    } else {
        counted
    };
    let priority = pool
        .iter()
        .map(|a| a.priority)
        .max_by_key(|p| p.rank())
        .unwrap_or(Priority::NotAnalyzed);
    let mut reasons: Vec<PriorityReason> = pool
        .iter()
        .filter(|a| a.priority == priority)
        .flat_map(|a| a.reasons.iter().cloned())
        .collect();
    reasons.sort_by(|a, b| b.score.total_cmp(&a.score));
    let top_score = pool.iter().map(|a| a.top_score).fold(0.0, f32::max);
    PriorityAssessment {
        priority,
        reasons,
        top_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatingPointResult;

    fn finding(kind: &str, score: f32, screening: f64, high: f64) -> FindingResult {
        let finding = FindingId::new(kind).unwrap();
        FindingResult {
            display_name: finding.default_display_name(),
            code: None,
            finding,
            raw_score: score,
            score,
            operating_point: "screening".into(),
            threshold: screening,
            positive: f64::from(score) >= screening,
            operating_points: vec![
                OperatingPointResult {
                    name: "high_specificity".into(),
                    threshold: high,
                    positive: f64::from(score) >= high,
                },
                OperatingPointResult {
                    name: "screening".into(),
                    threshold: screening,
                    positive: f64::from(score) >= screening,
                },
            ],
            heatmap: None,
            regions: Vec::new(),
        }
    }

    #[test]
    fn image_priority_follows_the_operating_points() {
        let policy = PriorityPolicy::default();
        let tb = "tuberculosis";
        let nod = "malignant_nodule";
        let routine = image_priority(
            "1",
            &[finding(tb, 0.1, 0.3, 0.8), finding(nod, 0.2, 0.3, 0.8)],
            &policy,
        );
        assert_eq!(
            (routine.priority, routine.reasons.len()),
            (Priority::Routine, 0)
        );
        let urgent = image_priority(
            "1",
            &[finding(tb, 0.5, 0.3, 0.8), finding(nod, 0.2, 0.3, 0.8)],
            &policy,
        );
        assert_eq!(urgent.priority, Priority::Urgent);
        assert_eq!(urgent.reasons[0].operating_point, "screening");
        assert_eq!(urgent.top_score, 0.5);
        let critical = image_priority(
            "1",
            &[finding(tb, 0.5, 0.3, 0.8), finding(nod, 0.9, 0.3, 0.8)],
            &policy,
        );
        assert_eq!(critical.priority, Priority::Critical);
        assert_eq!(critical.reasons.len(), 2);
        assert!(critical.reasons[0]
            .text
            .starts_with("malignant_nodule 0.90 ≥ 0.80 (high_specificity)"));
    }

    #[test]
    fn set_aside_images_do_not_change_a_study_but_failures_do() {
        let policy = PriorityPolicy::default();
        let routine = image_priority("pa", &[finding("tuberculosis", 0.1, 0.3, 0.8)], &policy);
        let lateral = unread_priority(
            "lat",
            &NotAnalyzed::Gate(cxr_ingest::NotAnalyzable::LateralView {
                view_position: "LL".into(),
            }),
        );
        let broken = unread_priority(
            "bad",
            &NotAnalyzed::Undecodable {
                kind: cxr_ingest::IngestErrorKind::Io,
                message: "truncated".into(),
            },
        );
        let urgent = image_priority("pa2", &[finding("tuberculosis", 0.5, 0.3, 0.8)], &policy);

        let s = study_priority([(&routine, None), (&lateral, Some(Unread::SetAside))]);
        assert_eq!(s.priority, Priority::Routine);
        let s = study_priority([(&lateral, Some(Unread::SetAside))]);
        assert_eq!(s.priority, Priority::NotAnalyzed);
        let s = study_priority([(&routine, None), (&broken, Some(Unread::Failed))]);
        assert_eq!(s.priority, Priority::NotAnalyzed);
        let s = study_priority([
            (&urgent, None),
            (&broken, Some(Unread::Failed)),
            (&lateral, Some(Unread::SetAside)),
        ]);
        assert_eq!((s.priority, s.top_score), (Priority::Urgent, 0.5));
    }

    #[test]
    fn the_policy_names_the_operating_points_per_finding() {
        let mut policy = PriorityPolicy::default();
        policy.findings.insert(
            FindingId::new("pneumothorax").unwrap(),
            FindingPolicy {
                critical: Some("screening".into()),
                urgent: None,
            },
        );
        // Positive at screening only: CRITICAL for pneumothorax by the
        // site's rule, URGENT for tuberculosis by the default one.
        let ptx = image_priority("1", &[finding("pneumothorax", 0.5, 0.3, 0.8)], &policy);
        assert_eq!(ptx.priority, Priority::Critical);
        assert_eq!(
            ptx.reasons[0].finding.as_ref().unwrap().as_str(),
            "pneumothorax"
        );
        let tb = image_priority("1", &[finding("tuberculosis", 0.5, 0.3, 0.8)], &policy);
        assert_eq!(tb.priority, Priority::Urgent);
        // An operating point the model does not have never fires.
        policy.urgent_operating_point = Some("no_such_point".into());
        let none = image_priority("1", &[finding("tuberculosis", 0.5, 0.3, 0.8)], &policy);
        assert_eq!(none.priority, Priority::Routine);
    }

    #[test]
    fn ranks_round_trip_and_order_the_worklist() {
        let order = [
            Priority::Critical,
            Priority::Urgent,
            Priority::NotAnalyzed,
            Priority::Routine,
        ];
        for w in order.windows(2) {
            assert!(w[0].rank() > w[1].rank());
        }
        for p in order {
            assert_eq!(Priority::from_rank(p.rank()), p);
        }
    }
}
