//! Environments end to end: the GSM8K loader on the real file, code tasks scored in the
//! sandbox, and the shipped config files matching the compiled defaults.
use std::path::PathBuf;

use arbor_envs::{by_name, math};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn gsm8k_loads_every_test_problem() {
    let path = repo().join("../shared/data/gsm8k/test.jsonl");
    let tasks = math::load_gsm8k(&path)
        .unwrap_or_else(|e| panic!("{e} (../shared must sit beside the repository)"));
    assert_eq!(tasks.len(), 1319);
    assert!(tasks.iter().all(|t| t
        .reference
        .as_deref()
        .is_some_and(|r| r.parse::<f64>().is_ok())));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("math.toml");
    std::fs::write(&cfg, format!("gsm8k = {:?}\n", path.display().to_string())).unwrap();
    let env = by_name("math", Some(&cfg)).unwrap();
    let sample = env.sample(5, 3).unwrap();
    assert_eq!(sample.len(), 5);
    assert_eq!(sample, env.sample(5, 3).unwrap());
}

#[tokio::test]
async fn code_tasks_are_scored_by_hidden_tests() {
    let env = by_name("code", None).unwrap();
    let task = env
        .sample(12, 0)
        .unwrap()
        .into_iter()
        .find(|t| t.id == "code-gcd")
        .unwrap();
    let mut good = env.start(&task).unwrap();
    let s = good
        .step("```python\ndef gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n```")
        .await;
    assert!(s.done && s.reward == 1.0, "{s:?}");
    assert!(good.verify().await.correct);
    let mut partial = env.start(&task).unwrap();
    let s = partial.step("def gcd(a, b):\n    return 1\n").await;
    assert!(s.reward > 0.0 && s.reward < 1.0, "{s:?}");
    assert!(!partial.verify().await.correct);
    let mut broken = env.start(&task).unwrap();
    let s = broken.step("def gcd(a, b) return").await;
    assert_eq!(s.reward, 0.0);
    assert!(s.observation.contains("SyntaxError"), "{}", s.observation);
}

#[test]
fn shipped_configs_are_the_defaults() {
    for name in ["math", "household"] {
        let path = repo().join(format!("environments/{name}/config.toml"));
        let from_file = by_name(name, Some(&path)).unwrap().sample(3, 9).unwrap();
        let defaults = by_name(name, None).unwrap().sample(3, 9).unwrap();
        assert_eq!(
            from_file,
            defaults,
            "{} differs from the compiled defaults",
            path.display()
        );
    }
}

#[test]
fn bad_configs_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[generator]\nmax_stepz = 3\n").unwrap();
    let e = by_name("math", Some(&path)).err().unwrap().to_string();
    assert!(e.contains("unknown field `max_stepz`"), "{e}");
}
