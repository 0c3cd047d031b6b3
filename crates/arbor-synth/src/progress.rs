//! Live counts of a synthesis job, for the progress bar and the summary.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbor_llm::{LanguageModel, StatsSnapshot};

use crate::journal::{ItemRecord, Status};

/// Live counts for the progress bar and the summary.
#[derive(Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub accepted: AtomicU64,
    pub gated_out: AtomicU64,
    pub dead: AtomicU64,
    pub duplicates: AtomicU64,
    pub pairs: AtomicU64,
    /// Rounds run again (after a rejection or a failure).
    pub retries: AtomicU64,
    /// Items already finished when a resumed job started.
    pub resumed: AtomicU64,
    /// The roles' models, for their endpoints' live figures.
    models: parking_lot::Mutex<Vec<Arc<dyn LanguageModel>>>,
}

impl Progress {
    pub(crate) fn watch(&self, models: Vec<Arc<dyn LanguageModel>>) {
        *self.models.lock() = models;
    }

    /// One accounting per endpoint the roles use (roles on one server share it).
    pub fn endpoints(&self) -> Vec<StatsSnapshot> {
        let mut out: Vec<StatsSnapshot> = Vec::new();
        for s in self.models.lock().iter().filter_map(|m| m.stats()) {
            match out.iter_mut().find(|o| o.endpoint == s.endpoint) {
                // Each role's snapshot is the endpoint's plus that role's own cache hits.
                Some(o) => {
                    o.requests += s.cache_hits;
                    o.succeeded += s.cache_hits;
                    o.cache_hits += s.cache_hits;
                }
                None => out.push(s),
            }
        }
        out
    }

    /// The items done and the progress line after `secs` of running.
    pub fn line(&self, secs: f64) -> (u64, String) {
        let l = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let done = l(&self.done);
        let accepted = 100.0 * l(&self.accepted) as f64 / done.max(1) as f64;
        let line = format!(
            "items, {:.1} pairs/s, accepted {accepted:.0}%, {} retries, {} errors; {}",
            l(&self.pairs) as f64 / secs,
            l(&self.retries),
            l(&self.dead),
            self.limits_line()
        );
        (done, line)
    }

    /// The in-flight limit and the wait for it of each HTTP endpoint, for a progress line.
    fn limits_line(&self) -> String {
        self.endpoints()
            .iter()
            .filter(|s| s.in_flight_limit > 0)
            .map(|s| format!("{} in flight (wait {:.0} ms)", s.in_flight_limit, s.queue_wait_ms as f64 / s.attempts.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn count(&self, r: &ItemRecord) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let c = match r.status {
            Status::Accepted => &self.accepted,
            Status::GatedOut => &self.gated_out,
            Status::Dead => &self.dead,
            Status::Duplicate => &self.duplicates,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.pairs.fetch_add(r.rows.len() as u64, Ordering::Relaxed);
    }
}

