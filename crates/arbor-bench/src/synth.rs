//! `arbor bench synth`: arbor synth against distilabel 1.5.3 on the same OpenAI-compatible mock
//! (a separate `arbor mock-server` process) at a fixed latency, the same work per prompt: two
//! generations and one judge call (`--no-gate`, one judge order, no tools).
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::resources::{run_measured, ChildUsage};

#[derive(clap::Args)]
pub struct SynthBenchArgs {
    #[arg(long, default_value_t = 1000)]
    items: usize,
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// arbor's in-flight limit.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// Python with distilabel==1.5.3 (skip distilabel when absent).
    #[arg(long)]
    distilabel_python: Option<PathBuf>,
    /// distilabel batch sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "50,1000")]
    batches: Vec<usize>,
    #[arg(long, default_value = "benches/distilabel_synth.py")]
    distilabel_script: PathBuf,
}

struct Row {
    name: String,
    items: usize,
    pairs: usize,
    usage: ChildUsage,
    requests: u64,
}

async fn mock_requests(url: &url::Url) -> u64 {
    arbor_serve::mock::fetch_stats(url.as_str())
        .await
        .map(|s| s.requests)
        .unwrap_or(0)
}

pub async fn run(a: SynthBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let items = dir.join("items.jsonl");
    let env = arbor_envs::by_name("math", None)?;
    let tasks = env.sample(a.items, 1)?;
    std::fs::write(
        &items,
        tasks
            .iter()
            .map(|t| serde_json::to_string(t).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
    )?;
    let cfg = dir.join("synth.toml");
    std::fs::write(
        &cfg,
        "candidates = 2\nrounds = 1\nboth_orders = false\ntool_use = \"none\"\nno_gate = true\n",
    )?;
    let (mock, url) = crate::kit::spawn_mock(a.latency_ms)?;
    let base = url.as_str().trim_end_matches('/').to_string();
    let base = if base.ends_with("/v1") {
        base
    } else {
        format!("{base}/v1")
    };
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();

    let before = mock_requests(&url).await;
    let out = dir.join("arbor-out");
    let usage = run_measured(
        Command::new(&exe)
            .args(["synth", "--input"])
            .arg(&items)
            .arg("--out")
            .arg(&out)
            .arg("--config")
            .arg(&cfg)
            .args([
                "--target-url",
                &base,
                "--target-model",
                "target",
                "--judge-url",
                &base,
                "--judge-model",
                "judge",
            ])
            .args(["--max-in-flight", &a.max_in_flight.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    anyhow::ensure!(usage.status.success(), "arbor synth failed");
    let pairs = std::fs::read_to_string(out.join("pairs.jsonl"))?
        .lines()
        .count();
    let done = std::fs::read_to_string(out.join("journal.jsonl"))?
        .lines()
        .count();
    let requests = mock_requests(&url).await - before;
    rows.push(Row {
        name: format!("arbor (in flight {})", a.max_in_flight),
        items: done,
        pairs,
        usage,
        requests,
    });

    let python = a
        .distilabel_python
        .clone()
        .unwrap_or_else(|| arbor_model::fetch::arbor_home().join("distilabel-venv/bin/python"));
    if python.exists() {
        let script = std::fs::canonicalize(&a.distilabel_script).with_context(|| {
            format!(
                "{} (run from the repository root)",
                a.distilabel_script.display()
            )
        })?;
        for &batch in &a.batches {
            let before = mock_requests(&url).await;
            let report = dir.join(format!("distilabel-{batch}.json"));
            let usage = run_measured(
                Command::new(&python)
                    .arg(&script)
                    .args([&base, items.to_str().context("path")?, &batch.to_string()])
                    .env("DISTILABEL_LOG_LEVEL", "ERROR")
                    .current_dir(&dir)
                    .stdout(std::fs::File::create(&report)?)
                    .stderr(Stdio::null()),
            )?;
            anyhow::ensure!(
                usage.status.success(),
                "distilabel (batch {batch}) failed; see {}",
                a.distilabel_script.display()
            );
            let text = std::fs::read_to_string(&report)?;
            let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
            let requests = mock_requests(&url).await - before;
            rows.push(Row {
                name: format!("distilabel 1.5.3 (batch {batch})"),
                items: v["items"].as_u64().unwrap_or(0) as usize,
                pairs: v["pairs"].as_u64().unwrap_or(0) as usize,
                usage,
                requests,
            });
        }
    } else {
        eprintln!("distilabel skipped: {} not found (python3 -m venv DIR && DIR/bin/pip install distilabel==1.5.3 openai requests)", python.display());
    }
    drop(mock);

    let floor = (a.items.div_ceil(a.max_in_flight)) as f64 * 2.0 * a.latency_ms as f64 / 1000.0;
    println!("{} prompts, mock latency {} ms; arbor's latency floor {floor:.2} s (2 sequential calls × {} waves)", a.items, a.latency_ms, a.items.div_ceil(a.max_in_flight));
    println!("| run | wall s | items/s | pairs | pairs/s | mock requests | client CPU s | peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.1} | {} | {:.1} | {} | {:.2} | {:.0} |",
            r.name,
            r.usage.wall_s,
            r.items as f64 / r.usage.wall_s,
            r.pairs,
            r.pairs as f64 / r.usage.wall_s,
            r.requests,
            r.usage.cpu_s,
            r.usage.peak_rss_bytes as f64 / 1048576.0
        );
    }
    if let (Some(ours), Some(best)) = (
        rows.first(),
        rows.iter()
            .skip(1)
            .map(|r| r.items as f64 / r.usage.wall_s)
            .reduce(f64::max),
    ) {
        println!(
            "arbor items/s vs distilabel's best: {:.1}x; arbor wall / floor: {:.2}",
            ours.items as f64 / ours.usage.wall_s / best,
            ours.usage.wall_s / floor
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("arbor-bench-synth-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
