//! The OpenAI wire format: request bodies (only the parameters that are set) and tolerant
//! response parsing (chat and legacy completion shapes, both logprob layouts, tool calls).
use arbor_llm::{
    CallMeta, Choice, Completion, FinishReason, LlmRequest, Prompt, TokenLogprob, TopLogprob, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The API path and JSON body of a request. Optional parameters are sent only when set, since
/// OpenAI rejects some (`top_k`) that local servers accept.
pub(crate) fn request_body(req: &LlmRequest) -> (&'static str, Value) {
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
    /// llama.cpp's server adds how long it worked on the request.
    #[serde(default)]
    timings: Option<WireTimings>,
}

#[derive(Deserialize)]
struct WireTimings {
    #[serde(default)]
    prompt_ms: f64,
    #[serde(default)]
    predicted_ms: f64,
    #[serde(default)]
    predicted_n: Option<u64>,
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
pub(crate) fn parse_response(bytes: &[u8], req: &LlmRequest) -> Result<Completion, String> {
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
        meta: CallMeta {
            server_us: wire
                .timings
                .as_ref()
                .map(|t| ((t.prompt_ms + t.predicted_ms).max(0.0) * 1000.0) as u64),
            server_tokens: wire.timings.and_then(|t| t.predicted_n),
            ..CallMeta::default()
        },
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

/// The body of a JSON-service request: its text prompt, which must be a JSON object.
pub(crate) fn json_post_body(req: &LlmRequest) -> Result<Value, String> {
    let text = match &req.prompt {
        Prompt::Text(t) => t,
        Prompt::Chat(_) => return Err("a JSON service takes a text prompt holding a JSON object".into()),
    };
    match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!("the prompt is not a JSON object: {:.120}", text)),
    }
}

/// A JSON service's reply as a one-choice completion whose text is the body.
pub(crate) fn json_post_completion(bytes: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    Ok(Completion {
        model: String::new(),
        choices: vec![Choice {
            index: 0,
            text: v.to_string(),
            finish_reason: FinishReason::Stop,
            logprobs: None,
            tool_calls: Vec::new(),
        }],
        usage: Usage::default(),
        meta: Default::default(),
    })
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

    #[test]
    fn a_json_service_gets_the_prompt_as_body_and_answers_with_its_body() {
        let req = LlmRequest::text("reward", r#"{"prompt": "p", "chosen": "a"}"#);
        assert_eq!(json_post_body(&req).unwrap()["chosen"], "a");
        assert!(json_post_body(&LlmRequest::text("reward", "not json")).is_err());
        assert!(json_post_body(&LlmRequest::chat("reward", vec![Message::user("x")])).is_err());
        let c = json_post_completion(br#"{"score": 8, "critique": "ok"}"#).unwrap();
        let v: Value = serde_json::from_str(c.text()).unwrap();
        assert_eq!(v["score"], 8);
        assert!(json_post_completion(b"<html>").is_err());
    }
}
