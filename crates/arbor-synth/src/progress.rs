//! Live counts of a synthesis job, for the progress bar and the summary.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::journal::{ItemRecord, Status};

/// Live counts for the progress bar and the summary.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub accepted: AtomicU64,
    pub gated_out: AtomicU64,
    pub dead: AtomicU64,
    pub pairs: AtomicU64,
    /// Rounds run again (after a rejection or a failure).
    pub retries: AtomicU64,
    /// Items already finished when a resumed job started.
    pub resumed: AtomicU64,
}

impl Progress {
    pub(crate) fn count(&self, r: &ItemRecord) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let c = match r.status {
            Status::Accepted => &self.accepted,
            Status::GatedOut => &self.gated_out,
            Status::Dead => &self.dead,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.pairs.fetch_add(r.rows.len() as u64, Ordering::Relaxed);
    }
}

