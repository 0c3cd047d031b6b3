//! A circuit breaker per endpoint, so a dead server stops a job with a clear message instead of
//! every item retrying into the void.
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use arbor_llm::LlmError;

use crate::BreakerConfig;

#[derive(Debug)]
struct State {
    consecutive_failures: u64,
    last_success: Instant,
    last_error: String,
    /// Set while open: no attempt passes before this instant.
    open_until: Option<Instant>,
    /// Half-open: the id of the one probe that is out; others wait for its verdict.
    probing: Option<u64>,
    probes: u64,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    endpoint: String,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(endpoint: &str, cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            endpoint: endpoint.to_string(),
            state: Mutex::new(State {
                consecutive_failures: 0,
                last_success: Instant::now(),
                last_error: String::new(),
                open_until: None,
                probing: None,
                probes: 0,
            }),
        }
    }

    /// May an attempt go out now? While open, fails fast with the reason. Keep the permit
    /// for the attempt: a half-open probe that ends without a recorded verdict (a
    /// non-retryable error, a dropped future) hands the probe back when its permit drops, so
    /// the breaker never stays half-open for good.
    pub fn check(&self) -> Result<Permit<'_>, LlmError> {
        let mut s = self.state.lock();
        match s.open_until {
            None => Ok(Permit {
                breaker: self,
                probe: None,
            }),
            Some(until) if Instant::now() >= until && s.probing.is_none() => {
                s.probes += 1;
                s.probing = Some(s.probes);
                Ok(Permit {
                    breaker: self,
                    probe: s.probing,
                })
            }
            Some(_) => Err(LlmError::CircuitOpen {
                endpoint: self.endpoint.clone(),
                failures: s.consecutive_failures,
                since_success: s.last_success.elapsed(),
                last_error: s.last_error.clone(),
            }),
        }
    }

    pub fn record_success(&self) {
        let mut s = self.state.lock();
        s.consecutive_failures = 0;
        s.last_success = Instant::now();
        s.open_until = None;
        s.probing = None;
    }

    /// Records a failed attempt; returns true if this failure opened the breaker.
    pub fn record_failure(&self, err: &LlmError) -> bool {
        let mut s = self.state.lock();
        s.consecutive_failures += 1;
        s.last_error = err.to_string();
        let cooldown = Duration::from_secs_f64(self.cfg.cooldown_secs);
        if s.probing.take().is_some() {
            s.open_until = Some(Instant::now() + cooldown);
            return false;
        }
        let sustained = s.consecutive_failures >= self.cfg.min_failures
            && s.last_success.elapsed() >= Duration::from_secs_f64(self.cfg.window_secs);
        if sustained && s.open_until.is_none() {
            s.open_until = Some(Instant::now() + cooldown);
            tracing::error!(endpoint = %self.endpoint, failures = s.consecutive_failures,
                last_error = %s.last_error, "circuit breaker opened");
            return true;
        }
        false
    }
}

/// Leave to make one attempt (see [`Breaker::check`]).
#[must_use]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: Option<u64>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.probe {
            let mut s = self.breaker.state.lock();
            if s.probing == Some(id) {
                s.probing = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> LlmError {
        LlmError::Connect {
            endpoint: "e".into(),
            detail: "refused".into(),
        }
    }

    #[test]
    fn opens_only_on_sustained_failure_then_probes() {
        let b = Breaker::new(
            "e",
            BreakerConfig {
                min_failures: 3,
                window_secs: 0.05,
                cooldown_secs: 0.05,
            },
        );
        for _ in 0..5 {
            b.record_failure(&err());
        }
        assert!(b.check().is_ok(), "within the window it stays closed");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.record_failure(&err()));
        let e = b.check().unwrap_err();
        assert_eq!(e.kind(), "circuit_open");
        assert!(e.to_string().contains("refused"), "{e}");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.check();
        assert!(probe.is_ok(), "one probe after the cooldown");
        assert!(b.check().is_err(), "only one probe at a time");
        b.record_success();
        drop(probe);
        assert!(b.check().is_ok());
    }

    #[test]
    fn a_probe_without_a_verdict_hands_the_probe_back() {
        let b = Breaker::new(
            "e",
            BreakerConfig {
                min_failures: 1,
                window_secs: 0.0,
                cooldown_secs: 0.05,
            },
        );
        assert!(b.record_failure(&err()));
        std::thread::sleep(Duration::from_millis(60));
        // The probe ends in a non-retryable error (nothing recorded) or its future is dropped.
        let probe = b.check().unwrap();
        assert!(b.check().is_err(), "only one probe at a time");
        drop(probe);
        assert!(b.check().is_ok(), "the next caller probes again");
        // A failed probe re-opens the breaker for another cooldown.
        let probe = b.check().unwrap();
        b.record_failure(&err());
        drop(probe);
        assert!(b.check().is_err(), "re-opened after a failed probe");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(
            "e",
            BreakerConfig {
                min_failures: 3,
                window_secs: 0.0,
                cooldown_secs: 10.0,
            },
        );
        b.record_failure(&err());
        b.record_failure(&err());
        b.record_success();
        b.record_failure(&err());
        b.record_failure(&err());
        assert!(b.check().is_ok());
        b.record_failure(&err());
        assert!(b.check().is_err());
    }
}
