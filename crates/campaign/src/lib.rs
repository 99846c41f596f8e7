//! # cxr-campaign: campaign tools over the one analysis path
//!
//! Screening campaigns: `cxr-triage score` rescores folders of DICOM files
//! (resumable, shardable, bounded memory) and `cxr-triage evaluate` measures
//! the results against ground truth and chooses site operating points;
//! `cxr-triage report` draws them as one offline HTML page.

pub mod bench;
pub mod evaluate;
pub mod report;
pub mod results;
pub mod score;

pub use evaluate::{evaluate, EvaluateOptions, Evaluation, FindingEvaluation};
pub use results::{read_results, ResultRow};
pub use score::{score, ScoreOptions, ScoreSummary, Shard};
