use arbor_core::ToolCall;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::wire::completion_to_openai;
use arbor_llm::{CallMeta, Choice, Completion, FinishReason, TokenLogprob, TopLogprob, Usage};

const WORDS: [&str; 32] = [
    "the",
    "answer",
    "is",
    "seven",
    "because",
    "each",
    "step",
    "adds",
    "two",
    "apples",
    "and",
    "then",
    "we",
    "count",
    "them",
    "again",
    "so",
    "total",
    "equals",
    "twelve",
    "first",
    "note",
    "that",
    "half",
    "of",
    "ten",
    "makes",
    "five",
    "therefore",
    "result",
    "check",
    "done",
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
/// depend on `n`, `max_tokens`, `stop` or logprob settings: those only cut or annotate it. With
/// `ignore_n` it returns one choice whatever `n` says, like servers that drop it.
pub fn reply(path: &str, body: &Value, seed: u64, ignore_n: bool) -> Value {
    let chat = path.ends_with("chat/completions");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let mut key = body.clone();
    if let Some(o) = key.as_object_mut() {
        for k in ["n", "max_tokens", "stop", "logprobs", "top_logprobs"] {
            o.remove(k);
        }
    }
    let key = arbor_core::canonical_json(&key);
    let id = format!(
        "mock-{:016x}",
        hash64(&[key.as_bytes(), &seed.to_le_bytes()])
    );
    let scripted = |choice: Choice| {
        let c = Completion {
            model: model.clone(),
            choices: vec![choice],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
            meta: CallMeta::default(),
        };
        completion_to_openai(&c, chat, &id, 0)
    };
    if let Some(text) = scripted_text(body) {
        return scripted(Choice {
            index: 0,
            text,
            finish_reason: FinishReason::Stop,
            logprobs: None,
            tool_calls: Vec::new(),
        });
    }
    if let Some(tool_calls) = scripted_tool_calls(body) {
        return scripted(Choice {
            index: 0,
            text: String::new(),
            finish_reason: FinishReason::ToolCalls,
            logprobs: None,
            tool_calls,
        });
    }
    if let Some(schema) = body
        .get("response_format")
        .and_then(|f| f.get("json_schema"))
        .and_then(|j| j.get("schema"))
    {
        // Structured output: a deterministic instance of the schema, as a constrained sampler
        // would give.
        let n = if ignore_n {
            1
        } else {
            body.get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 128)
        };
        let choices = (0..n)
            .map(|i| {
                let h = hash64(&[key.as_bytes(), &seed.to_le_bytes(), &i.to_le_bytes()]);
                let text = instance(schema, h, 0).to_string();
                Choice {
                    index: i as u32,
                    text,
                    finish_reason: FinishReason::Stop,
                    logprobs: None,
                    tool_calls: Vec::new(),
                }
            })
            .collect();
        let c = Completion {
            model: model.clone(),
            choices,
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
            meta: CallMeta::default(),
        };
        return completion_to_openai(&c, chat, &id, 0);
    }

    let n = if ignore_n {
        1
    } else {
        body.get("n")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 128)
    };
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(64);
    let stops: Vec<&str> = match body.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let want_lp = body
        .get("logprobs")
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_u64().is_some());
    let top_k = if chat {
        body.get("top_logprobs")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    } else {
        body.get("logprobs").and_then(Value::as_u64).unwrap_or(0)
    }
    .min(5) as usize;
    let prompt_tokens = match body.get("messages").and_then(Value::as_array) {
        Some(ms) => ms
            .iter()
            .filter_map(|m| m.get("content")?.as_str())
            .map(|c| c.split_whitespace().count() + 4)
            .sum(),
        None => body
            .get("prompt")
            .and_then(Value::as_str)
            .map(|p| p.split_whitespace().count())
            .unwrap_or(0),
    } as u64;

    let choices: Vec<Choice> = (0..n)
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
            let mut finish = if (want as usize) > len {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            // Cut at the first stop sequence, as servers do (the stop text is not returned).
            let full: String = tokens.concat();
            if let Some(cut) = stops.iter().filter_map(|s| full.find(s)).min() {
                let mut kept = 0;
                tokens.retain(|t| {
                    let keep = kept + t.len() <= cut;
                    kept += t.len();
                    keep
                });
                finish = FinishReason::Stop;
            }
            let logprobs = want_lp.then(|| {
                tokens
                    .iter()
                    .enumerate()
                    .map(|(t, tok)| {
                        let w = hash64(&[&h.to_le_bytes(), b"lp", &(t as u64).to_le_bytes()]);
                        let lp = -((w % 1000) as f32) / 400.0 - 0.01;
                        let at = WORDS.iter().position(|x| tok[1..] == **x).unwrap_or(0);
                        let mut top = vec![TopLogprob {
                            token: tok.clone(),
                            logprob: lp,
                        }];
                        for k in 1..top_k {
                            top.push(TopLogprob {
                                token: format!(" {}", WORDS[(at + k) % WORDS.len()]),
                                logprob: lp - k as f32,
                            });
                        }
                        top.truncate(top_k);
                        TokenLogprob {
                            token: tok.clone(),
                            logprob: lp,
                            top,
                        }
                    })
                    .collect()
            });
            Choice {
                index: i as u32,
                text: tokens.concat(),
                finish_reason: finish,
                logprobs,
                tool_calls: Vec::new(),
            }
        })
        .collect();
    let completion_tokens = choices
        .iter()
        .map(|c| c.text.split_whitespace().count() as u64)
        .sum();
    let c = Completion {
        model,
        choices,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
        },
        meta: CallMeta::default(),
    };
    completion_to_openai(&c, chat, &id, 0)
}

/// A value following the JSON Schema subset structured-output servers accept (object with
/// properties, array with item bounds, number/integer with bounds, string, boolean, enum), drawn
/// from `h`.
fn instance(schema: &Value, h: u64, depth: u32) -> Value {
    let pick = |salt: &[u8]| hash64(&[&h.to_le_bytes(), salt]);
    if let Some(Value::Array(options)) = schema.get("enum") {
        return options
            .get((pick(b"enum") % options.len().max(1) as u64) as usize)
            .cloned()
            .unwrap_or(Value::Null);
    }
    let bound = |k: &str, d: f64| schema.get(k).and_then(Value::as_f64).unwrap_or(d);
    match schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string")
    {
        "object" if depth < 6 => {
            let mut o = serde_json::Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, sub) in props {
                    o.insert(k.clone(), instance(sub, pick(k.as_bytes()), depth + 1));
                }
            }
            Value::Object(o)
        }
        "array" if depth < 6 => {
            let (lo, hi) = (bound("minItems", 0.0) as u64, bound("maxItems", 4.0) as u64);
            let len = lo + pick(b"len") % (hi.saturating_sub(lo) + 1);
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(
                (0..len)
                    .map(|i| instance(&item, pick(&i.to_le_bytes()), depth + 1))
                    .collect(),
            )
        }
        "integer" => {
            let (lo, hi) = (bound("minimum", 1.0) as i64, bound("maximum", 10.0) as i64);
            Value::from(lo + (pick(b"int") % (hi - lo + 1).max(1) as u64) as i64)
        }
        "number" => {
            let (lo, hi) = (bound("minimum", 0.0), bound("maximum", 10.0));
            let x = lo + (pick(b"num") % 1001) as f64 / 1000.0 * (hi - lo);
            Value::from((x * 100.0).round() / 100.0)
        }
        "boolean" => Value::Bool(pick(b"bool") % 2 == 0),
        _ => {
            let n = 3 + pick(b"slen") % 8;
            Value::String(
                (0..n)
                    .map(|i| WORDS[(pick(&i.to_le_bytes()) % WORDS.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
    }
}

/// Tests script the mock's answer: when the last message is the user's and starts with
/// `SAY `, the reply is the rest of that message, verbatim.
fn scripted_text(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    last.get("content")?
        .as_str()?
        .strip_prefix("SAY ")
        .map(str::to_string)
}

/// Tests drive tool use through the mock: when tools are offered and the last message is the
/// user's, each line `CALL <tool> <json arguments>` in it becomes a tool call.
fn scripted_tool_calls(body: &Value) -> Option<Vec<ToolCall>> {
    body.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let calls: Vec<ToolCall> = last
        .get("content")?
        .as_str()?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CALL "))
        .enumerate()
        .map(|(i, rest)| {
            let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
            ToolCall {
                id: format!("call_{i}"),
                name: name.to_string(),
                arguments: args.trim().to_string(),
            }
        })
        .collect();
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structured_output_follows_the_schema() {
        let schema = json!({"type": "object", "properties": {"scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}, "minItems": 3, "maxItems": 3}, "why": {"type": "string"}}});
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "judge"}], "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}});
        let r = reply("chat/completions", &body, 1, false);
        let text = r["choices"][0]["message"]["content"].as_str().unwrap();
        let v: Value = serde_json::from_str(text).unwrap();
        let scores = v["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 3);
        assert!(scores
            .iter()
            .all(|s| (1..=10).contains(&s.as_i64().unwrap())));
        assert!(v["why"].is_string());
        assert_eq!(reply("chat/completions", &body, 1, false), r);
    }

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
        assert_eq!(
            reply("chat/completions", &b3, 9, true)["choices"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn honours_max_tokens_stop_and_logprobs() {
        let b = json!({"model": "m", "prompt": "x", "max_tokens": 2, "logprobs": 2});
        let r = reply("completions", &b, 1, false);
        let c = &r["choices"][0];
        assert_eq!(c["finish_reason"], "length");
        assert_eq!(c["logprobs"]["tokens"].as_array().unwrap().len(), 2);
        assert_eq!(
            c["logprobs"]["top_logprobs"][0].as_object().unwrap().len(),
            2
        );
        let full = reply(
            "completions",
            &json!({"model": "m", "prompt": "x"}),
            1,
            false,
        );
        let text = full["choices"][0]["text"].as_str().unwrap().to_string();
        let stop = format!(" {}", text.split(' ').nth(2).unwrap());
        let stopped = reply(
            "completions",
            &json!({"model": "m", "prompt": "x", "stop": [&stop]}),
            1,
            false,
        );
        let t = stopped["choices"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with(t) && t.len() < text.len(),
            "{t:?} vs {text:?}"
        );
        assert!(!t.contains(&stop));
        assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    }
}
