//! Judge checks (`judge_checks`): tools arbor runs itself on every candidate before the judge
//! scores them — each worked step recomputed (`check_arithmetic`), the final answer against the
//! item's reference (`verify_answer`). The judge reads what they found beside each candidate,
//! and each failed check costs the candidate `check_penalty` points after it scores, so a
//! candidate a check refutes ranks below one it does not, whatever the judge model makes of the
//! evidence. Why: a small judge rarely calls tools on its own and often ignores what they say
//! (`arbor bench judge` measures both), while the checks themselves are exact.
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use arbor_tools::tool::{ToolOutcome, ToolRegistry};

use crate::config::SynthConfig;
use crate::input::Item;

/// What the checks found in one candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateChecks {
    /// The checks it failed, each with what failed ("arithmetic: 9 * 2 = 21 (is 18)").
    pub failed: Vec<String>,
    /// The evidence as the judge reads it.
    pub summary: String,
}

/// Runs `cfg.judge_checks` on every candidate (none when the list is empty): per candidate what
/// was found, and every tool call for provenance.
pub async fn run(tools: &ToolRegistry, cfg: &SynthConfig, item: &Item, cands: &[String]) -> (Vec<CandidateChecks>, Vec<ToolOutcome>) {
    if cfg.judge_checks.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut calls = Vec::new();
    let mut found = Vec::with_capacity(cands.len());
    for c in cands {
        let mut checks = CandidateChecks::default();
        let mut lines = Vec::new();
        if cfg.judge_checks.iter().any(|k| k == "arithmetic") {
            let out = tools.call("check_arithmetic", &json!({ "text": c }).to_string()).await;
            let steps = out.output["steps"].as_array().cloned().unwrap_or_default();
            let wrong: Vec<String> = steps.iter().filter(|s| s["holds"] == false).map(step).collect();
            lines.push(match (steps.len(), wrong.is_empty()) {
                (0, _) => "no worked steps to recompute".to_string(),
                (n, true) => format!("{n} worked steps recomputed, all correct"),
                (n, false) => format!("{n} worked steps recomputed, {} wrong: {}", wrong.len(), wrong.join("; ")),
            });
            if !wrong.is_empty() {
                checks.failed.push(format!("arithmetic: {}", wrong.join("; ")));
            }
            calls.push(out);
        }
        if let (true, Some(reference)) = (cfg.judge_checks.iter().any(|k| k == "answer"), &item.reference) {
            let out = tools.call("verify_answer", &json!({ "response": c, "reference": reference }).to_string()).await;
            let answer = out.output["answer"].as_str().map(str::to_string);
            let line = match (out.output["correct"] == true, answer) {
                (true, Some(a)) => format!("final answer {a} matches the reference"),
                (_, None) => "no final answer found".to_string(),
                (false, Some(a)) => format!("final answer {a} does not match the reference"),
            };
            if out.output["correct"] != true {
                checks.failed.push(format!("answer: {line}"));
            }
            lines.push(line);
            calls.push(out);
        }
        checks.summary = lines.join("; ");
        found.push(checks);
    }
    (found, calls)
}

fn step(s: &Value) -> String {
    format!("{} = {} (is {})", s["expression"].as_str().unwrap_or(""), s["stated"].as_str().unwrap_or(""), s["value"].as_str().unwrap_or(""))
}

/// `scores` (in the order `shown` gives the candidates) less `penalty` per failed check.
pub fn penalize(scores: &mut [f64], shown: &[&CandidateChecks], penalty: f64) {
    for (s, c) in scores.iter_mut().zip(shown) {
        *s -= penalty * c.failed.len() as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_core::Message;

    #[tokio::test]
    async fn failed_checks_are_found_and_cost_points() {
        let tools = arbor_tools::builtin::pure_tools(std::time::Duration::from_secs(5));
        let item = Item { index: 0, id: "a".into(), messages: vec![Message::user("9 * 2?")], reference: Some("18".into()), metadata: Default::default() };
        let cands = vec!["9 * 2 = 18. The answer is 18.".to_string(), "9 * 2 = 21. The answer is 21.".to_string(), "No idea.".to_string()];
        let cfg = SynthConfig::default();
        let (found, calls) = run(&tools, &cfg, &item, &cands).await;
        assert_eq!(calls.len(), 6);
        assert!(found[0].failed.is_empty(), "{found:?}");
        assert_eq!(found[0].summary, "1 worked steps recomputed, all correct; final answer 18 matches the reference");
        assert_eq!(found[1].failed, vec!["arithmetic: 9 * 2 = 21 (is 18)".to_string(), "answer: final answer 21 does not match the reference".to_string()]);
        assert_eq!(found[2].summary, "no worked steps to recompute; no final answer found");
        let mut scores = vec![2.0, 9.0, 5.0];
        penalize(&mut scores, &found.iter().collect::<Vec<_>>(), cfg.check_penalty);
        assert_eq!(scores, vec![2.0, -11.0, -5.0]);
        // Without a reference only the arithmetic runs; with no checks configured, nothing does.
        let no_ref = Item { reference: None, ..item.clone() };
        assert_eq!(run(&tools, &cfg, &no_ref, &cands).await.1.len(), 3);
        let off = SynthConfig { judge_checks: vec![], ..cfg };
        assert!(run(&tools, &off, &item, &cands).await.0.is_empty());
    }
}
