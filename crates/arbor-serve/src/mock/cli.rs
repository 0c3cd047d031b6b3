//! `arbor mock-server`: its flags and the serving loop (the CLI only dispatches here).
use std::io::Write;
use std::time::Duration;

use super::{FaultRates, MockConfig, MockServer};

#[derive(clap::Args)]
pub struct MockArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed on the first line of stdout).
    #[arg(long, default_value_t = 8089)]
    pub port: u16,
    /// Delay before each answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the replies and the fault draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rate of every transport fault at once (each kind gets this rate); --fault overrides it.
    #[arg(long, default_value_t = 0.0)]
    faults: f64,
    /// One fault kind's rate, KIND=RATE (repeatable): 429, 500, 503, hang (answers after
    /// --hang-ms), truncated (cut JSON), wrong_schema, empty_choices, cut_answer (a reply cut
    /// half way, finish_reason "length"; not part of --faults).
    #[arg(long = "fault")]
    fault: Vec<String>,
    /// Retry-After seconds sent with 429s.
    #[arg(long, default_value_t = 1)]
    retry_after_s: u64,
    /// How long a hang lasts.
    #[arg(long, default_value_t = 600_000)]
    hang_ms: u64,
    /// Answer n > 1 with a single choice, like servers that ignore n.
    #[arg(long)]
    ignore_n: bool,
    /// Decode this many requests at a time and report it at GET /props (`total_slots`, as
    /// llama.cpp does); `--capacity` decodes that many without saying so.
    #[arg(long)]
    slots: Option<usize>,
    #[arg(long)]
    capacity: Option<usize>,
    /// Require this API key (`Authorization: Bearer KEY`); other requests get a 401 that
    /// repeats the header they sent.
    #[arg(long)]
    api_key: Option<String>,
}

impl MockArgs {
    fn config(&self) -> Result<MockConfig, String> {
        let mut f = FaultRates::uniform(self.faults);
        for spec in &self.fault {
            f.set(spec)?;
        }
        Ok(MockConfig {
            latency: Duration::from_millis(self.latency_ms),
            seed: self.seed,
            faults: f,
            retry_after_secs: self.retry_after_s,
            hang: Duration::from_millis(self.hang_ms),
            ignore_n: self.ignore_n,
            slots: self.slots,
            slot_context: None,
            capacity: self.capacity,
            timings: true,
            api_key: self.api_key.clone(),
        })
    }
}

pub async fn run(args: MockArgs) -> Result<(), String> {
    let cfg = args.config()?;
    cfg.faults.validate()?;
    let server = MockServer::start(cfg, args.port)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", server.base_url()).and_then(|_| out.flush()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.wait() => {}
    }
    Ok(())
}
