//! The in-flight limit of one endpoint, adapted to what the server can take (AIMD).
//!
//! A server decodes a fixed number of requests at a time; more in flight only wait inside it,
//! where their waiting counts against the per-attempt timeout and turns into timeouts,
//! retries and an open breaker. The limit therefore grows while requests are not queued and
//! shrinks when they are, or when the server answers with overload:
//! - **queued**: the server's own `timings` (llama.cpp) say how long it worked on a request;
//!   the rest of the latency was spent waiting in its queue. Without timings, the latency per
//!   generated token against its unqueued baseline (TCP Vegas' idea) stands in.
//! - **overload**: a timeout, 429 or 503, or a refused connection.
//!
//! Increase is additive (+1 per round of `limit` completions) once the limit has been cut; before
//! that +1 per completion that found the limit at least half used (slow start). Each cut is multiplicative, at most once per round, so
//! one burst of queued answers counts once. A server that reports its slots starts there and is
//! never given more; below them a request cannot queue in it, so only overload cuts that limit
//! (llama.cpp's timings count the prompt processing of other requests batched with this one as
//! this one's waiting, which read as queueing held a job at 3 of 8 slots).
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// How an attempt ended, for the limit.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Answered: the attempt's wall time, the time the server says it worked on it (if it
    /// says), and the tokens it generated.
    Answered {
        latency: Duration,
        server: Option<Duration>,
        tokens: u64,
    },
    /// The server could not take the request (timeout, 429, 503, connection refused).
    Overloaded,
    /// Failed for a reason that says nothing about load (a 400, a bad body).
    Neutral,
}

/// Waiting in the server's queue longer than this share of its own work time (and at least
/// `QUEUE_FLOOR`) means more was sent than it decodes at once.
const QUEUE_SHARE: f64 = 0.25;
const QUEUE_FLOOR: Duration = Duration::from_millis(20);
/// Without server timings: a short-run latency per token above this multiple of the unqueued
/// baseline means queueing.
const TOLERANCE: f64 = 2.0;
const CUT_QUEUED: f64 = 0.8;
const CUT_OVERLOAD: f64 = 0.7;

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// No cut yet: double per round instead of +1.
    slow_start: bool,
    /// Slots handed out before the last cut: their answers were sent at the old limit and
    /// cannot cut again (one cut per round, as TCP cuts once per window).
    cut_at: u64,
    /// Latency per token without server timings: short-run average and unqueued baseline.
    short: Option<f64>,
    floor: Option<f64>,
    // Totals for the summary.
    waited: Duration,
    latency: Duration,
    acquired: u64,
    answered: u64,
    cuts: u64,
    /// Callers waiting for room, by (priority, arrival): only the first may take it.
    waiting: BTreeSet<(u64, u64)>,
    arrivals: u64,
}

/// The adaptive limit: callers `acquire` a slot, report the attempt's `Outcome` on it.
#[derive(Debug)]
pub struct Concurrency {
    state: Mutex<State>,
    wake: Notify,
    /// The configured maximum, and after a server said its slots, that.
    max: Mutex<usize>,
    /// The server said its slots: the maximum is what it decodes at once, and waiting seen in
    /// an answer is not its queue.
    slots_known: std::sync::atomic::AtomicBool,
    adaptive: bool,
}

/// A slot in flight; returned (and the waiters woken) when dropped.
pub struct Slot {
    owner: Arc<Concurrency>,
    /// The limit was reached when this slot was taken: its completion may raise the limit
    /// (a limit that is not used says nothing about whether more would be served).
    saturated: bool,
    /// Its place in the order slots were handed out.
    ticket: u64,
    /// The sequences it decodes.
    width: usize,
}

/// A caller's place in the wait queue, given up if its wait is dropped.
struct Queued<'a> {
    owner: &'a Concurrency,
    me: (u64, u64),
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.owner.state.lock().waiting.remove(&self.me);
        self.owner.wake.notify_waiters();
    }
}

/// What the limit did, for stats.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConcurrencyStats {
    pub limit: usize,
    pub waited: Duration,
    pub latency: Duration,
    pub acquired: u64,
    pub answered: u64,
    pub cuts: u64,
}

impl Concurrency {
    /// A limit of at most `max` in flight, starting at `start`. Not adaptive: fixed at `max`.
    pub fn new(max: usize, start: usize, adaptive: bool) -> Arc<Self> {
        let max = max.max(1);
        let limit = if adaptive { start.clamp(1, max) } else { max };
        Arc::new(Self {
            state: Mutex::new(State {
                limit: limit as f64,
                in_flight: 0,
                slow_start: true,
                cut_at: 0,
                short: None,
                floor: None,
                waited: Duration::ZERO,
                latency: Duration::ZERO,
                acquired: 0,
                answered: 0,
                cuts: 0,
                waiting: BTreeSet::new(),
                arrivals: 0,
            }),
            wake: Notify::new(),
            max: Mutex::new(max),
            slots_known: std::sync::atomic::AtomicBool::new(false),
            adaptive,
        })
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().limit as usize
    }

    pub fn stats(&self) -> ConcurrencyStats {
        let s = self.state.lock();
        ConcurrencyStats {
            limit: s.limit as usize,
            waited: s.waited,
            latency: s.latency,
            acquired: s.acquired,
            answered: s.answered,
            cuts: s.cuts,
        }
    }

    /// The server said it decodes `n` at a time: start there and never go above it. Returns
    /// whether that lowered the maximum.
    pub fn server_slots(&self, n: usize) -> bool {
        let n = n.max(1);
        let mut max = self.max.lock();
        let lowered = n < *max;
        *max = (*max).min(n);
        let mut s = self.state.lock();
        s.limit = if self.adaptive {
            *max as f64
        } else {
            s.limit.min(*max as f64)
        };
        // Past the slots more in flight only queue: no slow start above them.
        s.slow_start = false;
        self.slots_known.store(true, std::sync::atomic::Ordering::Relaxed);
        lowered
    }

    /// Waits for room under the limit for one sequence.
    #[cfg(test)]
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        self.acquire_n(1).await
    }

    /// Waits for room for a request that decodes `n` sequences (`n` choices take `n` of a
    /// server's slots); one wider than the whole limit goes alone. Waiters are served by the
    /// calling task's priority (`arbor_llm::priority`), then in arrival order.
    pub async fn acquire_n(self: &Arc<Self>, n: usize) -> Slot {
        let n = n.max(1);
        let asked = Instant::now();
        let me = {
            let mut s = self.state.lock();
            s.arrivals += 1;
            let me = (arbor_llm::priority::current(), s.arrivals);
            s.waiting.insert(me);
            me
        };
        // Leaves the queue however the wait ends (a cancelled caller must not block the rest).
        let queued = Queued { owner: self, me };
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Registered before the check, so a release between the check and the wait wakes us.
            woken.as_mut().enable();
            {
                let mut s = self.state.lock();
                let limit = (s.limit as usize).max(1);
                let first = s.waiting.first() == Some(&me);
                if first && (s.in_flight + n <= limit || s.in_flight == 0) {
                    s.waiting.remove(&me);
                    s.in_flight += n;
                    s.acquired += 1;
                    s.waited += asked.elapsed();
                    let slot = Slot {
                        owner: self.clone(),
                        // At least half the limit in use (as Netflix's AIMD limiter counts).
                        saturated: s.in_flight * 2 >= limit,
                        ticket: s.acquired,
                        width: n,
                    };
                    drop(s);
                    std::mem::forget(queued);
                    // The next in line may fit in what is left.
                    self.wake.notify_waiters();
                    return slot;
                }
            }
            woken.await;
        }
    }

    fn record(&self, outcome: Outcome, saturated: bool, ticket: u64) {
        let max = *self.max.lock() as f64;
        let slots_known = self.slots_known.load(std::sync::atomic::Ordering::Relaxed);
        let mut s = self.state.lock();
        let cut = match outcome {
            Outcome::Neutral => return,
            Outcome::Overloaded => Some(CUT_OVERLOAD),
            Outcome::Answered {
                latency,
                server,
                tokens,
            } => {
                s.answered += 1;
                s.latency += latency;
                let queued = match server {
                    // Within the server's slots nothing of ours waits in its queue.
                    _ if slots_known => false,
                    Some(work) => {
                        let waited = latency.saturating_sub(work);
                        waited > QUEUE_FLOOR
                            && waited.as_secs_f64() > QUEUE_SHARE * work.as_secs_f64()
                    }
                    None => s.inflated(latency.as_secs_f64() / (tokens + 1) as f64),
                };
                queued.then_some(CUT_QUEUED)
            }
        };
        if !self.adaptive {
            return;
        }
        match cut {
            Some(factor) if ticket > s.cut_at => {
                s.limit = (s.limit * factor).max(1.0);
                s.cut_at = s.acquired;
                s.slow_start = false;
                s.cuts += 1;
                // The average was measured at the old limit.
                s.short = s.floor;
            }
            Some(_) => {}
            None if saturated => {
                let step = if s.slow_start { 1.0 } else { 1.0 / s.limit };
                s.limit = (s.limit + step).min(max);
            }
            None => {}
        }
    }
}

impl State {
    /// Feeds one latency per token into the short-run average and the baseline (the lowest
    /// seen, which drifts up slowly so that a lasting change of the server is learned);
    /// whether the average is above `TOLERANCE` times the baseline. The first requests of a
    /// job find the server idle, so the baseline is the unqueued figure.
    fn inflated(&mut self, per_token: f64) -> bool {
        self.short = Some(self.short.map_or(per_token, |a| a + 0.25 * (per_token - a)));
        self.floor = Some(self.floor.map_or(per_token, |f| (f * 1.002).min(per_token)));
        match (self.short, self.floor) {
            (Some(s), Some(f)) => self.answered > 8 && s > TOLERANCE * f,
            _ => false,
        }
    }
}

impl Slot {
    /// Reports how the attempt ended; a slot dropped unreported (a cancelled call) counts as
    /// neither.
    pub fn done(self, outcome: Outcome) {
        self.owner.record(outcome, self.saturated, self.ticket);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.state.lock().in_flight -= self.width;
        self.owner.wake.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(ms: u64, server_ms: Option<u64>) -> Outcome {
        Outcome::Answered {
            latency: Duration::from_millis(ms),
            server: server_ms.map(Duration::from_millis),
            tokens: 50,
        }
    }

    #[tokio::test]
    async fn grows_while_used_and_unqueued_and_is_cut_when_queued() {
        let c = Concurrency::new(64, 2, true);
        // Used to the limit, never queued: slow start grows it by half per round.
        for _ in 0..10 {
            let slots: Vec<_> =
                futures::future::join_all((0..c.limit()).map(|_| c.acquire())).await;
            for s in slots {
                s.done(answered(500, Some(495)));
            }
        }
        assert_eq!(c.limit(), 64);
        // Queued answers: cut once per round, not once per answer.
        let slots: Vec<_> = futures::future::join_all((0..8).map(|_| c.acquire())).await;
        for s in slots {
            s.done(answered(900, Some(400)));
        }
        assert_eq!(
            c.limit(),
            51,
            "one cut of 0.8 for a burst of queued answers"
        );
        assert_eq!(c.stats().cuts, 1);
    }

    /// Waiters are served by their task's priority, not in arrival order; one whose wait is
    /// dropped leaves the queue without blocking the rest.
    #[tokio::test]
    async fn waiters_are_served_by_priority() {
        let c = Concurrency::new(1, 1, false);
        let held = c.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in [5u64, 1, 4, 2, 3] {
            let (c, order) = (c.clone(), order.clone());
            tasks.push(tokio::spawn(arbor_llm::priority::with_priority(
                p,
                async move {
                    let slot = c.acquire().await;
                    order.lock().push(p);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    drop(slot);
                },
            )));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Priority 0 gives up its wait while first in line.
        let c0 = c.clone();
        let cancelled = tokio::spawn(arbor_llm::priority::with_priority(0, async move {
            c0.acquire().await;
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("a waiter is stuck behind one that left")
                .unwrap();
        }
        assert_eq!(*order.lock(), vec![1, 2, 3, 4, 5]);
        // Without a priority a caller comes after every prioritized one, and still gets in.
        let _ = tokio::time::timeout(Duration::from_secs(5), c.acquire())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_request_of_n_choices_takes_n_places() {
        let c = Concurrency::new(8, 8, false);
        let four = c.acquire_n(4).await;
        let _three = c.acquire_n(3).await;
        // 7 of 8 taken: another 4 must wait until the first 4 are back.
        let c2 = c.clone();
        let waiting = tokio::spawn(async move { c2.acquire_n(4).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        drop(four);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // Wider than the limit: alone, once nothing else is in flight.
        let lone = Concurrency::new(2, 2, false);
        drop(lone.acquire_n(5).await);
    }

    #[tokio::test]
    async fn an_unused_limit_does_not_grow() {
        let c = Concurrency::new(64, 4, true);
        for _ in 0..100 {
            c.acquire().await.done(answered(100, Some(99)));
        }
        assert_eq!(c.limit(), 4);
    }

    #[tokio::test]
    async fn overload_cuts_harder_and_fixed_limits_stay() {
        let c = Concurrency::new(64, 16, true);
        let slots: Vec<_> = futures::future::join_all((0..16).map(|_| c.acquire())).await;
        for s in slots {
            s.done(Outcome::Overloaded);
        }
        assert_eq!(c.limit(), 11, "one cut of 0.7 for the round");
        let f = Concurrency::new(10, 2, false);
        f.acquire().await.done(Outcome::Overloaded);
        assert_eq!(f.limit(), 10);
    }

    #[tokio::test]
    async fn server_slots_cap_and_start_the_limit() {
        let c = Concurrency::new(64, 8, true);
        assert!(c.server_slots(4));
        assert_eq!(c.limit(), 4);
        for _ in 0..50 {
            let slots: Vec<_> = futures::future::join_all((0..4).map(|_| c.acquire())).await;
            slots
                .into_iter()
                .for_each(|s| s.done(answered(100, Some(99))));
        }
        assert_eq!(c.limit(), 4, "never above what the server decodes");
        // Answers that look queued (llama.cpp's batched prompt processing) do not cut a limit
        // the server set; overload still does.
        for _ in 0..5 {
            let slots: Vec<_> = futures::future::join_all((0..4).map(|_| c.acquire())).await;
            slots
                .into_iter()
                .for_each(|s| s.done(answered(900, Some(400))));
        }
        assert_eq!((c.limit(), c.stats().cuts), (4, 0));
        let slots: Vec<_> = futures::future::join_all((0..4).map(|_| c.acquire())).await;
        slots.into_iter().for_each(|s| s.done(Outcome::Overloaded));
        assert_eq!(c.limit(), 2, "one cut of 0.7 for the round");
    }
}
