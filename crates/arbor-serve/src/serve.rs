//! Serves any [`LanguageModel`] over the OpenAI-compatible HTTP API on 127.0.0.1:
//! `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`.
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use arbor_llm::{Completion, LanguageModel, LlmRequest, Prompt, SamplingParams};

/// Reads an OpenAI request body (chat when `chat`, else legacy completions).
pub fn request_from_openai(body: &Value, chat: bool) -> Result<LlmRequest, String> {
    let obj = body
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("embedded")
        .to_string();
    let prompt = if chat {
        let messages = obj.get("messages").ok_or("field `messages` is required")?;
        Prompt::Chat(
            serde_json::from_value(messages.clone())
                .map_err(|e| format!("field `messages`: {e}"))?,
        )
    } else {
        match obj.get("prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            _ => return Err("field `prompt` must be a string".into()),
        }
    };
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    let int = |k: &str| obj.get(k).and_then(Value::as_u64);
    let (logprobs, top) = if chat {
        (
            obj.get("logprobs")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            int("top_logprobs").unwrap_or(0),
        )
    } else {
        match int("logprobs") {
            Some(k) => (true, k),
            None => (false, 0),
        }
    };
    let stop = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let n = int("n").unwrap_or(1);
    if n == 0 || n > 64 {
        return Err("field `n` must be between 1 and 64".into());
    }
    Ok(LlmRequest {
        model,
        prompt,
        params: SamplingParams {
            n: n as u32,
            temperature: num("temperature").map(|x| x as f32),
            top_p: num("top_p").map(|x| x as f32),
            top_k: int("top_k").map(|x| x as u32),
            max_tokens: int("max_tokens")
                .or_else(|| int("max_completion_tokens"))
                .map(|x| x as u32),
            stop,
            seed: int("seed"),
            logprobs,
            top_logprobs: top.min(20) as u32,
            json_schema: body
                .get("response_format")
                .and_then(|f| f.get("json_schema"))
                .and_then(|j| j.get("schema"))
                .cloned(),
        },
        tools: Vec::new(),
    })
}

/// An OpenAI response body for `c`, with the given `id` and `created` time.
pub fn completion_to_openai(c: &Completion, chat: bool, id: &str, created: u64) -> Value {
    let choices: Vec<Value> = c
        .choices
        .iter()
        .map(|ch| {
            let finish = serde_json::to_value(ch.finish_reason).unwrap_or(json!("stop"));
            let mut v = if chat && !ch.tool_calls.is_empty() {
                let calls: Vec<Value> = ch
                    .tool_calls
                    .iter()
                    .map(|t| json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}))
                    .collect();
                json!({"index": ch.index, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": finish})
            } else if chat {
                json!({"index": ch.index, "message": {"role": "assistant", "content": ch.text}, "finish_reason": finish})
            } else {
                json!({"index": ch.index, "text": ch.text, "finish_reason": finish})
            };
            if let Some(lps) = &ch.logprobs {
                v["logprobs"] = if chat {
                    json!({"content": lps.iter().map(|t| json!({"token": t.token, "logprob": t.logprob,
                        "top_logprobs": t.top.iter().map(|a| json!({"token": a.token, "logprob": a.logprob})).collect::<Vec<_>>()})).collect::<Vec<_>>()})
                } else {
                    json!({"tokens": lps.iter().map(|t| &t.token).collect::<Vec<_>>(),
                           "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                           "top_logprobs": lps.iter().map(|t| t.top.iter().map(|a| (a.token.clone(), json!(a.logprob))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>()})
                };
            }
            v
        })
        .collect();
    json!({
        "id": id,
        "object": if chat { "chat.completion" } else { "text_completion" },
        "created": created,
        "model": c.model,
        "choices": choices,
        "usage": {"prompt_tokens": c.usage.prompt_tokens, "completion_tokens": c.usage.completion_tokens, "total_tokens": c.usage.total()},
    })
}

async fn handle(model: Arc<dyn LanguageModel>, body: Bytes, chat: bool) -> Response {
    let err = |status: StatusCode, msg: String| {
        (
            status,
            Json(json!({"error": {"message": msg, "type": "invalid_request_error"}})),
        )
            .into_response()
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let req = match request_from_openai(&v, chat) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    match model.generate(&req).await {
        Ok(c) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let id = format!(
                "arbor-{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Json(completion_to_openai(&c, chat, &id, now)).into_response()
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Binds 127.0.0.1:`port` and serves `model` until the task is dropped. Returns the bound
/// address and the server task.
/// Serves `app` on `listener` with TCP_NODELAY on every connection, so replies go out at once
/// instead of waiting on Nagle's algorithm (the mock server uses it too).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

pub async fn serve(
    model: Arc<dyn LanguageModel>,
    port: u16,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let name = model.describe();
    let m1 = model.clone();
    let m2 = model.clone();
    let app =
        Router::new()
            .route(
                "/v1/chat/completions",
                post(move |b: Bytes| handle(m1.clone(), b, true)),
            )
            .route(
                "/v1/completions",
                post(move |b: Bytes| handle(m2.clone(), b, false)),
            )
            .route(
                "/v1/models",
                get(move || {
                    let name = name.clone();
                    async move {
                        Json(json!({"object": "list", "data": [{"id": name, "object": "model"}]}))
                    }
                }),
            )
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .with_state(());
    let task = tokio::spawn(async move {
        if let Err(e) = serve_router(listener, app).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok((addr, task))
}
