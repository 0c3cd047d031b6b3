//! Judge checks (`judge_checks`): tools arbor runs itself on every candidate before the judge
//! scores them — each worked step recomputed (`check_arithmetic`), the final answer against the
//! item's reference (`verify_answer`), code against the item's `tests` in the sandbox
//! (`run_unit_tests`). The judge reads what they found beside each candidate,
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
        if let (true, Some(tests)) = (cfg.judge_checks.iter().any(|k| k == "tests"), item_tests(item)) {
            let out = tools.call("run_unit_tests", &json!({ "code": c, "tests": tests }).to_string()).await;
            let (passed, total) = (out.output["passed"].as_u64().unwrap_or(0), out.output["total"].as_u64().unwrap_or(0));
            let line = match (&out.error, out.output["load_error"].as_str()) {
                // The sandbox itself failed: the same for every candidate, so no one's fault.
                (Some(e), _) => format!("the tests could not run: {e}"),
                (None, Some(e)) => format!("the code did not run: {e}"),
                (None, None) if passed == total => format!("all {total} tests pass"),
                (None, None) => format!("{passed} of {total} tests pass"),
            };
            if out.error.is_none() && passed < total {
                checks.failed.push(format!("tests: {line}"));
            }
            lines.push(line);
            calls.push(out);
        }
        checks.summary = lines.join("; ");
        found.push(checks);
    }
    (found, calls)
}

/// The item's unit tests (`"tests": ["assert …", …]` in its input row), where it has them.
fn item_tests(item: &Item) -> Option<Vec<&str>> {
    let tests: Vec<&str> = item.metadata.get("tests")?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!tests.is_empty()).then_some(tests)
}

/// The tools the judge and the checks call: the pure ones, and the sandboxed ones (which need
/// bubblewrap) when the config runs tests or offers `python` / `run_unit_tests` to the judge.
pub fn registry(cfg: &SynthConfig, timeout: std::time::Duration) -> Result<ToolRegistry, String> {
    let sandboxed = cfg.judge_checks.iter().any(|k| k == "tests")
        || cfg.judge_tools.iter().any(|t| t == "python" || t == "run_unit_tests");
    if !sandboxed {
        return Ok(arbor_tools::builtin::pure_tools(timeout));
    }
    arbor_tools::builtin::sandboxed_tools(timeout)
        .map_err(|e| format!("judge_checks \"tests\" and the judge tools python / run_unit_tests need the sandbox: {e}"))
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

    /// Code candidates run against the item's tests in the sandbox (bubblewrap; .ci/run installs
    /// it): a passing one is clean, a wrong one and one that does not load each fail the check.
    #[tokio::test]
    async fn code_runs_against_the_items_tests() {
        let cfg = SynthConfig { judge_checks: vec!["tests".into()], ..SynthConfig::default() };
        let tools = registry(&cfg, std::time::Duration::from_secs(30)).unwrap();
        let mut metadata = serde_json::Map::new();
        metadata.insert("tests".into(), json!(["assert double(2) == 4", "assert double(0) == 0"]));
        let item = Item { index: 0, id: "c".into(), messages: vec![Message::user("Write double(x).")], reference: None, metadata };
        let cands = [
            "Here:\n```python\ndef double(x):\n    return 2 * x\n```",
            "```python\ndef double(x):\n    return x + 2\n```",
            "def double(x) return 2 * x",
        ]
        .map(String::from);
        let (found, calls) = run(&tools, &cfg, &item, &cands).await;
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(found[0].failed.is_empty() && found[0].summary == "all 2 tests pass", "{found:?}");
        assert_eq!(found[1].failed, vec!["tests: 1 of 2 tests pass".to_string()]);
        assert!(found[2].failed.len() == 1 && found[2].summary.starts_with("the code did not run"), "{found:?}");
        // An item without tests is not checked.
        let plain = Item { metadata: Default::default(), ..item };
        assert!(run(&tools, &cfg, &plain, &cands).await.1.is_empty());
    }
}
