//! A fixed team of threads for the decoder's many small parallel steps (some 250 per token).
//! A general pool (rayon) wakes its sleeping workers through the kernel for each one, which cost
//! a third of a decode step here; this team's helpers spin briefly on a shared counter between
//! steps (and sleep when generation pauses), the calling thread works as member 0, and every
//! member takes a fixed share of the work, as llama.cpp's thread pool does.
//!
//! The spin loops do not use the CPU's pause hint: in a virtual machine, pause loops make the
//! hypervisor deschedule the spinning vCPU, which made a decode step 40× slower here.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How long a helper spins before it sleeps: longer than the gap between two steps of one
/// decode (norms, sampling), much shorter than a pause between requests.
const SPIN: std::time::Duration = std::time::Duration::from_micros(300);

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped once per job; helpers run a job when they see it change.
    epoch: AtomicUsize,
    /// Helpers finished with the current job.
    done: AtomicUsize,
    /// The current job (a pointer valid until every helper has counted itself done).
    job: Mutex<Option<&'static Job>>,
    sleeping: Mutex<usize>,
    wake: Condvar,
    stop: AtomicBool,
}

pub struct Team {
    shared: Arc<Shared>,
    size: usize,
    /// One job at a time (callers on several threads take turns).
    turn: Mutex<()>,
}

impl Team {
    /// The process's team: `ARBOR_THREADS` members, or one per available core.
    pub fn global() -> &'static Team {
        static T: OnceLock<Team> = OnceLock::new();
        T.get_or_init(|| {
            let n = std::env::var("ARBOR_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            Team::new(n.max(1))
        })
    }

    pub fn new(size: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: Mutex::new(None),
            sleeping: Mutex::new(0),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        for member in 1..size {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("arbor-team-{member}"))
                .spawn(move || helper(&s, member))
                .expect("can spawn a decoder thread");
        }
        Self {
            shared,
            size,
            turn: Mutex::new(()),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `f(member)` on every member (0..size) and returns when all have finished.
    pub fn run<'a>(&self, f: &'a (dyn Fn(usize) + Sync + 'a)) {
        if self.size == 1 {
            return f(0);
        }
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the job is only reachable through `s.job` until this call returns, and it
        // returns only after every helper has finished running it (the `done` count below), so
        // the borrow outlives every use; the slot is cleared before returning.
        let job: &'static Job =
            unsafe { std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Job>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.done.store(0, Relaxed);
        s.epoch.fetch_add(1, Release);
        if *s.sleeping.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            s.wake.notify_all();
        }
        // A panic in member 0 must still wait for the helpers before the job's borrow ends.
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        while s.done.load(Acquire) < self.size - 1 {}
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Release);
        self.shared.epoch.fetch_add(1, Release);
        self.shared.wake.notify_all();
    }
}

fn helper(s: &Shared, member: usize) {
    // The epoch at construction, not at this thread's start: a job may already be waiting.
    let mut seen = 0;
    loop {
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(Acquire) == seen {
            spins = spins.wrapping_add(1);
            if spins % 1024 != 0 || start.elapsed() < SPIN {
                continue;
            }
            let mut sleeping = s.sleeping.lock().unwrap_or_else(|e| e.into_inner());
            *sleeping += 1;
            while s.epoch.load(Acquire) == seen {
                sleeping = s.wake.wait(sleeping).unwrap_or_else(|e| e.into_inner());
            }
            *sleeping -= 1;
        }
        seen = s.epoch.load(Acquire);
        if s.stop.load(Acquire) {
            return;
        }
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            // A panicking job is the caller's to report (member 0 runs the same code); the
            // helper counts itself done either way so the caller never waits forever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(member)));
        }
        s.done.fetch_add(1, Release);
    }
}

/// Splits `out`, `rows` rows of `width` values, among the global team's members (shares in
/// units of `unit` rows) and runs `f(rows, their values)` on each member.
pub fn for_rows(
    out: &mut [f32],
    width: usize,
    unit: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let team = Team::global();
    let rows = out.len() / width.max(1);
    let size = team.size().min(rows.div_ceil(unit)).max(1);
    if size == 1 {
        return f(0..rows, out);
    }
    let mut parts = Vec::with_capacity(size);
    let mut rest = out;
    for i in 0..size {
        let r = share(rows, i, size, unit);
        let (mine, tail) = rest.split_at_mut(r.len() * width);
        parts.push(Mutex::new((r, mine)));
        rest = tail;
    }
    team.run(&|m| {
        if let Some(part) = parts.get(m) {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            let (r, values) = &mut *part;
            f(r.clone(), values);
        }
    });
}

/// The share of `0..n` that member `i` of `size` takes: contiguous, in units of `unit`.
pub fn share(n: usize, i: usize, size: usize, unit: usize) -> std::ops::Range<usize> {
    let units = n.div_ceil(unit);
    let (lo, hi) = (units * i / size, units * (i + 1) / size);
    (lo * unit).min(n)..(hi * unit).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_runs_each_job_once_and_shares_cover_the_range() {
        let team = Team::new(3);
        let hits = AtomicUsize::new(0);
        for _ in 0..1000 {
            team.run(&|m| {
                hits.fetch_add(1 << (8 * m), Relaxed);
            });
        }
        assert_eq!(hits.load(Relaxed), 1000 * (1 + (1 << 8) + (1 << 16)));
        for (n, size, unit) in [(10, 3, 1), (576, 2, 64), (5, 4, 4), (0, 2, 8)] {
            let covered: Vec<usize> = (0..size).flat_map(|i| share(n, i, size, unit)).collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>());
        }
    }
}
