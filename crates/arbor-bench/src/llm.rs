//! `arbor bench llm`: client throughput against an OpenAI-compatible server (a fresh mock child
//! by default, so its CPU is not counted as the client's).
use std::sync::Arc;
use std::time::Instant;

use arbor_core::Message;
use arbor_llm::{LanguageModel, LlmRequest, SamplingParams};
use arbor_openai::{EndpointConfig, OpenAiClient};
use serde::Serialize;

use crate::kit::spawn_mock;
use crate::resources;

#[derive(clap::Args)]
pub struct LlmBenchArgs {
    /// Server to load; without it a mock child is started.
    #[arg(long)]
    base_url: Option<url::Url>,
    #[arg(long, default_value = "mock")]
    model: String,
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Latency of the mock child.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    #[arg(long, default_value_t = 16)]
    max_tokens: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LlmBenchReport {
    requests: usize,
    ok: u64,
    failed: u64,
    in_flight: usize,
    latency_ms: Option<u64>,
    wall_s: f64,
    requests_per_s: f64,
    /// in_flight / latency: what a client with zero overhead would reach.
    floor_requests_per_s: Option<f64>,
    client_cpu_s: f64,
    client_cpu_s_per_1000: f64,
    client_peak_rss_mib: f64,
    server_peak_in_flight: Option<u64>,
}

pub async fn run(a: LlmBenchArgs) -> anyhow::Result<()> {
    let (_child, url, latency) = match &a.base_url {
        Some(u) => (None, u.clone(), None),
        None => {
            let (c, u) = spawn_mock(a.latency_ms)?;
            (Some(c), u, Some(a.latency_ms))
        }
    };
    let mut cfg = EndpointConfig::new(url.clone(), &a.model);
    cfg.limits.max_in_flight = a.in_flight;
    // A benchmark holds its concurrency fixed.
    cfg.limits.adaptive = false;
    cfg.timeout_secs = 60.0;
    let client = Arc::new(OpenAiClient::new(cfg)?);

    let cpu0 = resources::cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.requests {
        let client = client.clone();
        let req = LlmRequest::chat(
            &a.model,
            vec![Message::user(format!("benchmark request {i}"))],
        )
        .with_params(SamplingParams {
            max_tokens: Some(a.max_tokens),
            ..Default::default()
        });
        tasks.spawn(async move { client.generate(&req).await.is_ok() });
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        if r.unwrap_or(false) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = resources::cpu_seconds() - cpu0;

    let server_peak = if latency.is_some() {
        arbor_serve::mock::fetch_stats(url.as_str())
            .await
            .ok()
            .map(|s| s.peak_in_flight)
    } else {
        None
    };
    let report = LlmBenchReport {
        requests: a.requests,
        ok,
        failed,
        in_flight: a.in_flight,
        latency_ms: latency,
        wall_s: wall,
        requests_per_s: a.requests as f64 / wall,
        floor_requests_per_s: latency.map(|l| a.in_flight as f64 / (l as f64 / 1000.0)),
        client_cpu_s: cpu,
        client_cpu_s_per_1000: cpu / a.requests as f64 * 1000.0,
        client_peak_rss_mib: resources::peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        server_peak_in_flight: server_peak,
    };
    if let Some(s) = client.stats() {
        eprintln!("{s}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "requests        {} ({} ok, {} failed), {} in flight",
            report.requests, ok, failed, a.in_flight
        );
        println!("wall            {:.2} s", report.wall_s);
        match report.floor_requests_per_s {
            Some(f) => println!(
                "throughput      {:.0} req/s (floor {:.0} req/s, {:.1}%)",
                report.requests_per_s,
                f,
                100.0 * report.requests_per_s / f
            ),
            None => println!("throughput      {:.0} req/s", report.requests_per_s),
        }
        println!(
            "client CPU      {:.2} s ({:.3} s per 1,000 requests)",
            cpu, report.client_cpu_s_per_1000
        );
        println!("client peak RSS {:.1} MiB", report.client_peak_rss_mib);
        if let Some(p) = server_peak {
            println!("server peak     {p} in flight");
        }
    }
    Ok(())
}
