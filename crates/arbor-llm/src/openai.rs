//! The OpenAI-compatible HTTP backend (`/v1/chat/completions`, `/v1/completions`): works with
//! vLLM, llama.cpp's server, Ollama and OpenAI.
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    retry, ApiKey, CallMeta, Choice, Completion, ConfigError, Endpoint, EndpointConfig,
    FinishReason, LanguageModel, LlmError, LlmRequest, Prompt, StatsSnapshot, TokenLogprob,
    TopLogprob, Usage,
};

/// A client for one OpenAI-compatible endpoint. Clones share the connection pool and the
/// endpoint's limits.
#[derive(Clone)]
pub struct OpenAiClient {
    cfg: Arc<EndpointConfig>,
    http: reqwest::Client,
    endpoint: Arc<Endpoint>,
    api_key: Option<ApiKey>,
}

impl OpenAiClient {
    /// A client sharing limits with every other client of the same base URL in this process.
    pub fn new(cfg: EndpointConfig) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::shared(&cfg);
        Self::with_endpoint(cfg, endpoint)
    }

    /// A client over given endpoint state (tests use a private one).
    pub fn with_endpoint(
        cfg: EndpointConfig,
        endpoint: Arc<Endpoint>,
    ) -> Result<Self, ConfigError> {
        cfg.validate("endpoint")?;
        let api_key = cfg.api_key()?;
        let http = endpoint.http.clone();
        Ok(Self {
            cfg: Arc::new(cfg),
            http,
            endpoint,
            api_key,
        })
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// One request with retries, backoff, limits and the breaker. Not counted as a logical
    /// request: `generate` does that.
    async fn call_with_retry(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let ep = &self.endpoint;
        let est = req.estimated_tokens();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Err(open) = ep.breaker.check() {
                return Err(give_up(attempt - 1, open));
            }
            let permit = ep.limiter.acquire(est).await;
            ep.stats.attempt(attempt > 1);
            let result = self.send_once(req).await;
            drop(permit);
            match result {
                Ok(mut c) => {
                    ep.breaker.record_success();
                    ep.limiter.settle_tokens(est, c.usage.total());
                    c.meta.attempts = attempt;
                    return Ok(c);
                }
                Err(e) => {
                    ep.stats.attempt_failed(&e);
                    if !e.is_retryable() {
                        return Err(give_up(attempt - 1, e));
                    }
                    ep.breaker.record_failure(&e);
                    if attempt >= self.cfg.retry.max_attempts {
                        return Err(give_up(attempt, e));
                    }
                    let wait = retry::delay_after(&self.cfg.retry, attempt, &e);
                    tracing::debug!(endpoint = %ep.name, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn send_once(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let ep = &self.endpoint.name;
        let (path, body) = request_body(req);
        let mut rb = self
            .http
            .post(self.cfg.url_for(path))
            .timeout(self.cfg.timeout())
            .json(&body);
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(key.expose());
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                LlmError::Timeout {
                    endpoint: ep.clone(),
                    after: self.cfg.timeout(),
                }
            } else {
                LlmError::Connect {
                    endpoint: ep.clone(),
                    detail: error_chain(&e),
                }
            }
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry::parse_retry_after);
        let bytes = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
            return Err(LlmError::Http {
                endpoint: ep.clone(),
                status: status.as_u16(),
                body,
                retry_after,
            });
        }
        parse_response(&bytes, req).map_err(|detail| LlmError::BadResponse {
            endpoint: ep.clone(),
            detail,
        })
    }

    /// Emulates `n` with `count` single-choice requests with distinct seeds, indices from `first`.
    async fn fan_out(
        &self,
        req: &LlmRequest,
        count: u32,
        first: u32,
    ) -> Result<Completion, LlmError> {
        let base = req.params.seed.unwrap_or_else(rand::random);
        let calls = (0..count).map(|i| {
            let mut one = req.clone();
            one.params.n = 1;
            one.params.seed = Some(base.wrapping_add(u64::from(first + i)));
            async move { self.call_with_retry(&one).await }
        });
        let mut out = Completion {
            model: req.model.clone(),
            choices: Vec::new(),
            usage: Usage::default(),
            meta: CallMeta::default(),
        };
        for (i, r) in futures::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            let c = r?;
            out.model = c.model;
            out.usage += c.usage;
            out.meta.attempts += c.meta.attempts;
            if let Some(mut ch) = c.choices.into_iter().next() {
                ch.index = first + i as u32;
                out.choices.push(ch);
            }
        }
        out.meta.n_fallback = true;
        Ok(out)
    }

    async fn generate_inner(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let n = req.params.n.max(1);
        if n > 1 && self.endpoint.ignores_n() {
            self.endpoint.stats.n_fallback();
            return self.fan_out(req, n, 0).await;
        }
        let mut c = self.call_with_retry(req).await?;
        let got = c.choices.len() as u32;
        if got < n {
            // The server ignored `n` (llama.cpp builds without it, some proxies): fill up with
            // single-choice requests and remember, so later requests fan out directly.
            if got == 1 {
                self.endpoint
                    .ignores_n
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(endpoint = %self.endpoint.name, "server ignores n > 1; using parallel requests");
            }
            self.endpoint.stats.n_fallback();
            let rest = self.fan_out(req, n - got, got).await?;
            c.choices.extend(rest.choices);
            c.usage += rest.usage;
            c.meta.attempts += rest.meta.attempts;
            c.meta.n_fallback = true;
        }
        Ok(c)
    }
}

#[async_trait]
impl LanguageModel for OpenAiClient {
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let stats = &self.endpoint.stats;
        stats.request();
        let r = self.generate_inner(req).await;
        match &r {
            Ok(c) => stats.finished(true, c.usage),
            Err(_) => stats.finished(false, Usage::default()),
        }
        r
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.endpoint.name, self.cfg.model)
    }

    fn stats(&self) -> Option<StatsSnapshot> {
        Some(self.endpoint.stats.snapshot(&self.endpoint.name))
    }
}

fn give_up(attempts: u32, last: LlmError) -> LlmError {
    if attempts <= 1 || matches!(last, LlmError::Exhausted { .. }) {
        last
    } else {
        LlmError::Exhausted {
            attempts,
            last: Box::new(last),
        }
    }
}

/// reqwest's top-level message is terse ("error sending request"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// The API path and JSON body of a request. Optional parameters are sent only when set, since
/// OpenAI rejects some (`top_k`) that local servers accept.
fn request_body(req: &LlmRequest) -> (&'static str, Value) {
    let p = &req.params;
    let mut b = Map::new();
    b.insert("model".into(), json!(req.model));
    let path = match &req.prompt {
        Prompt::Chat(messages) => {
            b.insert(
                "messages".into(),
                Value::Array(messages.iter().map(wire_message).collect()),
            );
            if !req.tools.is_empty() {
                let tools: Vec<Value> = req
                    .tools
                    .iter()
                    .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                    .collect();
                b.insert("tools".into(), Value::Array(tools));
            }
            if p.logprobs {
                b.insert("logprobs".into(), json!(true));
                if p.top_logprobs > 0 {
                    b.insert("top_logprobs".into(), json!(p.top_logprobs));
                }
            }
            "chat/completions"
        }
        Prompt::Text(text) => {
            b.insert("prompt".into(), json!(text));
            if p.logprobs {
                // The legacy API's `logprobs` is the number of alternatives; some servers return
                // nothing for 0, so ask for at least one and drop it when not wanted.
                b.insert("logprobs".into(), json!(p.top_logprobs.max(1)));
            }
            "completions"
        }
    };
    if let Some(schema) = &p.json_schema {
        b.insert("response_format".into(), json!({"type": "json_schema", "json_schema": {"name": "reply", "strict": true, "schema": schema}}));
    }
    if p.n > 1 {
        b.insert("n".into(), json!(p.n));
    }
    let opt = |b: &mut Map<String, Value>, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            b.insert(k.into(), v);
        }
    };
    opt(&mut b, "temperature", p.temperature.map(|v| json!(v)));
    opt(&mut b, "top_p", p.top_p.map(|v| json!(v)));
    opt(&mut b, "top_k", p.top_k.map(|v| json!(v)));
    opt(&mut b, "max_tokens", p.max_tokens.map(|v| json!(v)));
    opt(&mut b, "seed", p.seed.map(|v| json!(v)));
    if !p.stop.is_empty() {
        b.insert("stop".into(), json!(p.stop));
    }
    (path, Value::Object(b))
}

/// A message in OpenAI's shape: tool calls nest under `function`.
fn wire_message(m: &arbor_core::Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    /// A JSON string per the spec; some servers send an object.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Parses a success body; the error string says what was wrong with it.
fn parse_response(bytes: &[u8], req: &LlmRequest) -> Result<Completion, String> {
    let wire: WireResponse = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() || e.is_syntax() {
            format!("invalid JSON ({e})")
        } else {
            format!("unexpected schema ({e})")
        }
    })?;
    if wire.choices.is_empty() {
        return Err("no choices".into());
    }
    let chat = matches!(req.prompt, Prompt::Chat(_));
    let mut choices = Vec::with_capacity(wire.choices.len());
    for (i, c) in wire.choices.into_iter().enumerate() {
        let (text, tool_calls) = if chat {
            let m = c
                .message
                .ok_or_else(|| format!("choice {i} has no `message`"))?;
            let calls = m
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(j, t)| arbor_core::ToolCall {
                    id: t.id.unwrap_or_else(|| format!("call_{i}_{j}")),
                    name: t.function.name,
                    arguments: match t.function.arguments {
                        Value::String(s) => s,
                        Value::Null => "{}".to_string(),
                        other => other.to_string(),
                    },
                })
                .collect();
            (m.content.unwrap_or_default(), calls)
        } else {
            (
                c.text.ok_or_else(|| format!("choice {i} has no `text`"))?,
                Vec::new(),
            )
        };
        let logprobs = if req.params.logprobs {
            c.logprobs
                .as_ref()
                .and_then(|v| parse_logprobs(v, req.params.top_logprobs as usize))
        } else {
            None
        };
        choices.push(Choice {
            index: c.index.unwrap_or(i as u32),
            text,
            finish_reason: FinishReason::parse(c.finish_reason.as_deref()),
            logprobs,
            tool_calls,
        });
    }
    choices.sort_by_key(|c| c.index);
    let usage = wire
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        })
        .unwrap_or_default();
    Ok(Completion {
        model: wire.model.unwrap_or_else(|| req.model.clone()),
        choices,
        usage,
        meta: CallMeta::default(),
    })
}

/// Reads either logprobs shape: the chat form (`content: [{token, logprob, top_logprobs}]`) or
/// the legacy completions form (`tokens`, `token_logprobs`, `top_logprobs: [{tok: lp}]`).
fn parse_logprobs(v: &Value, top_k: usize) -> Option<Vec<TokenLogprob>> {
    let f = |v: &Value| v.as_f64().map(|x| x as f32);
    if let Some(content) = v.get("content").and_then(Value::as_array) {
        return content
            .iter()
            .map(|t| {
                let top = t
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| {
                                Some(TopLogprob {
                                    token: x.get("token")?.as_str()?.to_string(),
                                    logprob: f(x.get("logprob")?)?,
                                })
                            })
                            .take(top_k)
                            .collect()
                    })
                    .unwrap_or_default();
                Some(TokenLogprob {
                    token: t.get("token")?.as_str()?.to_string(),
                    logprob: f(t.get("logprob")?)?,
                    top,
                })
            })
            .collect();
    }
    let tokens = v.get("tokens")?.as_array()?;
    let lps = v.get("token_logprobs")?.as_array()?;
    let tops = v.get("top_logprobs").and_then(Value::as_array);
    tokens
        .iter()
        .zip(lps)
        .enumerate()
        .map(|(i, (t, lp))| {
            let mut top: Vec<TopLogprob> = tops
                .and_then(|a| a.get(i))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            Some(TopLogprob {
                                token: k.clone(),
                                logprob: f(v)?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            top.truncate(top_k);
            Some(TokenLogprob {
                token: t.as_str()?.to_string(),
                logprob: f(lp)?,
                top,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_core::Message;

    #[test]
    fn parses_chat_logprobs_and_legacy_logprobs() {
        let mut req = LlmRequest::chat("m", vec![Message::user("x")]);
        req.params.logprobs = true;
        req.params.top_logprobs = 1;
        let chat = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop",
            "logprobs":{"content":[{"token":"hi","logprob":-0.5,"top_logprobs":[{"token":"hi","logprob":-0.5},{"token":"yo","logprob":-1.0}]}]}}],
            "usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let c = parse_response(chat, &req).unwrap();
        assert_eq!(c.text(), "hi");
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp[0].logprob, -0.5);
        assert_eq!(lp[0].top.len(), 1);
        assert_eq!(c.usage.total(), 4);

        let mut req = LlmRequest::text("m", "x");
        req.params.logprobs = true;
        req.params.top_logprobs = 2;
        let legacy = br#"{"choices":[{"text":" a b","finish_reason":"length","logprobs":{"tokens":[" a"," b"],
            "token_logprobs":[-0.1,-0.2],"top_logprobs":[{" a":-0.1," c":-3.0},{" b":-0.2}]}}]}"#;
        let c = parse_response(legacy, &req).unwrap();
        assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp.len(), 2);
        assert_eq!(lp[0].top[0].token, " a");
        assert_eq!(lp[0].top[1].token, " c");
    }

    #[test]
    fn bad_bodies_say_why() {
        let req = LlmRequest::chat("m", vec![Message::user("x")]);
        assert!(parse_response(br#"{"choices":[{"message":{"con"#, &req)
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_response(br#"{"result":"x"}"#, &req)
            .unwrap_err()
            .contains("unexpected schema"));
        assert_eq!(
            parse_response(br#"{"choices":[]}"#, &req).unwrap_err(),
            "no choices"
        );
        assert!(parse_response(br#"{"choices":[{"text":"x"}]}"#, &req)
            .unwrap_err()
            .contains("no `message`"));
    }

    #[test]
    fn body_sends_only_what_is_set() {
        let mut req = LlmRequest::chat("m", vec![Message::user("x")]);
        let (path, b) = request_body(&req);
        assert_eq!(path, "chat/completions");
        assert_eq!(
            b,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        );
        req.params.n = 3;
        req.params.top_k = Some(5);
        req.params.stop = vec!["\n".into()];
        let (_, b) = request_body(&req);
        assert_eq!(b["n"], 3);
        assert_eq!(b["top_k"], 5);
        assert_eq!(b["stop"], json!(["\n"]));
    }

    #[test]
    fn tool_calls_round_trip_the_wire_shape() {
        let tool = arbor_core::ToolSpec {
            name: "calculator".into(),
            description: "math".into(),
            parameters: json!({"type": "object"}),
        };
        let mut asked = Message::assistant("");
        asked.tool_calls = vec![arbor_core::ToolCall {
            id: "c1".into(),
            name: "calculator".into(),
            arguments: "{\"expression\":\"1+1\"}".into(),
        }];
        let req = LlmRequest::chat(
            "m",
            vec![Message::user("x"), asked, Message::tool("c1", "2")],
        )
        .with_tools(vec![tool]);
        let (_, b) = request_body(&req);
        assert_eq!(b["tools"][0]["function"]["name"], "calculator");
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"expression\":\"1+1\"}"
        );
        assert_eq!(b["messages"][2]["tool_call_id"], "c1");
        let body = br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"k","type":"function","function":{"name":"calculator","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#;
        let c = parse_response(body, &req).unwrap();
        assert_eq!(c.choices[0].tool_calls[0].name, "calculator");
        assert_eq!(c.choices[0].finish_reason, FinishReason::ToolCalls);
    }
}
