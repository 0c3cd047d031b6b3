//! How far a running piece of work is: `done` of `total`, bumped by the worker (a search, an
//! evaluation, a training run) and read by whoever displays it, with no callback between them.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    unit: Mutex<&'static str>,
}

impl Progress {
    /// Starts a new piece of work of `total` `unit`s ("trees", "tasks", "steps"), `done` of
    /// them finished already (a resume).
    pub fn start(&self, done: u64, total: u64, unit: &'static str) {
        *self.unit.lock().unwrap_or_else(|p| p.into_inner()) = unit;
        self.total.store(total, Relaxed);
        self.done.store(done, Relaxed);
    }

    /// What is counted.
    pub fn unit(&self) -> &'static str {
        *self.unit.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inc(&self) {
        self.done.fetch_add(1, Relaxed);
    }

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (self.done.load(Relaxed), self.total.load(Relaxed))
    }
}
