//! The JSON Schemas of the roles' answers (sent as `response_format`, so a server or the
//! embedded model that honours them constrains the answer). Free-text fields carry a
//! `maxLength` so that a constrained sampler closes the JSON before `max_tokens` runs out (a
//! truncated answer would not parse).
use serde_json::{json, Value};

/// The judge's scores for `n` candidates, with its rationale.
pub fn judge(n: usize) -> Value {
    json!({"type": "object", "properties": {
        "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}, "minItems": n, "maxItems": n},
        "rationale": {"type": "string", "maxLength": 800}}, "required": ["scores", "rationale"]})
}

/// The reward gate's score of a pair, with its critique.
pub fn reward() -> Value {
    json!({"type": "object", "properties": {"score": {"type": "number", "minimum": 1, "maximum": 10}, "critique": {"type": "string", "maxLength": 400}}, "required": ["score", "critique"]})
}

/// The optimizer's rewritten prompts.
pub fn optimizer() -> Value {
    json!({"type": "object", "properties": {"target_prompt": {"type": "string", "maxLength": 1200}, "judge_prompt": {"type": "string", "maxLength": 1200}}, "required": ["target_prompt", "judge_prompt"]})
}
