use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use super::{reply, Fault, FaultRates};

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Delay before every answer.
    pub latency: Duration,
    /// Seed of the replies and of the fault draws.
    pub seed: u64,
    pub faults: FaultRates,
    /// The `Retry-After` value sent with 429s, in seconds.
    pub retry_after_secs: u64,
    /// How long a hang lasts before the (late) answer.
    pub hang: Duration,
    /// Answer `n > 1` with one choice, like servers that ignore `n`.
    pub ignore_n: bool,
    /// Decoding slots reported at `GET /props` (`total_slots`, as llama.cpp's server does);
    /// none: no `/props`.
    pub slots: Option<usize>,
    /// The tokens a slot holds, reported beside `slots` (`default_generation_settings.n_ctx`).
    pub slot_context: Option<usize>,
    /// Decode at most this many requests at a time, the rest waiting in the mock's queue (as a
    /// real server's slots do); `latency` is then the time in a slot. Defaults to `slots`.
    pub capacity: Option<usize>,
    /// Report llama.cpp's `timings` (the time in a slot) with each answer.
    pub timings: bool,
    /// The API key requests must carry (`Authorization: Bearer KEY`); a request without it
    /// gets a 401 whose message repeats the header it sent, as careless servers do.
    pub api_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            seed: 0,
            faults: FaultRates::default(),
            retry_after_secs: 1,
            hang: Duration::from_secs(600),
            ignore_n: false,
            slots: None,
            slot_context: None,
            capacity: None,
            timings: true,
            api_key: None,
        }
    }
}

/// What the mock has served, as `GET /stats` reports it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct MockStats {
    /// API requests received (chat and completions).
    pub requests: u64,
    /// Requests answered normally.
    pub ok: u64,
    /// Requests with a malformed body (answered 400).
    pub bad_requests: u64,
    /// Faults served, by kind.
    pub faults: BTreeMap<String, u64>,
    pub in_flight: u64,
    pub peak_in_flight: u64,
    /// Arrival time of every API request, seconds since the server started (rate-limit tests).
    #[serde(default)]
    pub arrivals: Vec<f64>,
    /// For each normal answer: its request's arrival time and the tokens (prompt + completion)
    /// its usage reports (tokens-per-minute tests).
    #[serde(default)]
    pub served: Vec<(f64, u64)>,
}

#[derive(Default)]
struct Counters {
    arrivals: std::sync::Mutex<Vec<f64>>,
    served: std::sync::Mutex<Vec<(f64, u64)>>,
    requests: AtomicU64,
    ok: AtomicU64,
    bad_requests: AtomicU64,
    faults: [AtomicU64; Fault::ALL.len()],
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

struct Shared {
    cfg: MockConfig,
    /// The decoding slots (`capacity`); none: every request decodes at once.
    decoders: Option<tokio::sync::Semaphore>,
    counters: Counters,
    started: std::time::Instant,
}

impl Shared {
    fn arrived(&self) -> f64 {
        let t = self.started.elapsed().as_secs_f64();
        self.counters.arrivals.lock().unwrap_or_else(|p| p.into_inner()).push(t);
        t
    }

    fn stats(&self) -> MockStats {
        let c = &self.counters;
        MockStats {
            requests: c.requests.load(Relaxed),
            ok: c.ok.load(Relaxed),
            bad_requests: c.bad_requests.load(Relaxed),
            faults: Fault::ALL
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().to_string(), c.faults[i].load(Relaxed)))
                .collect(),
            in_flight: c.in_flight.load(Relaxed),
            peak_in_flight: c.peak_in_flight.load(Relaxed),
            arrivals: c.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            served: c.served.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Counts a request in flight until dropped, even when the client gives up and the handler's
/// future is dropped mid-way.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> Self {
        let now = c.in_flight.fetch_add(1, Relaxed) + 1;
        c.peak_in_flight.fetch_max(now, Relaxed);
        Self(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A running mock server; stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Binds 127.0.0.1:`port` (0 picks a free port) and serves in the background.
    pub async fn start(cfg: MockConfig, port: u16) -> std::io::Result<Self> {
        cfg.faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            decoders: cfg.capacity.or(cfg.slots).map(|n| tokio::sync::Semaphore::new(n.max(1))),
            cfg,
            counters: Counters::default(),
            started: std::time::Instant::now(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(models))
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/stats", get(stats))
            .route("/props", get(props))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = crate::serve::serve_router(listener, app).await {
                tracing::error!(error = %e, "mock server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client should use, `/v1` included.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// Serves until the task ends (for the CLI).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = s.arrived();
    if let Some(denied) = unauthorized(&s, &headers) {
        return denied;
    }
    serve(&s, "chat/completions", body, at).await
}

async fn completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = s.arrived();
    if let Some(denied) = unauthorized(&s, &headers) {
        return denied;
    }
    serve(&s, "completions", body, at).await
}

/// The 401 for a request without the configured key (counted as a bad request).
fn unauthorized(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let want = s.cfg.api_key.as_deref()?;
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sent.strip_prefix("Bearer ") == Some(want) {
        return None;
    }
    s.counters.bad_requests.fetch_add(1, Relaxed);
    Some(error_body(
        StatusCode::UNAUTHORIZED,
        &format!("Incorrect API key provided: {sent:?}"),
    ))
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "mock", "object": "model"}]}))
}

async fn props(State(s): State<Arc<Shared>>) -> Response {
    match s.cfg.slots {
        Some(n) => Json(json!({
            "total_slots": n,
            "default_generation_settings": {"n_ctx": s.cfg.slot_context},
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<MockStats> {
    Json(s.stats())
}

fn error_body(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": msg, "type": "mock_fault"}})),
    )
        .into_response()
}

async fn serve(s: &Shared, path: &str, body: Bytes, arrived: f64) -> Response {
    let c = &s.counters;
    let serial = c.requests.fetch_add(1, Relaxed);
    let _guard = InFlight::enter(c);
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            c.bad_requests.fetch_add(1, Relaxed);
            return error_body(StatusCode::BAD_REQUEST, "request body is not a JSON object");
        }
    };
    let fault = s.cfg.faults.draw(s.cfg.seed, serial);
    if let Some(f) = fault {
        let i = Fault::ALL
            .iter()
            .position(|x| *x == f)
            .expect("fault is listed");
        c.faults[i].fetch_add(1, Relaxed);
    }
    let wait = if fault == Some(Fault::Hang) {
        s.cfg.hang
    } else {
        s.cfg.latency
    };
    // Waits for a slot as a server's queue does; the time in it is what `timings` reports.
    let _slot = match &s.decoders {
        Some(d) => Some(d.acquire().await.expect("never closed")),
        None => None,
    };
    let decoding = std::time::Instant::now();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let ok = || {
        let mut r = reply(path, &request, s.cfg.seed, s.cfg.ignore_n);
        if s.cfg.timings {
            let ms = decoding.elapsed().as_secs_f64() * 1000.0;
            r["timings"] = json!({"prompt_ms": 0.0, "predicted_ms": ms});
        }
        r
    };
    let json_response =
        |v: Vec<u8>| ([(header::CONTENT_TYPE, "application/json")], v).into_response();
    match fault {
        None | Some(Fault::Hang) => {
            c.ok.fetch_add(1, Relaxed);
            let r = ok();
            let tokens = ["prompt_tokens", "completion_tokens"].iter().filter_map(|k| r["usage"][k].as_u64()).sum();
            c.served.lock().unwrap_or_else(|p| p.into_inner()).push((arrived, tokens));
            json_response(r.to_string().into_bytes())
        }
        Some(Fault::RateLimited) => {
            let mut r = error_body(StatusCode::TOO_MANY_REQUESTS, "rate limited (injected)");
            r.headers_mut().insert(header::RETRY_AFTER, s.cfg.retry_after_secs.into());
            r
        }
        Some(Fault::ServerError) => error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal error (injected)"),
        Some(Fault::Unavailable) => error_body(StatusCode::SERVICE_UNAVAILABLE, "unavailable (injected)"),
        Some(Fault::Truncated) => {
            let mut full = ok().to_string().into_bytes();
            full.truncate(full.len() / 2);
            json_response(full)
        }
        Some(Fault::WrongSchema) => json_response(json!({"id": "mock", "object": "chat.completion", "output": {"text": "wrong shape"}}).to_string().into_bytes()),
        Some(Fault::CutAnswer) => {
            c.ok.fetch_add(1, Relaxed);
            json_response(cut_answer(ok()).to_string().into_bytes())
        }
        Some(Fault::SameChoices) => {
            c.ok.fetch_add(1, Relaxed);
            let mut r = ok();
            if let Some(choices) = r.get_mut("choices").and_then(Value::as_array_mut) {
                let first = choices.first().cloned();
                for (i, ch) in choices.iter_mut().enumerate() {
                    if let Some(f) = &first {
                        *ch = f.clone();
                        ch["index"] = json!(i);
                    }
                }
            }
            json_response(r.to_string().into_bytes())
        }
        Some(Fault::EmptyChoices) => json_response(json!({"id": "mock", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0}}).to_string().into_bytes()),
    }
}

/// `reply` with every choice's text cut to half its characters and `finish_reason: "length"`.
fn cut_answer(mut reply: Value) -> Value {
    if let Some(choices) = reply.get_mut("choices").and_then(Value::as_array_mut) {
        for ch in choices {
            let at = if ch.get("text").is_some() {
                "/text"
            } else {
                "/message/content"
            };
            if let Some(t @ Value::String(_)) = ch.pointer_mut(at) {
                let s = t.as_str().unwrap_or_default();
                *t = Value::String(s.chars().take(s.chars().count() / 2).collect());
            }
            ch["finish_reason"] = json!("length");
        }
    }
    reply
}

/// Reads `GET /stats` of a mock server given its base URL (with or without `/v1`).
pub async fn fetch_stats(base_url: &str) -> Result<MockStats, String> {
    let mut u: url::Url = base_url
        .parse()
        .map_err(|e| format!("bad URL {base_url}: {e}"))?;
    u.set_path("/stats");
    let resp = reqwest::get(u.clone())
        .await
        .map_err(|e| format!("GET {u}: {e}"))?;
    resp.json().await.map_err(|e| format!("GET {u}: {e}"))
}

/// `GET /health` of any server given a URL on it: true once it answers `{"status": "ok"}`.
pub async fn fetch_health(url: &str) -> Result<bool, String> {
    let resp = reqwest::get(url)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let v: Value = resp.json().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(v.get("status").and_then(Value::as_str) == Some("ok"))
}
