use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WORDS: [&str; 32] = [
    "the", "answer", "is", "seven", "because", "each", "step", "adds", "two", "apples", "and",
    "then", "we", "count", "them", "again", "so", "total", "equals", "twelve", "first", "note",
    "that", "half", "of", "ten", "makes", "five", "therefore", "result", "check", "done",
];

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// The mock's successful reply to `body` on `path` ("chat/completions" or "completions").
///
/// A pure function of the request and `seed`. Like a seeded sampler, the text of choice i does not
/// depend on `n`, `max_tokens`, `stop` or logprob settings: those only cut or annotate it. With `ignore_n` it returns one choice whatever `n` says, like servers that drop it.
pub fn reply(path: &str, body: &Value, seed: u64, ignore_n: bool) -> Value {
    let chat = path.ends_with("chat/completions");
    if let Some(text) = scripted_text(body) {
        return json!({
            "id": "mock-say", "object": "chat.completion", "created": 0,
            "model": body.get("model").and_then(Value::as_str).unwrap_or("mock"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        });
    }
    if let Some(calls) = scripted_tool_calls(body) {
        return json!({
            "id": "mock-tool", "object": "chat.completion", "created": 0,
            "model": body.get("model").and_then(Value::as_str).unwrap_or("mock"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        });
    }
    let mut key = body.clone();
    if let Some(o) = key.as_object_mut() {
        for k in ["n", "max_tokens", "stop", "logprobs", "top_logprobs"] {
            o.remove(k);
        }
    }
    let key = arbor_core::canonical_json(&key);
    let n = if ignore_n { 1 } else { body.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 128) };
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(64);
    let stops: Vec<&str> = match body.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let want_lp = body.get("logprobs").is_some_and(|v| v.as_bool() == Some(true) || v.as_u64().is_some());
    let top_k = if chat {
        body.get("top_logprobs").and_then(Value::as_u64).unwrap_or(0)
    } else {
        body.get("logprobs").and_then(Value::as_u64).unwrap_or(0)
    }
    .min(5) as usize;
    let prompt_tokens = match body.get("messages").and_then(Value::as_array) {
        Some(ms) => ms.iter().filter_map(|m| m.get("content")?.as_str()).map(|c| c.split_whitespace().count() + 4).sum(),
        None => body.get("prompt").and_then(Value::as_str).map(|p| p.split_whitespace().count()).unwrap_or(0),
    } as u64;

    let mut completion_tokens = 0;
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let h = hash64(&[key.as_bytes(), &seed.to_le_bytes(), &i.to_le_bytes()]);
            let want = 4 + h % 13;
            let len = want.min(max_tokens) as usize;
            let mut tokens: Vec<String> = (0..len)
                .map(|t| {
                    let w = hash64(&[&h.to_le_bytes(), &(t as u64).to_le_bytes()]);
                    format!(" {}", WORDS[(w % WORDS.len() as u64) as usize])
                })
                .collect();
            let mut finish = if (want as usize) > len { "length" } else { "stop" };
            // Cut at the first stop sequence, as servers do (the stop text is not returned).
            let full: String = tokens.concat();
            if let Some(cut) = stops.iter().filter_map(|s| full.find(s)).min() {
                let mut kept = 0;
                tokens.retain(|t| {
                    let keep = kept + t.len() <= cut;
                    kept += t.len();
                    keep
                });
                finish = "stop";
            }
            completion_tokens += tokens.len() as u64;
            let lps: Vec<(String, f64, Vec<(String, f64)>)> = tokens
                .iter()
                .enumerate()
                .map(|(t, tok)| {
                    let w = hash64(&[&h.to_le_bytes(), b"lp", &(t as u64).to_le_bytes()]);
                    let lp = -((w % 1000) as f64) / 400.0 - 0.01;
                    let mut top = vec![(tok.clone(), lp)];
                    let at = WORDS.iter().position(|x| tok[1..] == **x).unwrap_or(0);
                    for k in 1..top_k {
                        top.push((format!(" {}", WORDS[(at + k) % WORDS.len()]), lp - k as f64));
                    }
                    (tok.clone(), lp, top)
                })
                .collect();
            let text = tokens.concat();
            let logprobs = want_lp.then(|| {
                if chat {
                    json!({"content": lps.iter().map(|(t, lp, top)| json!({
                        "token": t, "logprob": lp,
                        "top_logprobs": top.iter().map(|(tt, tl)| json!({"token": tt, "logprob": tl})).collect::<Vec<_>>()
                    })).collect::<Vec<_>>()})
                } else {
                    json!({
                        "tokens": lps.iter().map(|x| &x.0).collect::<Vec<_>>(),
                        "token_logprobs": lps.iter().map(|x| x.1).collect::<Vec<_>>(),
                        "top_logprobs": lps.iter().map(|x| x.2.iter().map(|(t, l)| (t.clone(), json!(l))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    })
                }
            });
            let mut c = if chat {
                json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
            } else {
                json!({"index": i, "text": text, "finish_reason": finish})
            };
            if let Some(lp) = logprobs {
                c["logprobs"] = lp;
            }
            c
        })
        .collect();
    json!({
        "id": format!("mock-{:016x}", hash64(&[key.as_bytes(), &seed.to_le_bytes()])),
        "object": if chat { "chat.completion" } else { "text_completion" },
        "created": 0,
        "model": body.get("model").and_then(Value::as_str).unwrap_or("mock"),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })
}

/// Tests script the mock's answer: when the last message is the user's and starts with
/// `SAY `, the reply is the rest of that message, verbatim.
fn scripted_text(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    last.get("content")?.as_str()?.strip_prefix("SAY ").map(str::to_string)
}

/// Tests drive tool use through the mock: when tools are offered and the last message is the
/// user's, each line `CALL <tool> <json arguments>` in it becomes a tool call.
fn scripted_tool_calls(body: &Value) -> Option<Vec<Value>> {
    body.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let calls: Vec<Value> = last
        .get("content")?
        .as_str()?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CALL "))
        .enumerate()
        .map(|(i, rest)| {
            let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
            json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.trim()}})
        })
        .collect();
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_n_independent() {
        let b1 = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3});
        let mut b3 = b1.clone();
        b3["n"] = json!(3);
        let r1 = reply("chat/completions", &b1, 9, false);
        let r3 = reply("chat/completions", &b3, 9, false);
        assert_eq!(r1, reply("chat/completions", &b1, 9, false));
        assert_eq!(r3["choices"].as_array().unwrap().len(), 3);
        assert_eq!(r1["choices"][0], r3["choices"][0]);
        assert_ne!(r3["choices"][0]["message"], r3["choices"][1]["message"]);
        assert_ne!(r1, reply("chat/completions", &b1, 10, false));
        assert_eq!(reply("chat/completions", &b3, 9, true)["choices"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn honours_max_tokens_stop_and_logprobs() {
        let b = json!({"model": "m", "prompt": "x", "max_tokens": 2, "logprobs": 2});
        let r = reply("completions", &b, 1, false);
        let c = &r["choices"][0];
        assert_eq!(c["finish_reason"], "length");
        assert_eq!(c["logprobs"]["tokens"].as_array().unwrap().len(), 2);
        assert_eq!(c["logprobs"]["top_logprobs"][0].as_object().unwrap().len(), 2);
        let full = reply("completions", &json!({"model": "m", "prompt": "x"}), 1, false);
        let text = full["choices"][0]["text"].as_str().unwrap().to_string();
        let stop = format!(" {}", text.split(' ').nth(2).unwrap());
        let stopped = reply("completions", &json!({"model": "m", "prompt": "x", "stop": [&stop]}), 1, false);
        let t = stopped["choices"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(t) && t.len() < text.len(), "{t:?} vs {text:?}");
        assert!(!t.contains(&stop));
        assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    }
}
