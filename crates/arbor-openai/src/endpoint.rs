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
    /// What the server says of its slots (llama.cpp's `/props`), asked once before the first
    /// request.
    props: tokio::sync::OnceCell<ServerProps>,
    /// A request larger than a slot's context has been reported (once per endpoint).
    warned_context: AtomicBool,
}

/// The server's decoding slots and each one's context in tokens, where it says them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerProps {
    /// `total_slots`: requests decoded at once.
    pub slots: Option<usize>,
    /// `default_generation_settings.n_ctx`: tokens one slot holds, prompt and answer together.
    pub slot_context: Option<usize>,
}

impl ServerProps {
    fn parse(v: &serde_json::Value) -> Self {
        let positive = |x: Option<&serde_json::Value>| {
            x.and_then(serde_json::Value::as_u64)
                .filter(|n| *n > 0)
                .map(|n| n as usize)
        };
        Self {
            slots: positive(v.get("total_slots")),
            slot_context: positive(v.pointer("/default_generation_settings/n_ctx")),
        }
    }
}

impl Endpoint {
    pub fn new(cfg: &EndpointConfig) -> Self {
        let name = cfg.base_url.as_str().trim_end_matches('/').to_string();
        Self {
            limiter: Limiter::new(&cfg.limits),
            breaker: Breaker::new(&name, cfg.breaker.clone()),
            stats: EndpointStats::default(),
            ignores_n: AtomicBool::new(false),
            props: tokio::sync::OnceCell::new(),
            warned_context: AtomicBool::new(false),
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
        self.props.get().and_then(|p| p.slots)
    }

    /// The tokens one of the server's slots holds, once asked and where it says.
    pub fn slot_context(&self) -> Option<usize> {
        self.props.get().and_then(|p| p.slot_context)
    }

    /// Warns once when a request may need more than a slot holds: llama.cpp refuses a prompt
    /// longer than its slot (HTTP 400) and cuts an answer at the slot's end, which a user
    /// otherwise meets as dead letters deep into a job.
    pub(crate) fn check_context(&self, estimated_tokens: u64) {
        let Some(ctx) = self.slot_context() else { return };
        if estimated_tokens > ctx as u64 && !self.warned_context.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                endpoint = %self.name,
                "a request of about {estimated_tokens} tokens (prompt + max_tokens) does not fit the server's {ctx}-token slots: \
                 llama.cpp refuses longer prompts and cuts answers at a slot's end; give each slot more context \
                 (llama-server: --ctx-size = slots x tokens per slot) or lower max_tokens"
            );
        }
    }

    /// Asks the server once how many requests it decodes at a time and keeps the in-flight
    /// limit at that: requests beyond it would wait inside the server, where their time counts
    /// against the per-attempt timeout and looks like a failure; here they wait for a permit.
    pub(crate) async fn learn_slots(&self, cfg: &EndpointConfig) {
        self.props
            .get_or_init(|| async {
                let mut url = cfg.base_url.clone();
                url.set_path("/props");
                let asked = self
                    .http
                    .get(url)
                    .timeout(std::time::Duration::from_secs(3))
                    .send()
                    .await;
                let props = match asked {
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .map(|v| ServerProps::parse(&v))
                        .unwrap_or_default(),
                    _ => ServerProps::default(),
                };
                if let Some(n) = props.slots {
                    if self.limiter.server_slots(n) {
                        tracing::info!(endpoint = %self.name, slots = n, "the server decodes {n} requests at a time: at most {n} in flight");
                    }
                }
                props
            })
            .await;
    }

    /// The tokens `text` encodes to on the server (llama.cpp's `/tokenize`), or none when it
    /// cannot say.
    pub(crate) async fn count_tokens(&self, cfg: &EndpointConfig, text: &str) -> Option<u64> {
        let mut url = cfg.base_url.clone();
        url.set_path("/tokenize");
        let r = self
            .http
            .post(url)
            .json(&serde_json::json!({ "content": text }))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.error_for_status().ok()?.json().await.ok()?;
        Some(v["tokens"].as_array()?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerProps;

    #[test]
    fn reads_llamacpp_props() {
        let v = serde_json::json!({"total_slots": 8, "default_generation_settings": {"n_ctx": 4096}});
        assert_eq!(ServerProps::parse(&v), ServerProps { slots: Some(8), slot_context: Some(4096) });
        let none = serde_json::json!({"total_slots": 0, "default_generation_settings": {}});
        assert_eq!(ServerProps::parse(&none), ServerProps::default());
    }
}
