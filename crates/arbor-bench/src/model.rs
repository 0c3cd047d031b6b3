//! `arbor bench model`: the embedded model (`arbor serve`) against llama.cpp's server on the
//! same GGUF, one after the other, with the same client and requests.
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arbor_llm::{LanguageModel, LlmRequest, SamplingParams};
use arbor_openai::{EndpointConfig, OpenAiClient};
use serde::Serialize;

use crate::kit::{free_port, spawn_arbor_server, wait_healthy, ServerChild};

#[derive(clap::Args)]
pub struct ModelBenchArgs {
    /// Python with xllamacpp (default: $ARBOR_HOME/venv/bin/python).
    #[arg(long)]
    python: Option<std::path::PathBuf>,
    /// The launcher from ../shared/tools.
    #[arg(long, default_value = "../shared/tools/serve_xllamacpp.py")]
    llamacpp_script: std::path::PathBuf,
    #[arg(long, default_value_t = 8)]
    streams: usize,
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Approximate prompt length for the prompt-processing figure.
    #[arg(long, default_value_t = 256)]
    prompt_words: usize,
    /// Threads for llama.cpp (the machine's cores by default).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Skip llama.cpp (measure arbor alone).
    #[arg(long)]
    no_llamacpp: bool,
}

#[derive(Serialize)]
struct ModelFigures {
    server: String,
    prompt_tokens_per_s: f64,
    decode_tokens_per_s_1: f64,
    decode_tokens_per_s_n: f64,
    streams: usize,
    completion_tokens_1: u64,
    completion_tokens_n: u64,
    /// N streams again, each answer under a JSON schema (structured output).
    structured_tokens_per_s_n: f64,
    structured_tokens_n: u64,
    peak_rss_mib: Option<f64>,
}

/// The same three workloads against any OpenAI-compatible server.
async fn measure(
    name: &str,
    base: &str,
    model_name: &str,
    a: &ModelBenchArgs,
) -> anyhow::Result<ModelFigures> {
    let mut cfg = EndpointConfig::new(base.parse()?, model_name);
    cfg.timeout_secs = 600.0;
    cfg.limits.max_in_flight = a.streams.max(1);
    // A benchmark holds its concurrency fixed.
    cfg.limits.adaptive = false;
    let client = Arc::new(OpenAiClient::with_endpoint(
        cfg.clone(),
        Arc::new(arbor_openai::Endpoint::new(&cfg)),
    )?);
    let greedy = |max: u32| SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(max),
        ..Default::default()
    };
    // Warm-up (first-request allocations, page faults on the weights).
    client
        .generate(&LlmRequest::text(model_name, "Hello").with_params(greedy(4)))
        .await?;

    // Prompt processing: a long prompt, one token out; each run's prompt differs at its start so
    // no server can reuse a cached prefix.
    let body: String = (0..a.prompt_words)
        .map(|i| {
            [
                "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog",
            ][i % 9]
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut rates = Vec::new();
    for run in 0..3 {
        let t = Instant::now();
        let c = client
            .generate(
                &LlmRequest::text(model_name, format!("Run {run}. {body}")).with_params(greedy(1)),
            )
            .await?;
        rates.push(c.usage.prompt_tokens as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let prompt_rate = rates[1];

    let story = |i: usize| {
        format!("Story {i}: Once upon a time, in a small village by the sea, there lived")
    };
    let t = Instant::now();
    let c = client
        .generate(&LlmRequest::text(model_name, story(0)).with_params(greedy(a.max_tokens)))
        .await?;
    let one = c.usage.completion_tokens;
    let decode_1 = one as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.streams {
        let client = client.clone();
        let req = LlmRequest::text(model_name, story(i + 1)).with_params(greedy(a.max_tokens));
        tasks.spawn(async move { client.generate(&req).await });
    }
    let mut many = 0;
    while let Some(r) = tasks.join_next().await {
        many += r??.usage.completion_tokens;
    }
    let decode_n = many as f64 / t.elapsed().as_secs_f64();

    // The same streams, answering under a schema (the cost of the token mask).
    let schema = serde_json::json!({"type": "object", "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "reason": {"type": "string", "maxLength": 400}}, "required": ["score", "reason"]});
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.streams {
        let client = client.clone();
        let mut p = greedy(a.max_tokens);
        p.json_schema = Some(schema.clone());
        let ask = format!("{} ... Rate this story opening from 1 to 10 and explain why, as JSON.", story(i + 1));
        let req = LlmRequest::chat(model_name, vec![arbor_core::Message::user(ask)]).with_params(p);
        tasks.spawn(async move { client.generate(&req).await });
    }
    let mut structured = 0;
    while let Some(r) = tasks.join_next().await {
        structured += r??.usage.completion_tokens;
    }
    let structured_n = structured as f64 / t.elapsed().as_secs_f64();
    Ok(ModelFigures {
        server: name.to_string(),
        prompt_tokens_per_s: prompt_rate,
        decode_tokens_per_s_1: decode_1,
        decode_tokens_per_s_n: decode_n,
        streams: a.streams,
        completion_tokens_1: one,
        completion_tokens_n: many,
        structured_tokens_per_s_n: structured_n,
        structured_tokens_n: structured,
        peak_rss_mib: None,
    })
}

pub async fn run(a: ModelBenchArgs) -> anyhow::Result<()> {
    let gguf = arbor_model::fetch::resolve_model(None)?;
    let mut all = Vec::new();
    if !a.no_llamacpp {
        let python = a
            .python
            .clone()
            .unwrap_or_else(|| arbor_model::fetch::arbor_home().join("venv/bin/python"));
        anyhow::ensure!(
            a.llamacpp_script.exists(),
            "{} not found (run from the repository root, ../shared beside it)",
            a.llamacpp_script.display()
        );
        let port = free_port()?;
        let child = Command::new(&python)
            .arg(&a.llamacpp_script)
            .arg("--model")
            .arg(&gguf)
            .args([
                "--port",
                &port.to_string(),
                "--parallel",
                &a.streams.to_string(),
                "--threads",
                &a.threads.to_string(),
                "--ctx-per-slot",
                "1024",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (install xllamacpp in that venv)",
                    python.display()
                )
            })?;
        let server = ServerChild(child);
        let base = format!("http://127.0.0.1:{port}/v1");
        wait_healthy(&base, 120).await?;
        let mut f = measure("llama.cpp (xllamacpp)", &base, "smollm2-135m", &a).await?;
        f.peak_rss_mib = server.peak_rss_mib();
        all.push(f);
    }
    {
        let (server, base) = spawn_arbor_server(&[
            "serve",
            "--port",
            "0",
            "--max-batch",
            &a.streams.max(1).to_string(),
        ])?;
        let base = base.to_string();
        wait_healthy(&base, 120).await?;
        let mut f = measure("arbor embedded (native)", &base, "embedded", &a).await?;
        f.peak_rss_mib = server.peak_rss_mib();
        all.push(f);
    }
    println!("| server | prompt tok/s | decode tok/s, 1 stream | decode tok/s, {0} streams | JSON-schema decode tok/s, {0} streams | peak RSS MiB |", a.streams);
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in &all {
        println!(
            "| {} | {:.1} | {:.1} ({} tokens) | {:.1} ({} tokens) | {:.1} ({} tokens) | {} |",
            f.server,
            f.prompt_tokens_per_s,
            f.decode_tokens_per_s_1,
            f.completion_tokens_1,
            f.decode_tokens_per_s_n,
            f.completion_tokens_n,
            f.structured_tokens_per_s_n,
            f.structured_tokens_n,
            f.peak_rss_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "?".into())
        );
    }
    eprintln!("{}", serde_json::to_string(&all)?);
    Ok(())
}
