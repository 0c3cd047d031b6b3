//! The cost of structured output per token: the judge's schema (arbor synth's) compiled against
//! SmolLM2's vocabulary, then answers written token by token, timing the allowed-token mask
//! (`JsonConstraint::allowed`) at each step — on a cold cache (a fresh schema: every state
//! walks the vocabulary trie) and on a warm one (states met before are lookups).
//!
//!     cargo run --release -p arbor-model --example mask_cost
use std::time::Instant;

use arbor_model::fetch::resolve_model;
use arbor_model::EmbeddedModel;
use burn::tensor::Device;

fn main() {
    let m = EmbeddedModel::load(&resolve_model(None).expect("the model"), Device::flex()).expect("loads");
    let answers = [
        r#"{"scores": [3, 8, 10, 1], "rationale": "The first answer adds 16 and 3 instead of subtracting; the second and third reach 18, the third shows each step. The last one gives no answer at all."}"#,
        r#"{"rationale":"Candidate 2 computes 9 * 2 = 18 dollars, which matches the reference; candidate 1 stops after 16 - 3 - 4 and never multiplies by the price.","scores":[2,9,9,4]}"#,
        r#"{"scores": [10, 10, 10, 10], "rationale": "All four answers are correct and clearly explained, with \"18\" as the final answer."}"#,
    ];
    let ids: Vec<Vec<u32>> = answers.iter().map(|a| m.tokenizer.encode(a, false).expect("encodes")).collect();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    for (n, label) in [(4, "cold"), (4, "warm")] {
        let schema = serde_json::json!({"type": "object", "properties": {
            "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}, "minItems": n, "maxItems": n},
            "rationale": {"type": "string", "maxLength": 800}}, "required": ["scores", "rationale"]});
        let t = Instant::now();
        let c = m.constraint(&schema).expect("compiles");
        let compile = t.elapsed();
        let (mut total, mut worst) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for answer in &ids {
            let mut cur = c.start();
            for &id in answer {
                let t = Instant::now();
                let mask = c.allowed(&cur);
                let dt = t.elapsed();
                total += dt;
                worst = worst.max(dt);
                assert!(arbor_model::constrain::allows(&mask, id), "{:?} refused", m.tokenizer.token_text(id));
                c.advance(&mut cur, id);
            }
        }
        println!(
            "{label}: {tokens} tokens, mask {:.1} µs/token on average, worst {:.1} ms (schema compiled in {:.1} ms, vocabulary trie included the first time)",
            total.as_secs_f64() * 1e6 / tokens as f64,
            worst.as_secs_f64() * 1e3,
            compile.as_secs_f64() * 1e3
        );
    }
}
