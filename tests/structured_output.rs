//! Structured output from the embedded model: answers to arbor synth's own judge, reward and
//! optimizer schemas, asked with synth's own prompts about GSM8K problems and sampled at
//! temperature 1, all parse and validate — checked by the jsonschema crate, not by the grammar
//! that constrained them. Catches: a mask that lets a schema-breaking token through, an answer
//! left open at `max_tokens` (the closing must be written), a role whose schema the backend
//! ignores.
use std::sync::Arc;

use arbor_core::Message;
use arbor_llm::{FinishReason, LanguageModel, LlmRequest, SamplingParams};
use arbor_model::EmbeddedBackend;
use arbor_synth::{prompts::render, schemas, SynthConfig};
use minijinja::context;
use serde_json::Value;

/// Answers asked for: `ARBOR_STRUCTURED_ANSWERS` (default 20, which CI runs in ~4 minutes; the
/// 200 of docs/benchmarks.md take the embedded model most of an hour on 2 cores), split judge
/// (2–4 candidates) 50%, reward 30%, optimizer 20%.
fn counts() -> (usize, usize, usize) {
    let total: usize = std::env::var("ARBOR_STRUCTURED_ANSWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let judge = total / 2;
    let reward = total * 3 / 10;
    (judge, reward, total - judge - reward)
}

fn problems(n: usize) -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gsm8k/test.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let answer = v["answer"].as_str().unwrap().to_string();
            (v["question"].as_str().unwrap().to_string(), answer)
        })
        .collect()
}

/// The reference solution with its final number changed: a wrong candidate.
fn wrong(answer: &str) -> String {
    let (work, last) = answer.rsplit_once("####").unwrap_or((answer, "0"));
    let n: i64 = last.trim().replace(',', "").parse().unwrap_or(0);
    format!("{work}#### {}", n + 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_answers_to_synth_schemas_all_parse_and_validate() {
    let backend: Arc<dyn LanguageModel> = Arc::new(EmbeddedBackend::load_default(None).unwrap());
    let cfg = SynthConfig::default();
    let (judges, rewards, optimizers) = counts();
    let defaults = arbor_synth::prompts::PromptPair::initial();
    let mut asks: Vec<(&str, Value, LlmRequest)> = Vec::new();
    let ask = |role: &'static str, user: String, schema: Value, max_tokens: Option<u32>, i: usize| {
        let params = SamplingParams {
            temperature: Some(1.0),
            seed: Some(i as u64),
            max_tokens,
            json_schema: Some(schema.clone()),
            ..Default::default()
        };
        (role, schema, LlmRequest::chat("embedded", vec![Message::user(user)]).with_params(params))
    };
    for (i, (q, a)) in problems(judges).into_iter().enumerate() {
        let bad = wrong(&a);
        let mut cands = vec![a.clone(), bad.clone(), "I am not sure.".to_string(), a.replace("####", "So the answer is")];
        cands.truncate(2 + i % 3);
        let user = render("judge", context! { instructions => defaults.judge.text, prompt => q, reference => "", candidates => cands, tools => Vec::<String>::new() });
        asks.push(ask("judge", user, schemas::judge(cands.len(), cfg.judge.max_tokens), cfg.judge.max_tokens, i));
        if i < rewards {
            let user = render("reward", context! { prompt => q, reference => "", chosen => a, rejected => bad });
            asks.push(ask("reward", user, schemas::reward(cfg.reward.max_tokens), cfg.reward.max_tokens, i));
        }
        if i < optimizers {
            let user = render("optimizer", context! { target_prompt => defaults.target.text, judge_prompt => defaults.judge.text, task => q,
                chosen => a, rejected => bad, rationale => "The first answer is right.", reward_score => 8, critique => "Clear." });
            asks.push(ask("optimizer", user, schemas::optimizer(cfg.optimizer.max_tokens), cfg.optimizer.max_tokens, i));
        }
    }
    let total = judges + rewards + optimizers;
    assert_eq!(asks.len(), total);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (role, schema, req) in asks {
        let b = backend.clone();
        tasks.spawn(async move { (role, schema, b.generate(&req).await) });
    }
    let (mut cut, mut tokens, mut failures, mut done) = (0, 0, Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        let (role, schema, c) = r.unwrap();
        let c = c.unwrap_or_else(|e| panic!("{role}: {e}"));
        done += 1;
        if done % 10 == 0 {
            eprintln!("{done}/{total} answers after {:.0} s", started.elapsed().as_secs_f64());
        }
        tokens += c.usage.completion_tokens;
        let ch = &c.choices[0];
        cut += usize::from(ch.finish_reason == FinishReason::Length);
        let check = arbor_checks::format::check_json_schema(&ch.text, &schema).unwrap();
        if !check.valid {
            failures.push(format!("{role}: {:?}: {:?}", ch.text, check.errors));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{total} answers, {tokens} tokens in {secs:.0} s ({:.1} tok/s), {cut} at max_tokens", tokens as f64 / secs);
    assert!(failures.is_empty(), "{} of {total} answers do not validate:\n{}", failures.len(), failures.join("\n"));
}

/// `arbor synth` with no server at all: target and judge on the embedded model, on four GSM8K
/// problems, no repairs allowed. Catches: the backend ignoring the roles' schemas (the judge's
/// free text would not read: dead letters), or answers cut open. One order only: SmolLM2-135M
/// as a judge scores by position ([1, 2] in both orders), so both orders tie every pair.
#[test]
fn synth_on_the_embedded_model_alone_makes_pairs_without_parse_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, cfg) = (dir.path().join("in.jsonl"), dir.path().join("out"), dir.path().join("synth.toml"));
    let rows: Vec<String> = problems(4)
        .into_iter()
        .map(|(q, a)| serde_json::json!({"prompt": q, "reference": a.rsplit("####").next().unwrap().trim()}).to_string())
        .collect();
    std::fs::write(&input, rows.join("\n") + "\n").unwrap();
    std::fs::write(&cfg, "json_repairs = 0\nboth_orders = false\n[target]\nmax_tokens = 160\n").unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_arbor"))
        .args(["synth", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--config", cfg.to_str().unwrap(), "--candidates", "2", "--rounds", "1", "--no-gate", "--seed", "3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let lines = |f: &str| -> Vec<Value> {
        std::fs::read_to_string(out.join(f))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let journal = lines("journal.jsonl");
    assert_eq!(journal.len(), 4, "every item ends: {stderr}");
    let dead: Vec<&Value> = journal.iter().filter(|r| r["status"] == "dead").collect();
    assert!(dead.is_empty(), "no answer may fail to read (no repairs allowed): {dead:?}");
    let pairs = lines("pairs.jsonl");
    assert!(!pairs.is_empty(), "four problems, two candidates each, and not one pair: {stderr}");
}
