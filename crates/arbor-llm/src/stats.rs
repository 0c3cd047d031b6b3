//! A model's request and token accounting as `LanguageModel::stats` reports it.
use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub endpoint: String,
    /// Logical requests asked of this endpoint (cache hits included).
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// HTTP attempts sent.
    pub attempts: u64,
    pub retries: u64,
    /// Served from the response cache (filled in by `CachedModel`).
    pub cache_hits: u64,
    pub n_fallbacks: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Failed attempts by kind (`http_429`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// The in-flight limit now (0: unlimited, or not an HTTP endpoint), and how often the
    /// adaptive limit was cut.
    pub in_flight_limit: u64,
    pub limit_cuts: u64,
    /// Time attempts waited for the limit in arbor, and the latency of answered attempts,
    /// both summed (ms); `answered` attempts.
    pub queue_wait_ms: u64,
    pub latency_ms: u64,
    pub answered: u64,
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} requests ({} ok, {} failed, {} cached), {} attempts ({} retries), \
             tokens {} prompt + {} completion",
            self.endpoint,
            self.requests,
            self.succeeded,
            self.failed,
            self.cache_hits,
            self.attempts,
            self.retries,
            self.prompt_tokens,
            self.completion_tokens
        )?;
        if self.in_flight_limit > 0 {
            write!(
                f,
                ", in flight <= {} ({} cuts), {:.0} ms wait + {:.0} ms latency per attempt",
                self.in_flight_limit,
                self.limit_cuts,
                self.queue_wait_ms as f64 / self.attempts.max(1) as f64,
                self.latency_ms as f64 / self.answered.max(1) as f64
            )?;
        }
        if self.n_fallbacks > 0 {
            write!(f, ", {} n-fallbacks", self.n_fallbacks)?;
        }
        if !self.errors.is_empty() {
            let errs: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, ", errors: {}", errs.join(" "))?;
        }
        Ok(())
    }
}
