//! Fault tolerance against the fault-injecting mock: every request ends as a result or a
//! reported failure, retries are bounded, `Retry-After` is obeyed, the breaker opens.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_serve::mock::{FaultRates, MockConfig, MockServer};
use arbor_llm::{LanguageModel, LlmError};
use common::{chat, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_requests_with_ten_percent_of_each_fault_all_end_accounted_for() {
    let seed = 11;
    let faulty = MockServer::start(
        MockConfig {
            seed,
            faults: FaultRates::uniform(0.1),
            retry_after_secs: 1,
            hang: Duration::from_secs(60),
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let clean = MockServer::start(
        MockConfig {
            seed,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let max_attempts = 6;
    let c = Arc::new(client(&faulty.base_url(), |cfg| {
        cfg.timeout_secs = 0.5;
        cfg.retry.max_attempts = max_attempts;
        cfg.retry.base_delay_ms = 10;
        cfg.retry.max_delay_ms = 100;
        cfg.limits.max_in_flight = 256;
        // Faults drawn at random, not from load: the adaptive limit would read them as
        // overload and slow the test down, and it is not what is tested here.
        cfg.limits.adaptive = false;
    }));
    let reference = Arc::new(client(&clean.base_url(), |_| {}));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let c = c.clone();
        tasks.spawn(async move { (i, c.generate(&chat(format!("item {i}"), i)).await) });
    }
    let mut outcomes = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, out) = r.expect("request task panicked");
        assert!(outcomes.insert(i, out).is_none(), "request {i} ended twice");
    }
    assert_eq!(outcomes.len(), 1000, "requests lost");

    let (mut ok, mut failed) = (0, 0);
    let mut causes: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, out) in &outcomes {
        match out {
            Ok(done) => {
                ok += 1;
                assert!(
                    (1..=max_attempts).contains(&done.meta.attempts),
                    "attempts {}",
                    done.meta.attempts
                );
                // The answer is the one for this request, not another's.
                let want = reference
                    .generate(&chat(format!("item {i}"), *i))
                    .await
                    .unwrap();
                assert_eq!(
                    done.choices, want.choices,
                    "request {i} got someone else's answer"
                );
            }
            Err(e) => {
                failed += 1;
                match e {
                    LlmError::Exhausted { attempts, last } => {
                        assert_eq!(*attempts, max_attempts);
                        assert!(last.is_retryable(), "{e}");
                    }
                    other => panic!("request {i} failed without exhausting retries: {other}"),
                }
                assert!(!e.to_string().is_empty());
                *causes.entry(e.kind()).or_default() += 1;
            }
        }
    }
    let client_stats = c.stats().unwrap();
    let server_stats = faulty.stats();
    eprintln!("ok {ok}, failed {failed}, causes {causes:?}\nclient: {client_stats}\nserver: {server_stats:?}");
    assert_eq!(client_stats.requests, 1000);
    assert_eq!(client_stats.succeeded, ok);
    assert_eq!(client_stats.failed, failed);
    // Every attempt the client counted reached the server exactly once.
    assert_eq!(client_stats.attempts, server_stats.requests);
    assert!(client_stats.attempts <= 1000 * u64::from(max_attempts));
    for (kind, n) in &server_stats.faults {
        assert!(*n > 0 || kind == "cut_answer" || kind == "same_choices", "fault {kind} never served");
    }
    // With a 30% success rate per attempt and 6 attempts, ~88% succeed.
    assert!(ok > 700, "only {ok} succeeded");
}

#[tokio::test]
async fn retry_after_is_obeyed() {
    let server = MockServer::start(
        MockConfig {
            faults: FaultRates {
                rate_limited: 1.0,
                ..Default::default()
            },
            retry_after_secs: 1,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let c = client(&server.base_url(), |cfg| {
        cfg.retry.max_attempts = 3;
        cfg.retry.base_delay_ms = 1;
        cfg.retry.max_delay_ms = 2;
    });
    let t = Instant::now();
    let e = c.generate(&chat("x", 1)).await.unwrap_err();
    let waited = t.elapsed();
    assert_eq!(e.kind(), "http_429");
    assert!(matches!(e, LlmError::Exhausted { attempts: 3, .. }), "{e}");
    // Two waits of Retry-After: 1 s each, where the backoff alone would wait ~2 ms.
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
    assert_eq!(server.stats().requests, 3);
}

#[tokio::test]
async fn breaker_opens_on_a_dead_endpoint_and_then_fails_fast() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}/v1"), |cfg| {
        cfg.retry.max_attempts = 4;
        cfg.retry.base_delay_ms = 5;
        cfg.retry.max_delay_ms = 20;
        cfg.breaker.min_failures = 5;
        cfg.breaker.window_secs = 0.2;
        cfg.breaker.cooldown_secs = 60.0;
    });
    let mut last = None;
    for i in 0..50 {
        match c.generate(&chat("x", i)).await {
            Err(e) if e.is_fatal() => {
                last = Some(e);
                break;
            }
            Err(e) => assert_eq!(e.kind(), "connect", "{e}"),
            Ok(_) => panic!("nothing listens there"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = last.expect("breaker never opened");
    let msg = e.to_string();
    assert!(
        msg.contains("circuit breaker open") && msg.contains(&port.to_string()),
        "{msg}"
    );
    let attempts = c.stats().unwrap().attempts;
    let e2 = c.generate(&chat("y", 99)).await.unwrap_err();
    assert_eq!(e2.kind(), "circuit_open");
    assert_eq!(
        c.stats().unwrap().attempts,
        attempts,
        "an open breaker must not send"
    );
}
