//! `arbor bench judge`: how often arbor synth's judge picks the better answer. A labelled set
//! from GSM8K test: each problem's reference solution against the same solution with its last
//! result changed and carried to the final answer (one arithmetic slip). Each judge setup scores
//! every pair with synth's own judge (`arbor_synth::jury::judge`), the correct answer shown
//! first for even problems and second for odd ones; the figures are accuracy (the correct
//! answer scored higher), ties, and position consistency (the same ranking in both orders).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_core::Message;
use arbor_llm::{ModelOpener, ModelSpec};
use arbor_synth::config::{JuryAggregate, RoleConfig, SynthConfig, ToolUse};
use arbor_synth::game::{Players, RoleModel};
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
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
}

/// One labelled pair: the problem, its answer, a correct and a wrong solution.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub question: String,
    pub answer: String,
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
    })
}

/// The judge setups compared: (name, reference shown to the judge, config).
fn setups(judge: &RoleConfig) -> Vec<(&'static str, bool, SynthConfig)> {
    let base = SynthConfig { judge: judge.clone(), candidates: 2, ..Default::default() };
    let one_order = SynthConfig { both_orders: false, tool_use: ToolUse::None, ..base.clone() };
    let both = SynthConfig { tool_use: ToolUse::None, ..base.clone() };
    let calculator = SynthConfig { judge_tools: vec!["calculator".into()], ..base.clone() };
    let jury = SynthConfig { judges: vec![judge.clone(), judge.clone()], jury_aggregate: JuryAggregate::Majority, tool_use: ToolUse::None, ..base.clone() };
    vec![
        ("self-judge, one order, no tools", false, one_order),
        ("both orders (disagreement = tie), no tools", false, both),
        ("both orders + calculator", false, calculator),
        ("both orders + calculator + verifier, reference shown", true, base),
        ("jury of 3 samples (majority), both orders, no tools", false, jury),
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
}

pub async fn run(a: JudgeBenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.gsm8k).map_err(|e| anyhow::anyhow!("{}: {e}", a.gsm8k.display()))?;
    let set: Vec<Labelled> = text
        .lines()
        .enumerate()
        .filter_map(|(k, l)| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            labelled(v["question"].as_str()?, v["answer"].as_str()?, k)
        })
        .take(a.pairs)
        .collect();
    let opener = arbor_model::Models::new(None);
    let spec = ModelSpec { url: a.url.as_ref().map(|u| u.to_string()), model: a.model.clone(), max_in_flight: Some(a.concurrency), timeout_secs: Some(600.0) };
    let (model, name) = opener.open(&spec).await?;
    let role = RoleModel { model, name: name.clone(), config: RoleConfig { max_tokens: Some(a.max_tokens), temperature: Some(0.7), ..Default::default() } };
    println!("judge: {name}; {} GSM8K test pairs (reference solution vs. the same with its final result off)", set.len());
    println!("| setup | accuracy | wrong | ties | failed | position-consistent | seconds |\n| --- | --- | --- | --- | --- | --- | --- |");
    for (setup, reference, cfg) in setups(&role.config) {
        let players = Arc::new(Players {
            target: role.clone(),
            judge: role.clone(),
            jury: cfg.judges.iter().map(|_| role.clone()).collect(),
            reward: role.clone(),
            optimizer: role.clone(),
            tools: arbor_tools::builtin::pure_tools(Duration::from_secs(10)),
        });
        let started = Instant::now();
        let limit = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
        let mut runs = tokio::task::JoinSet::new();
        for (i, l) in set.iter().cloned().enumerate() {
            let (players, cfg, limit) = (players.clone(), cfg.clone(), limit.clone());
            runs.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let item = Item { index: i, id: format!("gsm8k-test-{i}"), messages: vec![Message::user(&l.question)], reference: reference.then(|| l.answer.clone()), metadata: Default::default() };
                // The correct answer first for even problems, second for odd ones.
                let (cands, right) = if i % 2 == 0 { (vec![l.correct, l.wrong], 0) } else { (vec![l.wrong, l.correct], 1) };
                let j = arbor_synth::jury::judge(&players, &cfg, &item, &PromptPair::initial(), &cands, 0).await;
                (j, right)
            });
        }
        let mut t = Tally::default();
        while let Some(r) = runs.join_next().await {
            let (j, right) = r?;
            let Ok(j) = j else {
                t.failed += 1;
                continue;
            };
            t.judged += 1;
            t.consistent += usize::from(j.rankings_agree);
            let (s_right, s_wrong) = (j.scores[right], j.scores[1 - right]);
            // Orders that disagree are a tie, whatever their averaged scores say.
            if !j.rankings_agree || s_right == s_wrong {
                t.ties += 1;
            } else if s_right > s_wrong {
                t.right += 1;
            } else {
                t.wrong += 1;
            }
        }
        let n = set.len().max(1) as f64;
        let consistency = if cfg.both_orders { format!("{:.1}%", 100.0 * t.consistent as f64 / t.judged.max(1) as f64) } else { "-".into() };
        println!("| {setup} | {:.1}% | {:.1}% | {:.1}% | {} | {consistency} | {:.0} |", 100.0 * t.right as f64 / n, 100.0 * t.wrong as f64 / n, 100.0 * t.ties as f64 / n, t.failed, started.elapsed().as_secs_f64());
    }
    Ok(())
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
