//! What the benchmarks share: server child processes (started from the arbor executable,
//! killed on drop, their peak memory), health waits and free ports.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;

/// Starts `arbor ARGS` (a server subcommand given `--port 0`) as a child process and reads the
/// base URL it prints on its first line.
pub fn spawn_arbor_server(args: &[&str]) -> anyhow::Result<(ServerChild, url::Url)> {
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

/// A fresh `arbor mock-server` child answering after `latency_ms`.
pub fn spawn_mock(latency_ms: u64) -> anyhow::Result<(ServerChild, url::Url)> {
    spawn_arbor_server(&[
        "mock-server",
        "--port",
        "0",
        "--latency-ms",
        &latency_ms.to_string(),
    ])
}

/// A server child process (the mock, `arbor serve`, llama.cpp), killed when dropped.
pub struct ServerChild(pub Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerChild {
    /// Peak resident set of the process so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
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

pub async fn wait_healthy(base: &str, secs: u64) -> anyhow::Result<()> {
    let health = base.trim_end_matches("/v1").to_string() + "/health";
    let t = Instant::now();
    while t.elapsed().as_secs() < secs {
        if arbor_serve::mock::fetch_health(&health)
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("{health} did not answer within {secs} s")
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The reference solution of a generated math task, one step per line.
pub fn solution_steps(task: &arbor_envs::Task) -> Vec<String> {
    task.meta("solution")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .lines()
        .map(str::to_string)
        .collect()
}
