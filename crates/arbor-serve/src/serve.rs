//! Serves any [`LanguageModel`] over the OpenAI-compatible HTTP API: `/v1/chat/completions`,
//! `/v1/completions` (both with `stream: true` as server-sent events), `/v1/models`, `/health`.
//! Bound to 127.0.0.1 unless told otherwise; with an API key, `/v1/*` wants
//! `Authorization: Bearer KEY`; a shutdown signal lets requests in flight finish.
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use arbor_llm::{LanguageModel, LlmError};

use crate::wire::{completion_to_openai, parse_request, ApiError, Chunks, Limits, Parsed};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: IpAddr,
    /// 0: any free port.
    pub port: u16,
    /// Required as `Authorization: Bearer KEY` on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Names the model answers to (the first is listed at `/v1/models`); a request naming
    /// another model is a 404. Empty: any name.
    pub models: Vec<String>,
    pub limits: Limits,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            api_key: None,
            models: Vec::new(),
            limits: Limits {
                context: None,
                max_n: 64,
            },
            max_body_bytes: 4 << 20,
        }
    }
}

struct App {
    model: Arc<dyn LanguageModel>,
    opts: ServeOptions,
}

/// A body larger than this is refused without reading it; a smaller one that is still over the
/// limit is read to its end first.
const DRAIN_BYTES: usize = 64 << 20;

/// The request body, at most `limit` bytes. One over the limit is still read to its end before
/// the 413 goes out: a server that answers and closes while the client is still sending leaves
/// the client a broken pipe instead of the error.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let too_large = |got: &str| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body is {got} bytes; this server takes at most {limit} bytes"),
        param: None,
        code: None,
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > limit.max(DRAIN_BYTES)) {
        return Err(too_large(&n.to_string()));
    }
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("reading the request body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > limit.max(DRAIN_BYTES) {
            return Err(too_large(&format!("over {seen}")));
        }
    }
    if seen > limit {
        return Err(too_large(&seen.to_string()));
    }
    Ok(Bytes::from(kept))
}

fn error(e: ApiError) -> Response {
    (e.status, Json(e.body())).into_response()
}

impl App {
    fn authorized(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.opts.api_key else { return Ok(()) };
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            return Ok(());
        }
        // The key given is not repeated back: a log of the answer would leak it.
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: if given.is_some() {
                "Incorrect API key provided.".into()
            } else {
                "Missing API key: send `Authorization: Bearer KEY`.".into()
            },
            param: None,
            code: Some("invalid_api_key"),
        })
    }

    fn served_model(&self, p: &Parsed) -> Result<String, ApiError> {
        let first = self.opts.models.first().cloned().unwrap_or_else(|| self.model.describe());
        match &p.model {
            Some(m) if !self.opts.models.is_empty() && !self.opts.models.contains(m) => Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("The model `{m}` does not exist; this server serves {}", self.opts.models.join(", ")),
                param: Some("model".into()),
                code: Some("model_not_found"),
            }),
            Some(m) => Ok(m.clone()),
            None => Ok(first),
        }
    }

    async fn handle(
        self: Arc<Self>,
        headers: HeaderMap,
        body: Body,
        chat: bool,
    ) -> Response {
        if let Err(e) = self.authorized(&headers) {
            return error(e);
        }
        let body = match read_body(&headers, body, self.opts.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(ApiError::invalid("body", format!("invalid JSON: {e}"))),
        };
        let parsed = match parse_request(&v, chat, &self.opts.limits) {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let name = match self.served_model(&parsed) {
            Ok(n) => n,
            Err(e) => return error(e),
        };
        let chunks = Chunks {
            chat,
            id: next_id(),
            created: now(),
            model: name,
            include_usage: parsed.include_usage,
        };
        if parsed.stream {
            return stream(self.model.clone(), parsed, chunks).into_response();
        }
        match self.model.generate(&parsed.req).await {
            Ok(mut c) => {
                c.model = chunks.model.clone();
                Json(completion_to_openai(&c, chat, &chunks.id, chunks.created)).into_response()
            }
            Err(e) => error(model_error(e)),
        }
    }
}

/// A model's refusal of the request itself (the embedded model's `Invalid`: a prompt longer than
/// the context, an unsupported schema) is the client's 400; anything else is the server's 500.
fn model_error(e: LlmError) -> ApiError {
    match e {
        LlmError::Invalid(m) => ApiError::invalid("messages", m),
        other => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: other.to_string(),
            param: None,
            code: None,
        },
    }
}

fn next_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("arbor-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Server-sent events: chat's role chunks, the text as it is generated, each choice's finish,
/// the usage when asked for, then `[DONE]`. A failure after the stream began is an `error` event.
fn stream(
    model: Arc<dyn LanguageModel>,
    p: Parsed,
    chunks: Chunks,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (events, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let send = |v: Value| events.send(Event::default().data(v.to_string()));
        if chunks.chat {
            for i in 0..p.req.params.n {
                let _ = send(chunks.role(i)).await;
            }
        }
        let (tx, mut deltas) = mpsc::unbounded_channel();
        let generation = model.generate_stream(&p.req, tx);
        tokio::pin!(generation);
        let result = loop {
            tokio::select! {
                Some(d) = deltas.recv() => { let _ = send(chunks.delta(&d)).await; }
                r = &mut generation => break r,
            }
        };
        while let Ok(d) = deltas.try_recv() {
            let _ = send(chunks.delta(&d)).await;
        }
        match result {
            Ok(c) => {
                for v in chunks.ends(&c) {
                    let _ = send(v).await;
                }
            }
            Err(e) => {
                let _ = send(model_error(e).body()).await;
            }
        }
        let _ = events.send(Event::default().data("[DONE]")).await;
    });
    Sse::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok(e), rx))
    }))
}

/// Resolves at the first Ctrl-C or SIGTERM (what `arbor serve` stops on).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serves `app` on `listener` with TCP_NODELAY on every connection, so replies go out at once
/// instead of waiting on Nagle's algorithm (the mock server uses it too).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> std::io::Result<()> {
    serve_router_until(listener, app, std::future::pending()).await
}

/// [`serve_router`] until `shutdown` resolves; requests in flight then finish first.
pub async fn serve_router_until(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `opts.host:opts.port` and serves `model` until `shutdown` resolves and the requests in
/// flight have finished (the returned task then ends). Returns the bound address and the task.
pub async fn serve(
    model: Arc<dyn LanguageModel>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind((opts.host, opts.port)).await?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App { model, opts });
    let (a1, a2, a3) = (app.clone(), app.clone(), app);
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(move |h: HeaderMap, b: Body| a1.clone().handle(h, b, true)),
        )
        .route(
            "/v1/completions",
            post(move |h: HeaderMap, b: Body| a2.clone().handle(h, b, false)),
        )
        .route(
            "/v1/models",
            get(move |h: HeaderMap| async move {
                if let Err(e) = a3.authorized(&h) {
                    return error(e);
                }
                let names = if a3.opts.models.is_empty() { vec![a3.model.describe()] } else { a3.opts.models.clone() };
                let data: Vec<Value> = names.iter().map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "arbor"})).collect();
                Json(json!({"object": "list", "data": data})).into_response()
            }),
        )
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }));
    let task = tokio::spawn(async move {
        if let Err(e) = serve_router_until(listener, router, shutdown).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok((addr, task))
}
