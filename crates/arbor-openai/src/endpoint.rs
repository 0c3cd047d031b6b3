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
}

impl Endpoint {
    pub fn new(cfg: &EndpointConfig) -> Self {
        let name = cfg.base_url.as_str().trim_end_matches('/').to_string();
        Self {
            limiter: Limiter::new(&cfg.limits),
            breaker: Breaker::new(&name, cfg.breaker.clone()),
            stats: EndpointStats::default(),
            ignores_n: AtomicBool::new(false),
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

    pub fn ignores_n(&self) -> bool {
        self.ignores_n.load(Ordering::Relaxed)
    }
}
