//! `arbor bench judge`: how often arbor synth's judge picks the better answer. Labelled sets
//! from GSM8K test, each problem's reference solution against a wrong one: `slips`, the same
//! solution with its last result changed and carried to the final answer (one arithmetic slip);
//! `model`, a solution the judged model itself wrote whose final answer is wrong; and `code`, the
//! code tasks' passing and failing solutions (environments/code), whose check runs the task's
//! tests in the sandbox. Each judge setup
//! scores every pair with synth's own judge (`arbor_synth::jury::judge`), the correct answer shown
//! first for even problems and second for odd ones; the figures are accuracy (the correct answer
//! scored higher), ties, position consistency (the same ranking in both orders), the tools the
//! model called itself, and for synth's default judge the reward gate's precision (of the pairs
//! it lets through, the share whose chosen answer is the correct one).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_core::Message;
use arbor_llm::{ModelOpener, ModelSpec};
use arbor_synth::config::{JuryAggregate, RoleConfig, SynthConfig, ToolUse};
use arbor_synth::game::{ranking, Players, RoleModel};
use arbor_synth::input::Item;
use arbor_synth::prompts::PromptPair;

#[derive(clap::Args)]
pub struct JudgeBenchArgs {
    /// The judge's server (OpenAI-compatible); without it, the embedded model.
    #[arg(long)]
    url: Option<url::Url>,
    #[arg(long)]
    model: Option<String>,
    /// Labelled pairs (the first N GSM8K test problems).
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[arg(long, default_value = "../shared/data/gsm8k/test.jsonl")]
    gsm8k: PathBuf,
    /// The code environment's directory (tasks.jsonl and solutions.jsonl) for the `code` set.
    #[arg(long, default_value = "environments/code")]
    code: PathBuf,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Labelled sets: `slips` (reference vs. a carried arithmetic slip), `model` (reference vs.
    /// the judged model's own wrong solution, sampled until one is wrong), `code` (a passing vs.
    /// a failing solution of each code task).
    #[arg(long, value_delimiter = ',', default_value = "slips,model")]
    sets: Vec<String>,
    /// Judge runs to make (all when empty): 1 no tools (table rows 1-2), 2 tools offered
    /// (row 3), 3 arithmetic check (rows 4-5), 4 synth's default (row 6), 5 jury (row 7).
    #[arg(long, value_delimiter = ',')]
    setups: Vec<usize>,
}

/// One labelled pair: the problem, its answer (or for code, its unit tests), a correct and a
/// wrong solution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labelled {
    pub question: String,
    pub answer: String,
    pub tests: Vec<String>,
    pub correct: String,
    pub wrong: String,
}

/// The reference solution as plain text (calculator annotations `<<…>>` dropped, the answer
/// line spelled out), and a wrong twin: the last number of the working and the final answer
/// both off by `1 + k % 7`, as a slip carried through would leave them.
pub fn labelled(question: &str, solution: &str, k: usize) -> Option<Labelled> {
    let (working, answer) = solution.rsplit_once("####")?;
    let answer = answer.trim().replace(',', "");
    let value: i64 = answer.parse().ok()?;
    let plain: String = working.split("<<").enumerate().map(|(i, part)| if i == 0 { part } else { part.split_once(">>").map_or(part, |p| p.1) }).collect();
    let plain = plain.trim();
    let slip = value + 1 + (k % 7) as i64;
    // The last occurrence of the answer in the working is the result that carried it.
    let wrong_working = match plain.rfind(&answer) {
        Some(at) => format!("{}{slip}{}", &plain[..at], &plain[at + answer.len()..]),
        None => plain.to_string(),
    };
    Some(Labelled {
        question: question.to_string(),
        answer: answer.clone(),
        correct: format!("{plain}\nThe answer is {value}."),
        wrong: format!("{wrong_working}\nThe answer is {slip}."),
        tests: Vec::new(),
    })
}

/// The `code` set: each task's prompt (with its example) and tests, its passing and failing
/// solution from `solutions.jsonl` (arbor-checks' tests hold them to that).
fn code_pairs(dir: &std::path::Path) -> anyhow::Result<Vec<Labelled>> {
    let read = |name: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        text.lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1)))
            .collect()
    };
    let (tasks, solutions) = (read("tasks.jsonl")?, read("solutions.jsonl")?);
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("{}: field `{k}` missing", v["id"]));
    tasks
        .iter()
        .map(|t| {
            let sol = solutions.iter().find(|s| s["id"] == t["id"]).ok_or_else(|| anyhow::anyhow!("solutions.jsonl: no solutions for {}", t["id"]))?;
            Ok(Labelled {
                question: format!("{}\nExample: {}", field(t, "prompt")?, field(t, "example")?),
                answer: String::new(),
                tests: serde_json::from_value(t["tests"].clone())?,
                correct: field(sol, "correct")?,
                wrong: field(sol, "wrong")?,
            })
        })
        .collect()
}

/// How a run's judgements are read: as synth uses them, from the forward order alone (a
/// one-order judge: the same calls), or with the checks' penalty added back (the evidence shown,
/// the verdict left to the model: the same calls too).
#[derive(Clone, Copy, PartialEq)]
enum View {
    Final,
    FirstOrder,
    Unpenalized,
}

/// The judge runs compared: (reference shown to the judge, or for code the tests given to the
/// checks; config; its rows: (name, view)). The fourth is `arbor synth`'s default judge (for code,
/// with the unit-test check); its pairs also go to the reward gate.
type Setup = (bool, SynthConfig, Vec<(&'static str, View)>);

fn setups(judge: &RoleConfig, code: bool) -> Vec<Setup> {
    let base = SynthConfig { judge: judge.clone(), candidates: 2, ..Default::default() };
    let bare = SynthConfig { tool_use: ToolUse::None, judge_checks: vec![], ..base.clone() };
    let jury = (false, SynthConfig { judges: vec![judge.clone(), judge.clone()], jury_aggregate: JuryAggregate::Majority, ..bare.clone() }, vec![("jury of 3 samples (majority), both orders, no tools", View::Final)]);
    let first = (false, bare.clone(), vec![("self-judge, one order, no tools", View::FirstOrder), ("both orders (disagreement = tie), no tools", View::Final)]);
    if code {
        let tests = vec!["tests".to_string()];
        let offered = SynthConfig { judge_tools: vec!["python".into()], ..base };
        return vec![
            first,
            (true, SynthConfig { judge_checks: vec![], ..offered.clone() }, vec![("both orders, python offered to the model", View::Final)]),
            (
                true,
                SynthConfig { judge_checks: tests.clone(), ..bare },
                vec![("both orders, test results shown to the model, verdict left to it", View::Unpenalized), ("both orders, unit-test check (penalty 10)", View::Final)],
            ),
            (true, SynthConfig { judge_checks: tests, ..offered }, vec![("both orders, python offered, unit-test check", View::Final)]),
            jury,
        ];
    }
    vec![
        first,
        (true, SynthConfig { judge_checks: vec![], ..base.clone() }, vec![("both orders, tools offered to the model (calculator, verify_answer), reference shown", View::Final)]),
        (
            false,
            SynthConfig { judge_checks: vec!["arithmetic".into()], ..bare },
            vec![("both orders, arithmetic check shown to the model, verdict left to it", View::Unpenalized), ("both orders, arithmetic check (penalty 10), no reference", View::Final)],
        ),
        (true, base, vec![("synth's default: both orders, tools offered, arithmetic + answer checks, reference shown", View::Final)]),
        jury,
    ]
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    right: usize,
    wrong: usize,
    ties: usize,
    failed: usize,
    consistent: usize,
    judged: usize,
    /// Tool calls the judge model made itself (the checks' own calls not counted).
    model_calls: usize,
    /// Reward gate: pairs let through, and of those with the correct answer chosen.
    gated: usize,
    gated_right: usize,
}

/// One judged pair: the judgement (or none when it failed), which candidate was correct, and
/// with the gate: (let through, chose the correct answer).
type Judged = (Option<arbor_synth::game::Judgement>, usize, Option<(bool, bool)>);

/// `check_calls`: the tool calls per pair the checks make themselves (not the model's).
fn tally(results: &[Judged], view: View, penalty: f64, check_calls: usize) -> Tally {
    let mut t = Tally::default();
    for (j, right, verdict) in results {
        let Some(j) = j else {
            t.failed += 1;
            continue;
        };
        t.judged += 1;
        t.model_calls += j.tool_calls.len().saturating_sub(check_calls);
        if let Some((true, chose_right)) = verdict {
            t.gated += 1;
            t.gated_right += usize::from(*chose_right);
        }
        let unpenalize = |o: &Vec<f64>| -> Vec<f64> { o.iter().zip(&j.checks).map(|(s, c)| s + penalty * c.failed.len() as f64).collect() };
        let (scores, agree) = match view {
            View::Final => (j.scores.clone(), j.rankings_agree),
            View::FirstOrder => (j.orders[0].clone(), true),
            View::Unpenalized => {
                let orders: Vec<Vec<f64>> = j.orders.iter().map(unpenalize).collect();
                let agree = orders.iter().all(|o| ranking(o) == ranking(&orders[0]));
                (unpenalize(&j.scores), agree)
            }
        };
        t.consistent += usize::from(agree);
        let (s_right, s_wrong) = (scores[*right], scores[1 - *right]);
        // Orders that disagree are a tie, whatever their averaged scores say.
        if !agree || s_right == s_wrong {
            t.ties += 1;
        } else if s_right > s_wrong {
            t.right += 1;
        } else {
            t.wrong += 1;
        }
    }
    t
}

fn gsm8k(path: &std::path::Path, n: usize) -> anyhow::Result<Vec<Labelled>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(k, l)| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            labelled(v["question"].as_str()?, v["answer"].as_str()?, k)
        })
        .take(n)
        .collect())
}

/// The `model` set: each problem's reference against a solution `role` wrote itself whose final
/// answer is wrong (up to 8 samples; problems it always solves are left out).
async fn model_wrong(role: &RoleModel, set: &[Labelled], concurrency: usize) -> Vec<Labelled> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut runs = tokio::task::JoinSet::new();
    for (i, l) in set.iter().cloned().enumerate() {
        let (model, name, limit) = (role.model.clone(), role.name.clone(), limit.clone());
        runs.spawn(async move {
            let _permit = limit.acquire_owned().await;
            for attempt in 0..8u64 {
                let mut req = arbor_llm::LlmRequest::chat(&name, vec![Message::user(format!("{}\nSolve it step by step and end with \"The answer is N.\"", l.question))]);
                req.params.max_tokens = Some(384);
                req.params.temperature = Some(0.8);
                req.params.seed = Some(1000 * i as u64 + attempt);
                let Ok(out) = model.generate(&req).await else { continue };
                let text = out.text().trim().to_string();
                if !text.is_empty() && !arbor_checks::verifier::verify(&text, &l.answer).correct {
                    return Some((i, Labelled { wrong: text, ..l }));
                }
            }
            None
        });
    }
    let mut out: Vec<(usize, Labelled)> = runs.join_all().await.into_iter().flatten().collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, l)| l).collect()
}

pub async fn run(a: JudgeBenchArgs) -> anyhow::Result<()> {
    let slips = gsm8k(&a.gsm8k, a.pairs)?;
    let opener = arbor_model::Models::new(None);
    let spec = ModelSpec { url: a.url.as_ref().map(|u| u.to_string()), model: a.model.clone(), max_in_flight: Some(a.concurrency), timeout_secs: Some(600.0) };
    let (model, name) = opener.open(&spec).await?;
    let role = RoleModel { model, name: name.clone(), config: RoleConfig { max_tokens: Some(a.max_tokens), temperature: Some(0.7), ..Default::default() } };
    for set_name in &a.sets {
        let started = Instant::now();
        let (set, what) = match set_name.as_str() {
            "slips" => (slips.clone(), "reference solution vs. the same with its last result off, carried to the answer"),
            "model" => (model_wrong(&role, &slips, a.concurrency).await, "reference solution vs. the judged model's own wrong solution"),
            "code" => (code_pairs(&a.code)?, "code tasks: a solution passing every test vs. one failing some"),
            other => anyhow::bail!("--sets: unknown set `{other}` (slips, model, code)"),
        };
        let code = set_name == "code";
        println!("\njudge: {name}; set `{set_name}`: {} pairs ({what}; built in {:.0} s)", set.len(), started.elapsed().as_secs_f64());
        println!("| # | setup | accuracy | wrong | ties | failed | position-consistent | model tool calls / pair | gate passes (precision) | seconds |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut row = 0;
        for (k, (reference, cfg, rows)) in setups(&role.config, code).into_iter().enumerate() {
            let gate = k == 3;
            if !a.setups.is_empty() && !a.setups.contains(&(k + 1)) {
                row += rows.len();
                continue;
            }
            let started = Instant::now();
            let results = judge_set(&role, &set, reference, &cfg, a.concurrency, gate).await?;
            let seconds = started.elapsed().as_secs_f64();
            for (name, view) in rows {
                row += 1;
                let check_calls = 2 * cfg.judge_checks.iter().filter(|k| *k != "answer" || reference).count();
                let t = tally(&results, view, cfg.check_penalty, check_calls);
                let n = set.len().max(1) as f64;
                let pct = |x: usize| format!("{:.1}%", 100.0 * x as f64 / n);
                let consistency = if view == View::FirstOrder { "-".into() } else { format!("{:.1}%", 100.0 * t.consistent as f64 / t.judged.max(1) as f64) };
                let gate = if gate { format!("{} ({:.1}%)", t.gated, 100.0 * t.gated_right as f64 / t.gated.max(1) as f64) } else { "-".into() };
                println!("| {row} | {name} | {} | {} | {} | {} | {consistency} | {:.2} | {gate} | {seconds:.0} |", pct(t.right), pct(t.wrong), pct(t.ties), t.failed, t.model_calls as f64 / n);
            }
        }
    }
    Ok(())
}

/// Judges every pair of `set` under `cfg`; with `gate`, each judged pair also goes to the reward
/// gate (chosen: the higher-scored answer).
async fn judge_set(role: &RoleModel, set: &[Labelled], reference: bool, cfg: &SynthConfig, concurrency: usize, gate: bool) -> anyhow::Result<Vec<Judged>> {
    let players = Arc::new(Players {
        target: role.clone(),
        judge: role.clone(),
        jury: cfg.judges.iter().map(|_| role.clone()).collect(),
        reward: role.clone(),
        optimizer: role.clone(),
        tools: arbor_synth::checks::registry(cfg, Duration::from_secs(30)).map_err(anyhow::Error::msg)?,
    });
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut runs = tokio::task::JoinSet::new();
    for (i, l) in set.iter().cloned().enumerate() {
        let (players, cfg, limit) = (players.clone(), cfg.clone(), limit.clone());
        runs.spawn(async move {
            let _permit = limit.acquire_owned().await;
            // For code the "reference" is the task's tests, which only the checks read.
            let code = !l.tests.is_empty();
            let mut metadata = serde_json::Map::new();
            if code && reference {
                metadata.insert("tests".into(), serde_json::json!(l.tests));
            }
            let item = Item { index: i, id: format!("pair-{i}"), messages: vec![Message::user(&l.question)], reference: (reference && !code).then(|| l.answer.clone()), metadata };
            // The correct answer first for even problems, second for odd ones.
            let (cands, right) = if i % 2 == 0 { (vec![l.correct, l.wrong], 0) } else { (vec![l.wrong, l.correct], 1) };
            let j = arbor_synth::jury::judge(&players, &cfg, &item, &PromptPair::initial(), &cands, 0).await;
            let verdict = match (&j, gate) {
                (Ok(j), true) if j.scores[0] != j.scores[1] => {
                    let chosen = usize::from(j.scores[1] > j.scores[0]);
                    players.reward(&cfg, &item, &cands[chosen], &cands[1 - chosen], 0).await.ok().map(|v| (v.score >= cfg.threshold, chosen == right))
                }
                _ => None,
            };
            (j, right, verdict)
        });
    }
    let mut results = Vec::with_capacity(set.len());
    while let Some(r) = runs.join_next().await {
        let (j, right, verdict) = r?;
        results.push((j.ok(), right, verdict));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrong_twin_differs_in_the_carried_result_only() {
        let l = labelled("q", "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", 2).unwrap();
        assert_eq!(l.correct, "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\nThe answer is 18.");
        assert_eq!(l.wrong, "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $21 every day.\nThe answer is 21.");
        assert_eq!(l.answer, "18");
        assert!(labelled("q", "no answer line", 0).is_none());
    }
}
