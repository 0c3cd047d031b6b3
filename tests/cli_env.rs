//! End-to-end: `arbor env` as a user runs it.
use std::io::Write;
use std::process::{Command, Stdio};

mod common;

use common::{arbor, ARBOR};

#[test]
fn list_names_every_environment() {
    let (ok, out, _) = arbor(&["env", "list"]);
    assert!(ok);
    for name in ["math", "household", "code"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{out}");
    }
}

#[test]
fn sample_prints_synth_input_jsonl() {
    for env in ["math", "household", "code"] {
        let (ok, out, err) = arbor(&["env", "sample", "--env", env, "--n", "3", "--seed", "4"]);
        assert!(ok, "{err}");
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert!(
                r["id"].is_string() && r["prompt"].is_string() && r["env"] == env,
                "{r}"
            );
        }
        assert_eq!(
            out,
            arbor(&["env", "sample", "--env", env, "--n", "3", "--seed", "4"]).1,
            "not deterministic"
        );
    }
    let (ok, _, err) = arbor(&["env", "sample", "--env", "chess"]);
    assert!(!ok && err.contains("unknown environment `chess`"), "{err}");
}

#[test]
fn play_household_from_stdin() {
    let (_, out, _) = arbor(&[
        "env",
        "sample",
        "--env",
        "household",
        "--n",
        "1",
        "--seed",
        "5",
    ]);
    let task: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let plan: Vec<String> = serde_json::from_value(task["solution"].clone()).unwrap();
    let mut child = Command::new(ARBOR)
        .args(["env", "play", "--env", "household", "--seed", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "look\ninventory").unwrap();
    for cmd in &plan {
        writeln!(stdin, "{cmd}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Your task is to:"), "{text}");
    assert!(text.contains("You are not carrying anything."), "{text}");
    assert!(
        text.contains(&format!("Solved after {} actions", plan.len() + 2)),
        "{text}"
    );
}

/// Catches a CLI that panics (exit 101, a backtrace on stderr) when its reader goes away, as in
/// `arbor env list | head -1` (`env list` prints with `println!`).
#[test]
fn a_closed_stdout_ends_quietly() {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let out = Command::new(ARBOR)
        .args(["env", "list"])
        .stdout(w)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
