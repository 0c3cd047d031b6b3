//! Per-endpoint limits: requests in flight, requests/minute, tokens/minute.
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::concurrency::{Concurrency, ConcurrencyStats, Outcome, Slot};
use crate::LimitsConfig;

/// Where an adaptive limit starts when the server does not say its slots: low enough not to
/// flood a small server, and slow start reaches 64 within a few rounds.
const START_IN_FLIGHT: usize = 8;

/// A token bucket refilled continuously; `take` waits until enough is in it.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn per_minute(per_minute: u64) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            capacity: per_minute as f64,
            per_sec: per_minute as f64 / 60.0,
            state: Mutex::new((per_minute as f64, Instant::now())),
        })
    }

    /// Reserves `amount` (capped at capacity) and returns how long to wait before using it.
    /// Reserving up front, even into debt, keeps waiters in arrival order without a queue.
    fn reserve(&self, amount: f64) -> Duration {
        let amount = amount.min(self.capacity);
        let mut s = self.state.lock();
        let now = Instant::now();
        let level = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec).min(self.capacity);
        let after = level - amount;
        *s = (after, now);
        if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / self.per_sec)
        }
    }

    /// Waits until `amount` (capped at capacity) is in the bucket and takes it. Unlike
    /// `reserve`, a waiter sees what is given back while it waits: token estimates are refunded
    /// as answers report their usage, and a wait computed up front would ignore that.
    async fn take(&self, amount: f64) {
        let amount = amount.min(self.capacity);
        loop {
            let short = {
                let mut s = self.state.lock();
                let now = Instant::now();
                let level = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec).min(self.capacity);
                *s = (level, now);
                if level >= amount {
                    s.0 = level - amount;
                    return;
                }
                (amount - level) / self.per_sec
            };
            tokio::time::sleep(Duration::from_secs_f64(short.min(0.05))).await;
        }
    }

    /// Takes an under-estimate's rest once the real amount is known (into debt if need be).
    fn charge(&self, amount: f64) {
        let mut s = self.state.lock();
        let now = Instant::now();
        let level = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec).min(self.capacity);
        *s = (level - amount, now);
    }

    /// Returns an over-estimate once the real amount is known.
    fn refund(&self, amount: f64) {
        let mut s = self.state.lock();
        s.0 = (s.0 + amount).min(self.capacity);
    }
}

/// The limits of one endpoint, shared by every caller of it.
#[derive(Debug)]
pub struct Limiter {
    /// None: unlimited (`max_in_flight = 0`).
    in_flight: Option<Arc<Concurrency>>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// Held while a request is in flight.
pub struct Permit {
    slot: Option<Slot>,
}

impl Permit {
    /// Tells the in-flight limit how the attempt ended (see `concurrency`).
    pub fn done(self, outcome: Outcome) {
        if let Some(s) = self.slot {
            s.done(outcome);
        }
    }
}

impl Limiter {
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self {
            in_flight: (cfg.max_in_flight > 0).then(|| {
                Concurrency::new(cfg.max_in_flight, START_IN_FLIGHT, cfg.adaptive)
            }),
            requests: Bucket::per_minute(cfg.requests_per_minute),
            tokens: Bucket::per_minute(cfg.tokens_per_minute),
        }
    }

    /// Waits for the rate budgets and a free slot. `est_tokens` is the request's token estimate.
    /// `width`: the sequences the request decodes (its `n`).
    pub async fn acquire(&self, est_tokens: u64, width: u32) -> Permit {
        if let Some(b) = &self.requests {
            let wait = b.reserve(1.0);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        if let Some(b) = &self.tokens {
            b.take(est_tokens as f64).await;
        }
        let slot = match &self.in_flight {
            Some(c) => Some(c.acquire_n(width as usize).await),
            None => None,
        };
        Permit { slot }
    }

    /// The server decodes `n` requests at a time: the in-flight limit starts there and never
    /// goes above it (an unlimited endpoint stays so). Returns whether that lowered the maximum.
    pub fn server_slots(&self, n: usize) -> bool {
        self.in_flight.as_ref().is_some_and(|c| c.server_slots(n))
    }

    /// The in-flight limit's state (none when unlimited).
    pub fn concurrency(&self) -> Option<ConcurrencyStats> {
        self.in_flight.as_ref().map(|c| c.stats())
    }

    /// Corrects the token budget once the server has reported real usage: an over-estimate
    /// is given back, an under-estimate is charged (as debt later requests wait out), so the
    /// tokens the server sees per minute follow its usage, not arbor's guess.
    pub fn settle_tokens(&self, estimated: u64, actual: u64) {
        if let Some(b) = &self.tokens {
            if actual < estimated {
                b.refund((estimated - actual) as f64);
            } else if actual > estimated {
                b.charge((actual - estimated) as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_waits_in_proportion_to_debt() {
        let b = Bucket::per_minute(60).unwrap(); // one a second
        for _ in 0..60 {
            assert_eq!(b.reserve(1.0), Duration::ZERO);
        }
        let w = b.reserve(1.0);
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_millis(1000),
            "{w:?}"
        );
        let w2 = b.reserve(1.0);
        assert!(w2 > Duration::from_millis(1900), "{w2:?}");
    }

    #[tokio::test]
    async fn in_flight_is_bounded() {
        let l = Arc::new(Limiter::new(&LimitsConfig {
            max_in_flight: 2,
            adaptive: false,
            ..Default::default()
        }));
        let a = l.acquire(1, 1).await;
        let _b = l.acquire(1, 1).await;
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.acquire(1, 1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
    }
}
