use std::io::Write;
use std::time::Duration;

use arbor_serve::mock::{FaultRates, MockConfig, MockServer};

#[derive(clap::Args)]
pub struct MockArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed on the first line of stdout).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Delay before each answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the replies and the fault draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rate of every transport fault at once (each kind gets this rate); per-kind flags override
    /// it.
    #[arg(long, default_value_t = 0.0)]
    faults: f64,
    /// Rate of 429 answers with Retry-After.
    #[arg(long)]
    fault_429: Option<f64>,
    /// Rate of 500 answers.
    #[arg(long)]
    fault_500: Option<f64>,
    /// Rate of 503 answers.
    #[arg(long)]
    fault_503: Option<f64>,
    /// Rate of hangs (answers after --hang-ms).
    #[arg(long)]
    fault_hang: Option<f64>,
    /// Rate of 200 answers with truncated JSON.
    #[arg(long)]
    fault_truncated: Option<f64>,
    /// Rate of 200 answers with JSON of the wrong schema.
    #[arg(long)]
    fault_wrong_schema: Option<f64>,
    /// Rate of 200 answers with empty `choices`.
    #[arg(long)]
    fault_empty_choices: Option<f64>,
    /// Rate of answers cut half way with finish_reason "length" (a JSON answer that never
    /// closes); not part of --faults.
    #[arg(long)]
    fault_cut_answer: Option<f64>,
    /// Retry-After seconds sent with 429s.
    #[arg(long, default_value_t = 1)]
    retry_after_s: u64,
    /// How long a hang lasts.
    #[arg(long, default_value_t = 600_000)]
    hang_ms: u64,
    /// Answer n > 1 with a single choice, like servers that ignore n.
    #[arg(long)]
    ignore_n: bool,
    /// Report this many decoding slots at GET /props (`total_slots`, as llama.cpp does).
    #[arg(long)]
    slots: Option<usize>,
    /// Require this API key (`Authorization: Bearer KEY`); other requests get a 401 that
    /// repeats the header they sent.
    #[arg(long)]
    api_key: Option<String>,
}

impl MockArgs {
    fn config(&self) -> MockConfig {
        let mut f = FaultRates::uniform(self.faults);
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut f.rate_limited, self.fault_429);
        set(&mut f.server_error, self.fault_500);
        set(&mut f.unavailable, self.fault_503);
        set(&mut f.hang, self.fault_hang);
        set(&mut f.truncated, self.fault_truncated);
        set(&mut f.wrong_schema, self.fault_wrong_schema);
        set(&mut f.empty_choices, self.fault_empty_choices);
        set(&mut f.cut_answer, self.fault_cut_answer);
        MockConfig {
            latency: Duration::from_millis(self.latency_ms),
            seed: self.seed,
            faults: f,
            retry_after_secs: self.retry_after_s,
            hang: Duration::from_millis(self.hang_ms),
            ignore_n: self.ignore_n,
            slots: self.slots,
            api_key: self.api_key.clone(),
        }
    }
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    cfg.faults.validate().map_err(anyhow::Error::msg)?;
    let server = MockServer::start(cfg, args.port)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", server.base_url())?;
    out.flush()?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.wait() => {}
    }
    Ok(())
}
