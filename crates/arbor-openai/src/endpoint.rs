//! The state one endpoint shares among all its callers: limits, breaker, accounting, and
//! what arbor has learned about the server (whether it honours `n`).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::breaker::Breaker;
use crate::limits::Limiter;
use crate::{EndpointConfig, EndpointStats};

#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub(crate) limiter: Limiter,
    pub(crate) breaker: Breaker,
    pub stats: EndpointStats,
    /// Set once the server has answered `n > 1` with a single choice.
    pub(crate) ignores_n: AtomicBool,
    /// One connection pool per endpoint, so every role on one server reuses the connections
    /// the others opened.
    pub(crate) http: reqwest::Client,
    /// The server's decoding slots, as it reports them (llama.cpp's `/props` `total_slots`),
    /// asked once before the first request; `None` when it does not say.
    slots: tokio::sync::OnceCell<Option<usize>>,
}

impl Endpoint {
    pub fn new(cfg: &EndpointConfig) -> Self {
        let name = cfg.base_url.as_str().trim_end_matches('/').to_string();
        Self {
            limiter: Limiter::new(&cfg.limits),
            breaker: Breaker::new(&name, cfg.breaker.clone()),
            stats: EndpointStats::default(),
            ignores_n: AtomicBool::new(false),
            slots: tokio::sync::OnceCell::new(),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(cfg.timeout().min(std::time::Duration::from_secs(10)))
                .pool_idle_timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            name,
        }
    }

    /// The process-wide state for `cfg.base_url`: every client of one URL shares its limits.
    /// The first config seen for a URL sets the limits.
    pub fn shared(cfg: &EndpointConfig) -> Arc<Self> {
        static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Endpoint>>>> = OnceLock::new();
        let key = cfg.base_url.as_str().trim_end_matches('/').to_string();
        REGISTRY
            .get_or_init(Default::default)
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(Self::new(cfg)))
            .clone()
    }

    /// The accounting with the in-flight limit's state.
    pub fn snapshot(&self) -> arbor_llm::StatsSnapshot {
        let mut s = self.stats.snapshot(&self.name);
        if let Some(c) = self.limiter.concurrency() {
            s.in_flight_limit = c.limit as u64;
            s.limit_cuts = c.cuts;
            s.queue_wait_ms = c.waited.as_millis() as u64;
            s.latency_ms = c.latency.as_millis() as u64;
            s.answered = c.answered;
        }
        s
    }

    pub fn ignores_n(&self) -> bool {
        self.ignores_n.load(Ordering::Relaxed)
    }

    /// The server's slots once asked (`None` before the first request or when it does not say).
    pub fn server_slots(&self) -> Option<usize> {
        self.slots.get().copied().flatten()
    }

    /// Asks the server once how many requests it decodes at a time and keeps the in-flight
    /// limit at that: requests beyond it would wait inside the server, where their time counts
    /// against the per-attempt timeout and looks like a failure; here they wait for a permit.
    pub(crate) async fn learn_slots(&self, cfg: &EndpointConfig) {
        self.slots
            .get_or_init(|| async {
                let mut url = cfg.base_url.clone();
                url.set_path("/props");
                let asked = self
                    .http
                    .get(url)
                    .timeout(std::time::Duration::from_secs(3))
                    .send()
                    .await;
                let slots = match asked {
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v.get("total_slots")?.as_u64())
                        .filter(|n| *n > 0)
                        .map(|n| n as usize),
                    _ => None,
                };
                if let Some(n) = slots {
                    if self.limiter.server_slots(n) {
                        tracing::info!(endpoint = %self.name, slots = n, "the server decodes {n} requests at a time: at most {n} in flight");
                    }
                }
                slots
            })
            .await;
    }
}
