//! The learning test: `arbor loop` makes a tiny Llama better, iteration after iteration.
//!
//! π_0 is a 2-layer Llama (d = 64, a 512-token BPE learned from the task text) fine-tuned on 600
//! reference solutions of the one-step math generator, under-trained on purpose. Each loop
//! searches 1,000 fresh tasks per iteration with MCTS (width 4, 8 iterations) using the current
//! policy, exports the trees in its algorithm's format, trains, and evaluates greedily on the
//! same 800 held-out tasks. Every asserted gain is paired on those tasks: McNemar's
//! z = (wins − losses) / √(wins + losses) ≥ 2 against the previous iteration, which a loss that
//! does not learn (zero or reversed gradient, a resume that trains nothing) reaches with
//! probability ≈ 2%, and which the measured gains clear by a wide margin (docs/benchmarks.md).
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::arbor;
use serde_json::{json, Value};

const ENV_TOML: &str =
    "max_episode_steps = 3\n[generator]\nmin_steps = 1\nmax_steps = 1\nmax_value = 10\n";

const LOOP_TOML: &str = r#"
env = "math"
tasks_per_iteration = 1000
eval_tasks = 800
eval_seed = 999
concurrency = 16
seed = 2
[environment]
max_episode_steps = 3
[environment.generator]
min_steps = 1
max_steps = 1
max_value = 10
[search]
algo = "mcts"
iterations = 8
width = 4
[policy]
kind = "llm"
[evaluator]
kind = "terminal"
"#;

/// OREO's training per iteration, and the iterations whose gain is asserted (see
/// docs/benchmarks.md for what was measured).
/// OREO's second iteration moved few answers in the measurements (6 won, 6 lost at lr 3e-4; 11
/// and 9 at lr 1e-3), so only its first gain is asserted.
const OREO_TRAIN: &str = "algo = \"oreo\"\nmax_steps = 400\nbatch_size = 16\nlr = 3e-4\nvalue_lr = 1e-3\n";
const OREO_GAINS_THROUGH: usize = 1;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// π_0, built once for every test of this file.
fn start() -> &'static Path {
    static START: OnceLock<PathBuf> = OnceLock::new();
    START.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("loop-learning");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("env.toml"), ENV_TOML).unwrap();
        let (ok, out, err) = arbor(&["env", "sample", "--env", "math", "--config", s(&d.join("env.toml")), "--n", "600", "--seed", "1"]);
        assert!(ok, "{err}");
        let tasks: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let corpus: String = tasks.iter().map(|t| format!("You solve math word problems step by step. Write one short step per line. Finish with a line \"The answer is N\". {} {}\n", t["prompt"].as_str().unwrap(), t["solution"].as_str().unwrap().replace('\n', " "))).collect();
        std::fs::write(d.join("corpus.txt"), corpus).unwrap();
        // Reference solutions as step data (a `tree_id` marks rows rendered in the step prompt
        // that the loop searches and evaluates with, not in the chat template).
        let sft: String = tasks.iter().map(|t| json!({"messages": [{"role": "user", "content": t["prompt"]}, {"role": "assistant", "content": t["solution"]}], "tree_id": "reference"}).to_string() + "\n").collect();
        std::fs::write(d.join("sft.jsonl"), sft).unwrap();
        let tiny = d.join("tiny");
        let (ok, _, err) = arbor(&["model", "init", "--out", s(&tiny), "--corpus", s(&d.join("corpus.txt")), "--vocab-size", "512", "--seed", "0"]);
        assert!(ok, "{err}");
        let pi0 = d.join("pi0");
        let (ok, _, err) = arbor(&["train", "--algo", "sft", "--data", s(&d.join("sft.jsonl")), "--model", s(&tiny), "--out", s(&pi0), "--epochs", "8", "--batch-size", "16", "--lr", "3e-3", "--quiet"]);
        assert!(ok, "{err}");
        pi0
    })
}

/// Runs the loop with `train` as its `[train]` table for `iterations`; returns the report's
/// iterations after printing its table.
fn run_loop(name: &str, train: &str, iterations: usize) -> Vec<Value> {
    let pi0 = start();
    let d = pi0.parent().unwrap();
    let cfg = d.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("{LOOP_TOML}[train]\n{train}")).unwrap();
    let out = d.join(name);
    let (ok, table, err) = arbor(&["loop", "--model", s(pi0), "--config", s(&cfg), "--iterations", &iterations.to_string(), "--out", s(&out)]);
    assert!(ok, "{err}");
    eprintln!("{name}:\n{table}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    r["iterations"].as_array().unwrap().clone()
}

/// Each iteration from 1 to `through` raised held-out accuracy over the one before, paired.
fn assert_each_iteration_gains(name: &str, its: &[Value], through: usize) {
    for t in 1..=through {
        let p = &its[t]["vs_previous"];
        let z = p["z"].as_f64().unwrap();
        assert!(
            z >= 2.0,
            "{name}: iteration {t} did not raise accuracy over iteration {}: {:.4} -> {:.4}, paired {p}",
            t - 1,
            its[t - 1]["accuracy"],
            its[t]["accuracy"]
        );
    }
}

#[test]
fn rejection_sampling_raises_accuracy_twice() {
    let its = run_loop("sft", "algo = \"sft\"\nepochs = 8\nbatch_size = 16\nlr = 1e-3\n", 2);
    assert_each_iteration_gains("rejection sampling", &its, 2);
}

#[test]
fn dpo_with_nll_raises_accuracy_twice() {
    // The NLL term of Iterative RPO: plain DPO lowers accuracy here (docs/benchmarks.md). The
    // second gain is the one that moves with the machine's float path: at 6 epochs it was
    // z 2.6 and 3.0 on two machines and 1.1 on a third (docs/benchmarks.md); 10 epochs, as
    // rejection sampling trains enough to make its second iteration pay, gave z 3.9 there.
    let its = run_loop("dpo", "algo = \"dpo\"\nepochs = 10\nbatch_size = 8\nlr = 1e-3\n[train.dpo]\nnll_weight = 1.0\n", 2);
    assert_each_iteration_gains("DPO+NLL", &its, 2);
}

#[test]
fn tpo_with_nll_raises_accuracy_over_the_start() {
    // With the NLL term of the top-ranked response: plain TPO lowered accuracy (11.9% → 9.9%).
    let its = run_loop("tpo", "algo = \"tpo\"\nepochs = 6\nbatch_size = 8\nlr = 3e-4\n[train.dpo]\nnll_weight = 1.0\n", 1);
    assert_each_iteration_gains("TPO", &its, 1);
}

/// OREO raises accuracy, carries its critic to the next iteration, and the critic is measured
/// (AUC, value-guided search against sampling); the OREO output also serves `arbor eval
/// --search value-beam` and `arbor search --evaluator learned`.
#[test]
fn oreo_raises_accuracy_and_its_critic_is_measured() {
    let its = run_loop("oreo", OREO_TRAIN, 2);
    assert_each_iteration_gains("OREO", &its, OREO_GAINS_THROUGH);
    for it in &its[1..] {
        let auc = it["critic_auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{it}");
        for k in ["value_beam_accuracy", "best_of_k_accuracy", "majority_of_k_accuracy", "sample_accuracy"] {
            assert!(it[k].is_f64(), "{k}: {it}");
        }
    }
    let d = start().parent().unwrap();
    let oreo = d.join("oreo/iter-1/model");
    let (ok, out, err) = arbor(&["eval", "--env", "math", "--env-config", s(&d.join("env.toml")), "--model", s(&oreo), "--search", "value-beam", "--width", "3", "--n", "40", "--seed", "999"]);
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["errors"], 0, "{r}");
    let lt = d.join("learned-trees");
    let (ok, _, err) = arbor(&["search", "--env", "math", "--env-config", s(&d.join("env.toml")), "--trees", "4", "--seed", "7", "--algo", "beam", "--gguf", s(&oreo), "--evaluator", "learned", "--value", s(&oreo.join("value")), "--out", s(&lt)]);
    assert!(ok, "{err}");
    let trees = std::fs::read_to_string(lt.join("trees.jsonl")).unwrap();
    assert_eq!(trees.lines().count(), 4);
    // The critic's V(s) on the inner states: under terminal-only values they would all be 0.
    let inner: Vec<f64> = trees
        .lines()
        .flat_map(|l| serde_json::from_str::<Value>(l).unwrap()["nodes"].as_array().unwrap().clone())
        .filter(|n| n["terminal"] == false && n["depth"].as_u64() > Some(0))
        .filter_map(|n| n["eval"]["value_estimate"].as_f64())
        .collect();
    assert!(!inner.is_empty() && inner.iter().any(|v| *v != 0.0), "the critic's values are not on the nodes: {inner:?}");
}
