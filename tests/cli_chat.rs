//! End-to-end: `arbor mock-server` and `arbor chat` as a user runs them.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

mod common;

use common::{arbor, ARBOR};

struct Mock(Child, String);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mock(extra: &[&str]) -> Mock {
    let mut child = Command::new(ARBOR)
        .args(["mock-server", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Mock(child, line.trim().to_string())
}

#[test]
fn chat_prints_text_and_json_and_accounting() {
    let m = mock(&[]);
    let (ok, text, err) = arbor(&[
        "chat",
        "--base-url",
        &m.1,
        "--model",
        "mock",
        "--seed",
        "3",
        "hello",
    ]);
    assert!(ok, "{err}");
    assert!(!text.trim().is_empty());
    assert!(
        err.contains("1 requests (1 ok"),
        "accounting missing: {err}"
    );

    let (ok, json, err) = arbor(&[
        "chat",
        "--base-url",
        &m.1,
        "--model",
        "mock",
        "--seed",
        "3",
        "--n",
        "2",
        "--logprobs",
        "1",
        "--json",
        "hello",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        text.trim_end_matches('\n')
    );
    assert!(v["choices"][0]["logprobs"][0]["logprob"].as_f64().unwrap() < 0.0);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn chat_cache_answers_a_repeat_without_the_server() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_str().unwrap();
    let args = [
        "chat",
        "--base-url",
        &m.1,
        "--model",
        "mock",
        "--seed",
        "1",
        "--cache",
        cache,
        "q",
    ];
    let (ok1, a, _) = arbor(&args);
    let (ok2, b, err) = arbor(&args);
    assert!(ok1 && ok2);
    assert_eq!(a, b);
    assert!(err.contains("1 cached"), "{err}");
    let stats = Command::new("python3")
        .args(["-c", &format!("import json,urllib.request;print(json.load(urllib.request.urlopen('{}'))['requests'])", m.1.replace("/v1", "/stats"))])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stats.stdout).trim(),
        "1",
        "the repeat reached the server"
    );
}

#[test]
fn bad_config_gives_one_clear_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("base_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\ntimeout = 3\n", "unknown field `timeout`"),
        ("base_url = \"not a url\"\nmodel = \"m\"\n", "line 1, field `base_url`"),
        ("base_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\napi_key_env = \"ARBOR_NO_SUCH_KEY_VAR\"\n", "field `api_key_env`: environment variable `ARBOR_NO_SUCH_KEY_VAR` is not set"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = arbor(&["chat", "--config", path.to_str().unwrap(), "x"]);
        assert!(!ok);
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(want),
            "case {i}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one error line expected: {err}");
    }
}

#[test]
fn api_key_is_sent_but_never_printed() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(
        &path,
        format!(
            "base_url = \"{}\"\nmodel = \"mock\"\napi_key_env = \"ARBOR_TEST_KEY\"\n",
            m.1
        ),
    )
    .unwrap();
    let out = Command::new(ARBOR)
        .args(["chat", "--config", path.to_str().unwrap(), "--json", "hi"])
        .env("ARBOR_TEST_KEY", "sk-very-secret")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("sk-very-secret"), "key leaked into output");
}

#[test]
fn a_dead_server_is_reported_with_its_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.toml");
    std::fs::write(
        &path,
        format!("base_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\n[retry]\nmax_attempts = 2\nbase_delay_ms = 1\n"),
    )
    .unwrap();
    let (ok, _, err) = arbor(&["chat", "--config", path.to_str().unwrap(), "x"]);
    assert!(!ok);
    assert!(
        err.contains("gave up after 2 attempts")
            && err.contains(&format!("cannot connect to http://127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn chat_without_a_server_uses_the_embedded_model() {
    let (ok, out, err) = arbor(&[
        "chat",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--json",
        "What is 12*7?",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The golden greedy answer to this prompt starts "12*7 = ".
    assert!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("12*7 ="),
        "{v}"
    );
    assert!(err.contains("embedded"), "{err}");
}
