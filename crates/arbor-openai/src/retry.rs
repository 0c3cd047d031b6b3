//! When to try again: jittered exponential backoff and `Retry-After`.
use std::time::{Duration, SystemTime};

use rand::Rng;

use arbor_llm::LlmError;

use crate::RetryConfig;

/// The wait before attempt `attempt + 1` (attempts count from 1) after `err`.
///
/// A server's `Retry-After` is obeyed (capped by config); otherwise "equal jitter": half of the
/// exponential step fixed, half random, so retries spread out but never collapse to zero.
pub fn delay_after(cfg: &RetryConfig, attempt: u32, err: &LlmError) -> Duration {
    if let Some(ra) = err.retry_after() {
        return ra.min(Duration::from_secs(cfg.max_retry_after_secs));
    }
    let exp = cfg
        .base_delay_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let step = exp.min(cfg.max_delay_ms);
    let half = step / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=step - half))
}

/// Parses a `Retry-After` header: delta-seconds (fractions accepted) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<Duration>) -> LlmError {
        LlmError::Http {
            endpoint: "e".into(),
            status,
            body: String::new(),
            retry_after,
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = RetryConfig {
            base_delay_ms: 100,
            max_delay_ms: 1000,
            ..Default::default()
        };
        for _ in 0..100 {
            let d1 = delay_after(&cfg, 1, &http(500, None)).as_millis();
            let d3 = delay_after(&cfg, 3, &http(500, None)).as_millis();
            let d9 = delay_after(&cfg, 9, &http(500, None)).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            assert!((200..=400).contains(&d3), "{d3}");
            assert!((500..=1000).contains(&d9), "{d9}");
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let cfg = RetryConfig {
            max_retry_after_secs: 5,
            ..Default::default()
        };
        assert_eq!(
            delay_after(&cfg, 1, &http(429, Some(Duration::from_secs(2)))),
            Duration::from_secs(2)
        );
        assert_eq!(
            delay_after(&cfg, 1, &http(429, Some(Duration::from_secs(60)))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        let future = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
