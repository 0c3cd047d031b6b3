//! The OpenAI client against the mock: n fallback, shared limits, logprobs, the cache.
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arbor_serve::mock::{MockConfig, MockServer};
use arbor_llm::{CachedModel, LanguageModel, LlmRequest, ResponseCache, SamplingParams};
use arbor_openai::{EndpointConfig, OpenAiClient};
use common::{chat, client};

#[tokio::test]
async fn n_is_emulated_when_the_server_ignores_it() {
    let server = MockServer::start(
        MockConfig {
            ignore_n: true,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let c = client(&server.base_url(), |_| {});
    let mut req = chat("pick one", 5);
    req.params.n = 4;
    let first = c.generate(&req).await.unwrap();
    assert_eq!(first.choices.len(), 4);
    assert!(first.meta.n_fallback);
    assert_eq!(first.meta.attempts, 1, "four requests without a retry are not retries");
    let texts: HashSet<_> = first.choices.iter().map(|c| c.text.clone()).collect();
    assert_eq!(texts.len(), 4, "fallback samples must use distinct seeds");
    assert_eq!(
        first.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        server.stats().requests,
        4,
        "one native try, then three singles"
    );
    // Now known: the next request fans out at once.
    let second = c.generate(&req).await.unwrap();
    assert_eq!(second.choices, first.choices, "same seed, same samples");
    assert_eq!(server.stats().requests, 8);
}

#[tokio::test]
async fn native_n_and_logprobs() {
    let server = MockServer::start(MockConfig::default(), 0).await.unwrap();
    let c = client(&server.base_url(), |_| {});
    let mut req = chat("hello", 1);
    req.params.n = 3;
    req.params.logprobs = true;
    req.params.top_logprobs = 2;
    let r = c.generate(&req).await.unwrap();
    assert_eq!(r.choices.len(), 3);
    assert!(!r.meta.n_fallback);
    assert_eq!(server.stats().requests, 1);
    for ch in &r.choices {
        let lp = ch.logprobs.as_ref().expect("logprobs asked for");
        assert!(!lp.is_empty());
        assert_eq!(
            lp.iter().map(|t| t.token.as_str()).collect::<String>(),
            ch.text
        );
        assert!(lp.iter().all(|t| t.logprob < 0.0 && t.top.len() == 2));
    }
    let text = LlmRequest::text("mock", "Once upon").with_params(SamplingParams {
        logprobs: true,
        max_tokens: Some(5),
        ..Default::default()
    });
    let r = c.generate(&text).await.unwrap();
    assert!(r.choices[0].logprobs.as_ref().unwrap().len() <= 5);
    assert!(r.usage.completion_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_is_shared_by_every_client_of_an_endpoint() {
    let server = MockServer::start(
        MockConfig {
            latency: Duration::from_millis(50),
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let mut cfg = EndpointConfig::new(server.base_url().parse().unwrap(), "mock");
    cfg.limits.max_in_flight = 3;
    // Two clients built separately, as two actors of a job would.
    let a = Arc::new(OpenAiClient::new(cfg.clone()).unwrap());
    let b = Arc::new(OpenAiClient::new(cfg).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24u64 {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { m.generate(&chat(format!("q{i}"), i)).await.unwrap() });
    }
    while tasks.join_next().await.is_some() {}
    let s = server.stats();
    assert_eq!(s.requests, 24);
    assert_eq!(s.peak_in_flight, 3, "limit not shared or not reached");
}

#[tokio::test]
async fn a_rerun_makes_zero_requests_for_cached_items() {
    let server = MockServer::start(MockConfig::default(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = || async {
        let cache = Arc::new(ResponseCache::open(dir.path()).unwrap());
        let m = CachedModel::new(Arc::new(client(&server.base_url(), |_| {})), cache);
        let mut out = Vec::new();
        for i in 0..20u64 {
            out.push(m.generate(&chat(format!("c{i}"), i)).await.unwrap());
        }
        (out, m.stats().unwrap())
    };
    let (first, s1) = run().await;
    assert_eq!(server.stats().requests, 20);
    assert_eq!(s1.cache_hits, 0);
    let (second, s2) = run().await;
    assert_eq!(server.stats().requests, 20, "the rerun went to the server");
    assert_eq!(s2.cache_hits, 20);
    assert!(second.iter().all(|c| c.meta.cached));
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.choices, b.choices);
    }
}

/// `requests_per_minute` as the server sees it: a full bucket (one minute's worth) may arrive at
/// once, then one request per 60/rpm seconds. Caught if the limit never fires (every arrival
/// within milliseconds) or fires only for the first caller.
#[tokio::test]
async fn requests_per_minute_holds_at_the_server() {
    let server = MockServer::start(MockConfig::default(), 0).await.unwrap();
    let rpm = 60;
    let c = Arc::new(client(&server.base_url(), |cfg| {
        cfg.limits.requests_per_minute = rpm;
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..rpm + 3 {
        let c = c.clone();
        tasks.spawn(async move { c.generate(&chat(format!("r{i}"), i)).await.unwrap() });
    }
    while tasks.join_next().await.is_some() {}
    let mut t = server.stats().arrivals;
    t.sort_by(f64::total_cmp);
    assert_eq!(t.len(), rpm as usize + 3);
    let first = t[0];
    assert!(t[rpm as usize - 1] - first < 0.5, "the bucket's burst: {:?}", &t[..3]);
    for (k, at) in t[rpm as usize..].iter().enumerate() {
        let due = (k + 1) as f64; // one second per request at 60/min
        assert!(at - first >= due - 0.05, "request {} arrived at {:.2}s, due {due}s", rpm as usize + k, at - first);
    }
}

/// `tokens_per_minute` as the server sees it, counted from the usage of its answers: by any
/// moment, the tokens of the requests that arrived stay within one minute's budget plus its
/// refill (and the estimate of the requests in flight), and no longer than that. Caught if the
/// limit never fires (all arrive at once), or if waiters ignore refunds (over-throttling).
#[tokio::test]
async fn tokens_per_minute_holds_at_the_server() {
    let server = MockServer::start(MockConfig::default(), 0).await.unwrap();
    let tpm = 3000.0;
    let c = Arc::new(client(&server.base_url(), |cfg| {
        cfg.limits.tokens_per_minute = tpm as u64;
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..235u64 {
        let c = c.clone();
        tasks.spawn(async move { c.generate(&chat(format!("r{i}"), i)).await.unwrap() });
    }
    while tasks.join_next().await.is_some() {}
    let mut served = server.stats().served;
    served.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = served.iter().map(|s| s.1).sum();
    assert!(total as f64 > 1.1 * tpm, "the job should need more than a minute's tokens: {total}");
    let first = served[0].0;
    let mut sum = 0;
    for &(at, tokens) in &served {
        sum += tokens;
        let allowed = tpm + tpm / 60.0 * (at - first) + 2.0 * 21.0;
        assert!(sum as f64 <= allowed, "{sum} tokens by {:.2}s, allowed {allowed:.0}", at - first);
    }
    let span = served.last().unwrap().0 - first;
    let due = (total as f64 - tpm) / (tpm / 60.0);
    assert!(span >= 0.8 * due, "the limit should have spread {total} tokens over {due:.1}s, not {span:.1}s");
    // Estimates given back as usage comes in are spent at once, not after a wait computed
    // from the estimate.
    assert!(span <= 1.5 * due + 1.0, "{total} tokens took {span:.1}s, the budget allows {due:.1}s");
}

/// A server that reports its decoding slots (llama.cpp's `/props` `total_slots`) gets no more
/// requests at once than that, whatever `max_in_flight` says; one that does not (and decodes
/// everything at once) gets an adaptive limit that grows past its start of 8. Caught if the
/// slots are never asked or never applied, or if the limit cannot grow.
#[tokio::test]
async fn in_flight_stays_at_the_slots_the_server_reports() {
    let peak = |slots: Option<usize>| async move {
        let server = MockServer::start(
            MockConfig {
                latency: Duration::from_millis(40),
                slots,
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let c = Arc::new(client(&server.base_url(), |cfg| cfg.limits.max_in_flight = 64));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24u64 {
            let c = c.clone();
            tasks.spawn(async move { c.generate(&chat(format!("s{i}"), i)).await.unwrap() });
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(c.endpoint().server_slots(), slots);
        server.stats().peak_in_flight
    };
    assert_eq!(peak(Some(3)).await, 3);
    assert!(peak(None).await > 12, "without /props the limit grows while nothing queues");
}

/// A server whose slots hold 64 tokens: a request that cannot fit one is warned about, once
/// per endpoint; `n` choices that each fit a slot are not. Caught if the slot context is never
/// read, if every such request warns, or if `n` choices are measured as one sequence.
#[tokio::test]
async fn a_request_longer_than_a_slot_warns_once() {
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }
    let logs = Logs::default();
    // The test runs on one thread, so the subscriber sees every request's events.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish(),
    );
    let server = MockServer::start(
        MockConfig {
            slots: Some(2),
            slot_context: Some(64),
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let c = client(&server.base_url(), |_| {});
    let warnings = || {
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        text.matches("does not fit the server's 64-token slots").count()
    };
    // Four choices of up to 16 tokens each: 66 tokens in all, 18 in each slot.
    let mut four = chat("s", 1);
    four.params.n = 4;
    c.generate(&four).await.unwrap();
    assert_eq!(c.endpoint().slot_context(), Some(64));
    assert_eq!(warnings(), 0, "each of n choices fits a slot");
    for i in 0..3 {
        c.generate(&chat("x".repeat(400), 10 + i)).await.unwrap();
    }
    assert_eq!(warnings(), 1, "a ~116-token request warns, once per endpoint");
}

/// A server that decodes 4 requests at a time without saying so, asked by 64 callers: the
/// adaptive limit settles near its 4 slots, so requests wait in arbor instead of its queue, and
/// the server stays busy. Both signals: llama.cpp's `timings` (queue time = latency − work) and,
/// without them, latency per token against its unqueued baseline. Caught by a limit that never
/// adapts (64 in flight: every answer waits ~15 slots' turns), one that never cuts, or one
/// that collapses (the throughput bound).
#[tokio::test]
async fn the_adaptive_limit_finds_a_hidden_capacity() {
    for timings in [true, false] {
        let (capacity, latency_ms, requests) = (4usize, 40u64, 480u64);
        let server = MockServer::start(
            MockConfig {
                latency: Duration::from_millis(latency_ms),
                capacity: Some(capacity),
                timings,
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let c = Arc::new(client(&server.base_url(), |cfg| cfg.limits.max_in_flight = 64));
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut server_latency = Vec::new();
        for _ in 0..64 {
            let (c, next) = (c.clone(), next.clone());
            tasks.spawn(async move {
                let mut late = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        return late;
                    }
                    let t = std::time::Instant::now();
                    c.generate(&chat(format!("a{i}"), i)).await.unwrap();
                    late.push((i, t.elapsed()));
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            server_latency.extend(r.unwrap());
        }
        let secs = started.elapsed().as_secs_f64();
        let s = c.stats().unwrap();
        let ideal = requests as f64 * latency_ms as f64 / 1000.0 / capacity as f64;
        eprintln!("timings {timings}: {s}; {secs:.2}s (ideal {ideal:.2}s)");
        assert!(
            (capacity as u64..=2 * capacity as u64).contains(&s.in_flight_limit),
            "timings {timings}: the limit should settle near the {capacity} slots: {s}"
        );
        assert!(s.limit_cuts >= 1, "{s}");
        // Time in arbor's hands (the attempt's latency) stays near one slot's turn: at 64 in
        // flight it would be ~16 turns.
        let mean_latency = s.latency_ms as f64 / s.answered as f64;
        assert!(
            mean_latency < 2.5 * latency_ms as f64,
            "timings {timings}: answers queued in the server: {mean_latency:.0} ms mean latency"
        );
        assert!(
            secs < 1.4 * ideal,
            "timings {timings}: the server sat idle: {secs:.2}s for {requests} requests (ideal {ideal:.2}s)"
        );
    }
}
