//! The accounting of one caller of a model (a synth role), whatever endpoint it shares with
//! others: endpoint stats count a server's traffic, a meter counts what one role asked of it.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Completion, LanguageModel, LlmError, LlmRequest, StatsSnapshot};

/// A role's calls, as counted at its own wrapper.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: u64,
    pub failed: u64,
    /// Answered from the response cache (a resumed job's finished calls).
    pub cache_hits: u64,
    /// HTTP attempts beyond the first, over all its requests.
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The calls' durations summed (calls overlap, so this exceeds wall time).
    pub call_seconds: f64,
}

impl Usage {
    /// Adds `o`'s counts (the same role metered in several processes).
    pub fn add(&mut self, o: &Usage) {
        self.requests += o.requests;
        self.failed += o.failed;
        self.cache_hits += o.cache_hits;
        self.retries += o.retries;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.call_seconds += o.call_seconds;
    }
}

/// Wraps a model and counts every call made through it.
pub struct MeteredModel {
    inner: Arc<dyn LanguageModel>,
    counts: [AtomicU64; 7],
}

impl MeteredModel {
    pub fn new(inner: Arc<dyn LanguageModel>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }

    pub fn usage(&self) -> Usage {
        let c = |i: usize| self.counts[i].load(Relaxed);
        Usage {
            requests: c(0),
            failed: c(1),
            cache_hits: c(2),
            retries: c(3),
            prompt_tokens: c(4),
            completion_tokens: c(5),
            call_seconds: c(6) as f64 / 1e6,
        }
    }
}

#[async_trait]
impl LanguageModel for MeteredModel {
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let r = self.inner.generate(req).await;
        let add = |i: usize, n: u64| self.counts[i].fetch_add(n, Relaxed);
        add(0, 1);
        match &r {
            Ok(c) => {
                if c.meta.cached {
                    add(2, 1);
                } else {
                    add(3, u64::from(c.meta.attempts.saturating_sub(1)));
                }
                add(4, c.usage.prompt_tokens);
                add(5, c.usage.completion_tokens);
            }
            Err(_) => {
                add(1, 1);
            }
        }
        add(6, started.elapsed().as_micros() as u64);
        r
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn stats(&self) -> Option<StatsSnapshot> {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallMeta, Choice, FinishReason};

    struct Fixed;

    #[async_trait]
    impl LanguageModel for Fixed {
        async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
            if req.model == "fail" {
                return Err(LlmError::Invalid("no".into()));
            }
            Ok(Completion {
                model: req.model.clone(),
                choices: vec![Choice { index: 0, text: "x".into(), finish_reason: FinishReason::Stop, logprobs: None, tool_calls: vec![] }],
                usage: crate::Usage { prompt_tokens: 10, completion_tokens: 3 },
                meta: CallMeta { attempts: 3, cached: req.model == "cached", ..Default::default() },
            })
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    #[tokio::test]
    async fn counts_calls_tokens_cache_hits_retries_and_failures() {
        let m = MeteredModel::new(Arc::new(Fixed));
        for model in ["a", "cached", "fail"] {
            let _ = m.generate(&LlmRequest::text(model, "hi")).await;
        }
        let u = m.usage();
        assert_eq!((u.requests, u.failed, u.cache_hits, u.retries), (3, 1, 1, 2));
        assert_eq!((u.prompt_tokens, u.completion_tokens), (20, 6));
    }
}
