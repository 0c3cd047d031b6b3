//! OpenAI's wire format for the server: requests read and checked (an invalid one is an
//! OpenAI-shaped 400 naming the parameter), completions and streaming chunks written.
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use arbor_llm::{Completion, Delta, LlmRequest, Prompt, SamplingParams, TokenLogprob};

/// An error answer: HTTP status and OpenAI's `error` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_string()),
            code: None,
        }
    }

    pub fn body(&self) -> Value {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}})
    }
}

/// What the server accepts beyond OpenAI's own ranges.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The model's context in tokens; `max_tokens` above it is refused.
    pub context: Option<usize>,
    /// The most choices per request.
    pub max_n: u32,
}

/// A request as the server runs it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub req: LlmRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// The `model` field as sent (`None`: left out).
    pub model: Option<String>,
}

fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn number(o: &Map<String, Value>, k: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            Some(x) => Err(ApiError::invalid(k, format!("{x} is out of range for `{k}`: it must be between {lo} and {hi}"))),
            None => Err(ApiError::invalid(k, format!("`{k}` must be a number"))),
        },
    }
}

fn integer(o: &Map<String, Value>, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            Some(x) => Err(ApiError::invalid(k, format!("{x} is out of range for `{k}`: it must be between {lo} and {hi}"))),
            None => Err(ApiError::invalid(k, format!("`{k}` must be an integer"))),
        },
    }
}

fn boolean(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match field(o, k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid(k, format!("`{k}` must be true or false"))),
    }
}

/// Reads an OpenAI request body (chat when `chat`, else legacy completions) and checks every
/// parameter arbor honours.
pub fn parse_request(body: &Value, chat: bool, limits: &Limits) -> Result<Parsed, ApiError> {
    let o = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("body", "the request body must be a JSON object"))?;
    let model = match field(o, "model") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::invalid("model", "`model` must be a string")),
    };
    let prompt = if chat {
        let messages = field(o, "messages")
            .ok_or_else(|| ApiError::invalid("messages", "`messages` is required"))?;
        let list: Vec<arbor_core::Message> = serde_json::from_value(messages.clone())
            .map_err(|e| ApiError::invalid("messages", format!("`messages` is malformed: {e}")))?;
        if list.is_empty() {
            return Err(ApiError::invalid("messages", "`messages` must hold at least one message"));
        }
        Prompt::Chat(list)
    } else {
        match field(o, "prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            _ => return Err(ApiError::invalid("prompt", "`prompt` must be a string (or a list of one)")),
        }
    };
    let context = limits.context.map_or(i64::MAX, |c| c as i64);
    let max_tokens = match integer(o, "max_tokens", i64::MIN, i64::MAX)? {
        Some(m) => Some(("max_tokens", m)),
        None => integer(o, "max_completion_tokens", i64::MIN, i64::MAX)?.map(|m| ("max_completion_tokens", m)),
    };
    if let Some((k, m)) = max_tokens {
        if m < 1 {
            return Err(ApiError::invalid(k, format!("`{k}` must be at least 1, not {m}")));
        }
        if m > context {
            return Err(ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(k, format!("`{k}` is too large: {m}. This model's maximum context length is {context} tokens"))
            });
        }
    }
    let n = integer(o, "n", 1, i64::from(limits.max_n))?.unwrap_or(1);
    let (logprobs, top) = if chat {
        (boolean(o, "logprobs")?, integer(o, "top_logprobs", 0, 20)?.unwrap_or(0))
    } else {
        match integer(o, "logprobs", 0, 5)? {
            Some(k) => (true, k),
            None => (false, 0),
        }
    };
    if chat && top > 0 && !logprobs {
        return Err(ApiError::invalid("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
    }
    let stop = match field(o, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => {
            a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()
        }
        Some(_) => return Err(ApiError::invalid("stop", "`stop` must be a string or a list of at most 4 strings")),
    };
    let json_schema = match field(o, "response_format") {
        None => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => match f.get("json_schema").and_then(|j| j.get("schema")) {
                Some(s @ Value::Object(_)) => Some(s.clone()),
                _ => return Err(ApiError::invalid("response_format", "`response_format.json_schema.schema` must be a JSON Schema object")),
            },
            _ => return Err(ApiError::invalid("response_format", "`response_format.type` must be text, json_object or json_schema")),
        },
    };
    let stream = boolean(o, "stream")?;
    let include_usage = match field(o, "stream_options") {
        None => false,
        Some(so) if stream => so.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
        Some(_) => return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed with `stream: true`")),
    };
    let params = SamplingParams {
        n: n as u32,
        temperature: number(o, "temperature", 0.0, 2.0)?.map(|x| x as f32),
        top_p: match number(o, "top_p", 0.0, 1.0)? {
            Some(p) if p <= 0.0 => return Err(ApiError::invalid("top_p", "`top_p` must be above 0")),
            p => p.map(|x| x as f32),
        },
        top_k: integer(o, "top_k", 0, i64::from(u32::MAX))?.map(|x| x as u32),
        max_tokens: max_tokens.map(|(_, m)| m.min(i64::from(u32::MAX)) as u32),
        stop,
        seed: integer(o, "seed", 0, i64::MAX)?.map(|x| x as u64),
        logprobs,
        top_logprobs: top as u32,
        json_schema,
    };
    Ok(Parsed {
        req: LlmRequest {
            model: model.clone().unwrap_or_else(|| "embedded".into()),
            prompt,
            params,
            tools: Vec::new(),
        },
        stream,
        include_usage,
        model,
    })
}

/// Log-probs in the shape of a chat (`content`) or a legacy completion (parallel lists).
pub fn logprobs_json(lps: &[TokenLogprob], chat: bool) -> Value {
    if chat {
        json!({"content": lps.iter().map(|t| json!({"token": t.token, "logprob": t.logprob, "bytes": t.token.as_bytes(),
            "top_logprobs": t.top.iter().map(|a| json!({"token": a.token, "logprob": a.logprob, "bytes": a.token.as_bytes()})).collect::<Vec<_>>()})).collect::<Vec<_>>()})
    } else {
        json!({"tokens": lps.iter().map(|t| &t.token).collect::<Vec<_>>(),
               "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
               "top_logprobs": lps.iter().map(|t| t.top.iter().map(|a| (a.token.clone(), json!(a.logprob))).collect::<Map<_, _>>()).collect::<Vec<_>>()})
    }
}

fn usage_json(c: &Completion) -> Value {
    json!({"prompt_tokens": c.usage.prompt_tokens, "completion_tokens": c.usage.completion_tokens, "total_tokens": c.usage.total()})
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
                v["logprobs"] = logprobs_json(lps, chat);
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
        "usage": usage_json(c),
    })
}

/// Streaming chunks of one response, all with the same id, time and model.
pub struct Chunks {
    pub chat: bool,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
}

impl Chunks {
    fn chunk(&self, choices: Vec<Value>) -> Value {
        let mut v = json!({"id": self.id, "object": if self.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created, "model": self.model, "choices": choices});
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// Chat's first chunk of a choice: the assistant's role.
    pub fn role(&self, index: u32) -> Value {
        self.chunk(vec![json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})])
    }

    pub fn delta(&self, d: &Delta) -> Value {
        let lp = if d.logprobs.is_empty() { Value::Null } else { logprobs_json(&d.logprobs, self.chat) };
        self.chunk(vec![if self.chat {
            json!({"index": d.index, "delta": {"content": d.text}, "logprobs": lp, "finish_reason": null})
        } else {
            json!({"index": d.index, "text": d.text, "logprobs": lp, "finish_reason": null})
        }])
    }

    /// The last chunk of each choice (its finish reason), then the usage when asked for.
    pub fn ends(&self, c: &Completion) -> Vec<Value> {
        let mut out: Vec<Value> = c
            .choices
            .iter()
            .map(|ch| {
                let finish = serde_json::to_value(ch.finish_reason).unwrap_or(json!("stop"));
                self.chunk(vec![if self.chat {
                    json!({"index": ch.index, "delta": {}, "logprobs": null, "finish_reason": finish})
                } else {
                    json!({"index": ch.index, "text": "", "logprobs": null, "finish_reason": finish})
                }])
            })
            .collect();
        if self.include_usage {
            let mut u = self.chunk(Vec::new());
            u["usage"] = usage_json(c);
            out.push(u);
        }
        out
    }
}
