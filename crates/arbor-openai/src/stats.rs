//! Per-endpoint accounting: requests, attempts, retries, failures by kind, tokens; read as a
//! `StatsSnapshot`.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arbor_llm::{LlmError, StatsSnapshot, Usage};
use parking_lot::Mutex;

/// Live counters, updated by every caller of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointStats {
    requests: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    n_fallbacks: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters at one moment.
impl EndpointStats {
    pub fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    pub fn attempt(&self, is_retry: bool) {
        self.attempts.fetch_add(1, Relaxed);
        if is_retry {
            self.retries.fetch_add(1, Relaxed);
        }
    }
    pub fn attempt_failed(&self, e: &LlmError) {
        *self.errors.lock().entry(e.kind()).or_default() += 1;
    }
    pub fn finished(&self, ok: bool, usage: Usage) {
        if ok {
            self.succeeded.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        self.prompt_tokens.fetch_add(usage.prompt_tokens, Relaxed);
        self.completion_tokens
            .fetch_add(usage.completion_tokens, Relaxed);
    }
    pub fn n_fallback(&self) {
        self.n_fallbacks.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, endpoint: &str) -> StatsSnapshot {
        StatsSnapshot {
            endpoint: endpoint.to_string(),
            requests: self.requests.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            failed: self.failed.load(Relaxed),
            attempts: self.attempts.load(Relaxed),
            retries: self.retries.load(Relaxed),
            cache_hits: 0,
            n_fallbacks: self.n_fallbacks.load(Relaxed),
            prompt_tokens: self.prompt_tokens.load(Relaxed),
            completion_tokens: self.completion_tokens.load(Relaxed),
            errors: self
                .errors
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            ..StatsSnapshot::default()
        }
    }
}

