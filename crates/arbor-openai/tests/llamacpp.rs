//! The OpenAI client against a real llama.cpp server (xllamacpp serving the SmolLM2 GGUF).
//!
//! Needs `$ARBOR_HOME/venv` (default ~/.cache/arbor/venv) with `xllamacpp` and the GGUF in
//! `$ARBOR_HOME/models`; `bash .ci/run` installs both.
mod common;

use std::path::PathBuf;

use arbor_core::Message;
use arbor_serve::llamacpp::LlamaCppServer;
use arbor_llm::{FinishReason, LanguageModel, LlmRequest, SamplingParams};
use arbor_openai::{EndpointConfig, NChoices, OpenAiClient};

fn arbor_home() -> PathBuf {
    std::env::var_os("ARBOR_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/arbor")
        })
}

async fn start_llamacpp() -> (LlamaCppServer, String) {
    let home = arbor_home();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/serve_xllamacpp.py");
    let server = LlamaCppServer::start(
        &home.join("venv/bin/python"),
        &script,
        &home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        4,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let url = server.base_url.clone();
    (server, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_n_and_logprobs_against_llamacpp() {
    let (_server, url) = start_llamacpp().await;
    let mut cfg = EndpointConfig::new(url.parse().unwrap(), "smollm2-135m");
    cfg.timeout_secs = 120.0;
    let c = OpenAiClient::new(cfg).unwrap();
    let params = |n, logprobs| SamplingParams {
        n,
        temperature: Some(0.0),
        max_tokens: Some(16),
        seed: Some(7),
        logprobs,
        top_logprobs: if logprobs { 3 } else { 0 },
        ..Default::default()
    };

    // Chat, greedy, with logprobs.
    let req = LlmRequest::chat(
        "smollm2-135m",
        vec![Message::user("What is the capital of France?")],
    )
    .with_params(params(1, true));
    let r = c.generate(&req).await.unwrap();
    assert!(!r.text().trim().is_empty(), "{:?}", r.text());
    assert!(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    // The server said how many requests it decodes at once (its 4 slots).
    assert_eq!(c.endpoint().server_slots(), Some(4));
    // ... and how many tokens each slot holds (the server was started with 2,048 per slot).
    assert_eq!(c.endpoint().slot_context(), Some(2048));
    let lp = r.choices[0]
        .logprobs
        .as_ref()
        .expect("llama.cpp returns chat logprobs");
    assert_eq!(lp.len() as u64, r.usage.completion_tokens);
    assert_eq!(
        lp.iter().map(|t| t.token.as_str()).collect::<String>(),
        r.text()
    );
    assert!(lp
        .iter()
        .all(|t| t.logprob <= 0.0 && !t.top.is_empty() && t.top.len() <= 3));
    // Greedy: the chosen token is the most likely one.
    assert!(lp.iter().all(|t| t.top[0].logprob <= t.logprob + 1e-4));

    // Raw completion with logprobs and a stop sequence.
    let mut p = params(1, true);
    p.stop = vec!["\n".into()];
    p.max_tokens = Some(24);
    let req = LlmRequest::text("smollm2-135m", "The three primary colours are").with_params(p);
    let r = c.generate(&req).await.unwrap();
    let ch = &r.choices[0];
    assert!(
        !ch.text.is_empty() && !ch.text.contains('\n'),
        "{:?}",
        ch.text
    );
    let lp = ch
        .logprobs
        .as_ref()
        .expect("llama.cpp returns completion logprobs");
    assert!(!lp.is_empty() && lp.iter().all(|t| t.logprob <= 0.0));
    if ch.finish_reason == FinishReason::Stop {
        assert!(lp.len() < 24);
    }

    // n > 1 with sampling: natively or by fallback, n distinct choices.
    let mut p = params(3, false);
    p.temperature = Some(1.0);
    p.max_tokens = Some(12);
    let req = LlmRequest::chat(
        "smollm2-135m",
        vec![Message::user("Write a short poem line.")],
    )
    .with_params(p);
    let r = c.generate(&req).await.unwrap();
    assert_eq!(
        r.choices.len(),
        3,
        "n=3 gave {} choices (fallback {})",
        r.choices.len(),
        r.meta.n_fallback
    );
    assert!(r.choices.iter().all(|c| !c.text.is_empty()));
    let distinct: std::collections::HashSet<_> = r.choices.iter().map(|c| &c.text).collect();
    assert!(
        distinct.len() >= 2,
        "sampled choices all equal: {:?}",
        r.choices
    );

    // Usage counts every choice: llama.cpp reports the first choice's tokens alone, and the
    // server's own counter of generated tokens says what all of them took. Short answers, so
    // that choices stop on their own as well as at the limit.
    let generated = || async {
        let text = reqwest::get(format!("{}/metrics", url.trim_end_matches("/v1"))).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("llamacpp:tokens_predicted_total ")).expect("the server counts generated tokens");
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as u64
    };
    // By default n goes out as single-choice requests to a server that reports its slots; sent
    // natively, llama.cpp reports the first choice's usage alone and arbor counts the others.
    let mut native = EndpointConfig::new(url.parse().unwrap(), "smollm2-135m");
    native.n_choices = NChoices::Native;
    let native = OpenAiClient::new(native).unwrap();
    let mut p = params(3, false);
    p.temperature = Some(1.0);
    p.max_tokens = Some(40);
    let req = LlmRequest::chat("smollm2-135m", vec![Message::user("Say hi.")]).with_params(p);
    for (client, parallel) in [(&c, true), (&native, false)] {
        let before = generated().await;
        let r = client.generate(&req).await.unwrap();
        let after = generated().await;
        assert_eq!((r.choices.len(), r.meta.n_fallback), (3, parallel));
        let finishes: Vec<_> = r.choices.iter().map(|c| c.finish_reason).collect();
        assert_eq!(r.usage.completion_tokens, after - before, "usage of {finishes:?}, parallel: {parallel}");
    }
    eprintln!("{}", c.stats().unwrap());
}
