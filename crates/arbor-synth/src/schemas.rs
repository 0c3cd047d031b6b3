//! The JSON Schemas of the roles' answers (sent as `response_format`, so a server or the
//! embedded model that honours them constrains the answer). Free-text fields carry a
//! `maxLength` sized to the role's `max_tokens`, so that a constrained sampler closes the JSON
//! before the token limit even when it spends a token per character: SmolLM2 on llama.cpp wrote
//! a rationale of "1.1.1.…" (one token per character) until the limit, and the cut answer never
//! parsed. A schema bounds characters, not tokens, so the bound is the worst case.
use serde_json::{json, Value};

/// Tokens left for the JSON around the text: keys, brackets, quotes, whitespace.
const STRUCTURE: usize = 48;

/// Characters each of `fields` text fields may take within `max_tokens` (at one token per
/// character) after `structure` tokens of JSON, at most `cap` (none set: `cap`).
fn text_chars(max_tokens: Option<u32>, structure: usize, fields: usize, cap: usize) -> usize {
    match max_tokens {
        Some(m) => ((m as usize).saturating_sub(structure) / fields).clamp(1, cap),
        None => cap,
    }
}

/// The judge's scores for `n` candidates (up to 3 tokens each), with its rationale.
pub fn judge(n: usize, max_tokens: Option<u32>) -> Value {
    let chars = text_chars(max_tokens, STRUCTURE + 3 * n, 1, 800);
    json!({"type": "object", "properties": {
        "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}, "minItems": n, "maxItems": n},
        "rationale": {"type": "string", "maxLength": chars}}, "required": ["scores", "rationale"]})
}

/// The reward gate's score of a pair, with its critique.
pub fn reward(max_tokens: Option<u32>) -> Value {
    let chars = text_chars(max_tokens, STRUCTURE, 1, 400);
    json!({"type": "object", "properties": {"score": {"type": "number", "minimum": 1, "maximum": 10}, "critique": {"type": "string", "maxLength": chars}}, "required": ["score", "critique"]})
}

/// The optimizer's rewritten prompts.
pub fn optimizer(max_tokens: Option<u32>) -> Value {
    // A second text field: its key and quotes.
    let chars = text_chars(max_tokens, STRUCTURE + 16, 2, 1200);
    json!({"type": "object", "properties": {"target_prompt": {"type": "string", "maxLength": chars}, "judge_prompt": {"type": "string", "maxLength": chars}}, "required": ["target_prompt", "judge_prompt"]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest answer a schema admits, in characters, with no whitespace: the texts at
    /// their `maxLength`, numbers at their widest, keys and punctuation.
    fn longest(schema: &Value) -> usize {
        let props = schema["properties"].as_object().unwrap();
        let mut n = 2 + props.len().saturating_sub(1); // braces, commas
        for (key, p) in props {
            n += key.len() + 3; // "key":
            n += match p["type"].as_str().unwrap() {
                "string" => p["maxLength"].as_u64().unwrap() as usize + 2,
                "array" => {
                    let k = p["maxItems"].as_u64().unwrap() as usize;
                    2 + 3 * k
                }
                _ => 8,
            };
        }
        n
    }

    /// At one token per character, every role's longest answer fits its default `max_tokens`
    /// (and smaller budgets) with room to spare for whitespace: a constrained sampler can
    /// always close the JSON. With the old fixed lengths (rationale 800 characters against
    /// 512 tokens) it could not.
    #[test]
    fn the_longest_answer_fits_the_token_limit() {
        let cfg = crate::config::SynthConfig::default();
        for budget in [None, Some(200), Some(4096)] {
            let pick = |d: Option<u32>| budget.or(d);
            let cases = [
                (judge(4, pick(cfg.judge.max_tokens)), pick(cfg.judge.max_tokens)),
                (judge(8, pick(cfg.judge.max_tokens)), pick(cfg.judge.max_tokens)),
                (reward(pick(cfg.reward.max_tokens)), pick(cfg.reward.max_tokens)),
                (optimizer(pick(cfg.optimizer.max_tokens)), pick(cfg.optimizer.max_tokens)),
            ];
            for (schema, m) in cases {
                let m = m.unwrap() as usize;
                assert!(longest(&schema) + 16 <= m, "{} chars at most against {m} tokens: {schema}", longest(&schema));
            }
        }
        // The defaults leave the texts their full length.
        assert_eq!(reward(cfg.reward.max_tokens)["properties"]["critique"]["maxLength"], 400);
        assert_eq!(optimizer(cfg.optimizer.max_tokens)["properties"]["judge_prompt"]["maxLength"], 1200);
    }
}
