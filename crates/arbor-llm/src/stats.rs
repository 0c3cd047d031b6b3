//! Request and token accounting per endpoint.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use serde::Serialize;

use crate::{LlmError, Usage};

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
}

impl EndpointStats {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    pub(crate) fn attempt(&self, is_retry: bool) {
        self.attempts.fetch_add(1, Relaxed);
        if is_retry {
            self.retries.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn attempt_failed(&self, e: &LlmError) {
        *self.errors.lock().entry(e.kind()).or_default() += 1;
    }
    pub(crate) fn finished(&self, ok: bool, usage: Usage) {
        if ok {
            self.succeeded.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        self.prompt_tokens.fetch_add(usage.prompt_tokens, Relaxed);
        self.completion_tokens
            .fetch_add(usage.completion_tokens, Relaxed);
    }
    pub(crate) fn n_fallback(&self) {
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
        }
    }
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
