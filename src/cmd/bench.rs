use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arbor_core::Message;
use arbor_llm::{EndpointConfig, LanguageModel, LlmRequest, OpenAiClient, SamplingParams};
use serde::Serialize;

use crate::resources;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Client throughput against an OpenAI-compatible server (by default a fresh
    /// `arbor mock-server` child process, so its CPU is not counted as the client's).
    Llm(LlmBenchArgs),
    /// Household environment steps per second (solution replays and random commands).
    Household(HouseholdBenchArgs),
    /// Python sandbox start-up latency, against bare `python3 -c pass`.
    Sandbox(SandboxBenchArgs),
    /// The embedded model (`arbor serve`) against llama.cpp's server (xllamacpp) on the same
    /// GGUF, one after the other, with the same client and requests: prompt tokens/s, decode
    /// tokens/s for one stream and for N concurrent streams, server peak RSS.
    Model(ModelBenchArgs),
    /// Tree search bookkeeping with an instant policy, export throughput, memory per node.
    Tree(super::bench_tree::TreeBenchArgs),
    /// arbor synth against distilabel 1.5.3 on the same mock at 200 ms latency.
    Synth(super::bench_synth::SynthBenchArgs),
    /// One DPO or OREO training step on SmolLM2-135M: arbor (burn, CPU) against PyTorch on the
    /// same checkpoint, batch and loss: tokens/s and peak memory.
    Train(super::bench_train::TrainBenchArgs),
}

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

#[derive(clap::Args)]
pub struct HouseholdBenchArgs {
    /// Games to generate and play.
    #[arg(long, default_value_t = 2000)]
    games: u64,
    /// Random commands played in each game after its solution.
    #[arg(long, default_value_t = 200)]
    random_steps: usize,
}

#[derive(clap::Args)]
pub struct SandboxBenchArgs {
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

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

/// Starts `arbor ARGS` (a server subcommand given `--port 0`) as a child process and reads the
/// base URL it prints on its first line.
pub(super) fn spawn_arbor_server(args: &[&str]) -> anyhow::Result<(ServerChild, url::Url)> {
    let exe = std::env::current_exe().context("cannot find the arbor executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `arbor {}`", args.join(" ")))?;
    let stdout = child.stdout.take().context("the server has no stdout")?;
    let child = ServerChild(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .parse()
        .with_context(|| format!("`arbor {}` printed {line:?}, not a URL", args.join(" ")))?;
    Ok((child, url))
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Llm(a) => llm(a).await,
        BenchCommand::Household(a) => household(a),
        BenchCommand::Sandbox(a) => sandbox(a).await,
        BenchCommand::Model(a) => model(a).await,
        BenchCommand::Tree(a) => super::bench_tree::run(a).await,
        BenchCommand::Synth(a) => super::bench_synth::run(a).await,
        BenchCommand::Train(a) => tokio::task::block_in_place(|| super::bench_train::run(a)),
    }
}

async fn llm(a: LlmBenchArgs) -> anyhow::Result<()> {
    let (_child, url, latency) = match &a.base_url {
        Some(u) => (None, u.clone(), None),
        None => {
            let (c, u) = spawn_arbor_server(&[
                "mock-server",
                "--port",
                "0",
                "--latency-ms",
                &a.latency_ms.to_string(),
            ])?;
            (Some(c), u, Some(a.latency_ms))
        }
    };
    let mut cfg = EndpointConfig::new(url.clone(), &a.model);
    cfg.limits.max_in_flight = a.in_flight;
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
        arbor_llm::mock::fetch_stats(url.as_str())
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

fn household(a: HouseholdBenchArgs) -> anyhow::Result<()> {
    use arbor_envs::household::{generate, solve, HouseholdConfig};
    use rand::{Rng, SeedableRng};
    let cfg = HouseholdConfig::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // Generation and solving are set up outside the timed loop; the loop times `apply` alone.
    let games: Vec<_> = (0..a.games)
        .map(|s| {
            let w = generate(&cfg, s);
            let plan = solve(&w).expect("generated games are solvable");
            let names: Vec<String> = w
                .receptacles
                .iter()
                .map(|r| r.name.clone())
                .chain(w.objects.iter().map(|o| o.name.clone()))
                .collect();
            let random: Vec<String> = (0..a.random_steps)
                .map(|_| {
                    let n = &names[rng.gen_range(0..names.len())];
                    match rng.gen_range(0..6) {
                        0 => format!("go to {n}"),
                        1 => format!("open {n}"),
                        2 => format!("take {n}"),
                        3 => "look".to_string(),
                        4 => "inventory".to_string(),
                        _ => format!("put {n} in/on {}", names[rng.gen_range(0..names.len())]),
                    }
                })
                .collect();
            (w, plan, random)
        })
        .collect();
    let t0 = Instant::now();
    let mut steps = 0u64;
    let mut solved = 0u64;
    for (w, plan, random) in &games {
        let mut g = w.clone();
        for cmd in plan {
            std::hint::black_box(g.apply(cmd));
        }
        solved += u64::from(g.goal_met());
        for cmd in random {
            std::hint::black_box(g.apply(cmd));
        }
        steps += (plan.len() + random.len()) as u64;
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "games           {} ({} solved by their plans)",
        games.len(),
        solved
    );
    println!("steps           {steps} in {wall:.3} s");
    println!(
        "throughput      {:.0} steps/s (one thread)",
        steps as f64 / wall
    );
    Ok(())
}

async fn sandbox(a: SandboxBenchArgs) -> anyhow::Result<()> {
    use arbor_tools::sandbox::{Limits, PythonRunner};
    let runner = PythonRunner::new(Limits::default())?;
    let mut sandboxed = Vec::with_capacity(a.runs);
    let mut bare = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t = Instant::now();
        let out = runner.run("pass", &[], "").await?;
        anyhow::ensure!(out.success(), "sandboxed `pass` failed: {}", out.stderr);
        sandboxed.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let s = tokio::process::Command::new("/usr/bin/python3")
            .args(["-I", "-B", "-c", "pass"])
            .status()
            .await?;
        anyhow::ensure!(s.success(), "bare python3 failed");
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (pick(0.5), pick(0.9), v.iter().sum::<f64>() / v.len() as f64)
    };
    let (s50, s90, smean) = stats(&mut sandboxed);
    let (b50, b90, bmean) = stats(&mut bare);
    println!("runs                      {}", a.runs);
    println!("sandboxed python  (ms)    p50 {s50:.1}  p90 {s90:.1}  mean {smean:.1}");
    println!("bare python3 -c pass (ms) p50 {b50:.1}  p90 {b90:.1}  mean {bmean:.1}");
    println!("sandbox overhead (p50)    {:.1} ms", s50 - b50);
    Ok(())
}

/// A server child process (the mock, `arbor serve`, llama.cpp), killed when dropped.
pub(super) struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerChild {
    /// Peak resident set of the process so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
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
    peak_rss_mib: Option<f64>,
}

async fn wait_healthy(base: &str, secs: u64) -> anyhow::Result<()> {
    let health = base.trim_end_matches("/v1").to_string() + "/health";
    let t = Instant::now();
    while t.elapsed().as_secs() < secs {
        if arbor_llm::mock::fetch_health(&health)
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("{health} did not answer within {secs} s")
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
    let client = Arc::new(OpenAiClient::with_endpoint(
        cfg.clone(),
        Arc::new(arbor_llm::Endpoint::new(&cfg)),
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
    Ok(ModelFigures {
        server: name.to_string(),
        prompt_tokens_per_s: prompt_rate,
        decode_tokens_per_s_1: decode_1,
        decode_tokens_per_s_n: decode_n,
        streams: a.streams,
        completion_tokens_1: one,
        completion_tokens_n: many,
        peak_rss_mib: None,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn model(a: ModelBenchArgs) -> anyhow::Result<()> {
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
        let mut f = measure("arbor embedded (burn flex)", &base, "embedded", &a).await?;
        f.peak_rss_mib = server.peak_rss_mib();
        all.push(f);
    }
    println!("| server | prompt tok/s | decode tok/s, 1 stream | decode tok/s, {} streams | peak RSS MiB |", a.streams);
    println!("| --- | --- | --- | --- | --- |");
    for f in &all {
        println!(
            "| {} | {:.1} | {:.1} ({} tokens) | {:.1} ({} tokens) | {} |",
            f.server,
            f.prompt_tokens_per_s,
            f.decode_tokens_per_s_1,
            f.completion_tokens_1,
            f.decode_tokens_per_s_n,
            f.completion_tokens_n,
            f.peak_rss_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "?".into())
        );
    }
    eprintln!("{}", serde_json::to_string(&all)?);
    Ok(())
}
