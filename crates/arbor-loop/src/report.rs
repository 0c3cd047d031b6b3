//! `DIR/report.json`: per iteration, the data made, the training summary, the held-out
//! accuracy with its Wilson interval and the wall time of each stage; and the table printed at
//! the end.
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    pub iteration: usize,
    /// The policy evaluated (and searched with by the next iteration).
    pub model: String,
    pub trees: Option<usize>,
    pub failed_searches: Option<usize>,
    /// Terminal nodes the verifier accepted, across the iteration's trees.
    pub correct_leaves: Option<usize>,
    /// Training rows exported (pairs, trajectories, lists).
    pub rows: Option<usize>,
    pub train_steps: Option<usize>,
    pub train_examples: Option<usize>,
    /// Why the policy was carried over untrained, when it was.
    pub train_skipped: Option<String>,
    pub eval_n: usize,
    pub eval_correct: usize,
    pub accuracy: f64,
    pub ci95: (f64, f64),
    /// With a critic: accuracy of value-guided beam search (`eval.json` has its interval).
    pub value_beam_accuracy: Option<f64>,
    /// Wall seconds of each stage that ran in this process (a resumed stage keeps its old
    /// figure).
    pub seconds: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopReport {
    pub format: String,
    pub algo: String,
    pub env: String,
    pub iterations: Vec<IterationReport>,
}

impl LoopReport {
    pub fn read(path: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Written to a temporary file and renamed, so a kill never leaves half a report.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("reports serialize"))?;
        std::fs::rename(tmp, path)
    }

    /// The per-iteration table.
    pub fn table(&self) -> String {
        let mut s = String::from("iter  trees  correct leaves  rows  steps  accuracy  95% CI\n");
        let opt = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
        for r in &self.iterations {
            let _ = writeln!(
                s,
                "{:>4}  {:>5}  {:>14}  {:>4}  {:>5}  {:>7.1}%  [{:.1}, {:.1}]",
                r.iteration,
                opt(r.trees),
                opt(r.correct_leaves),
                opt(r.rows),
                opt(r.train_steps),
                100.0 * r.accuracy,
                100.0 * r.ci95.0,
                100.0 * r.ci95.1
            );
        }
        s
    }
}
