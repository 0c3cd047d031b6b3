//! The embedded model against ../shared/golden/smollm2: llama.cpp's tokenizer ids, the chat
//! template, float32 reference log-probs and greedy continuations. Needs the GGUF
//! (`arbor model fetch`; .ci/run does it).
use std::path::PathBuf;
use std::sync::OnceLock;

use arbor_model::fetch::resolve_model;
use arbor_model::{EmbeddedModel, GenerateOptions};
use burn::tensor::Device;
use serde_json::Value;

fn golden(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/smollm2")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repository)",
            path.display()
        )
    });
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn model() -> &'static EmbeddedModel {
    static M: OnceLock<EmbeddedModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = resolve_model(None).unwrap_or_else(|e| panic!("{e}"));
        EmbeddedModel::load(&path, Device::flex()).unwrap()
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_reproduces_llama_cpp() {
    let m = model();
    let mut failures = Vec::new();
    for case in golden("tokenizer_cases.jsonl") {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = m
            .tokenizer
            .encode(text, case["parse_special"].as_bool().unwrap())
            .unwrap();
        if got != want {
            failures.push(format!(
                "{text:?} (special {}): got {got:?}, want {want:?}",
                case["parse_special"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn chat_template_renders_like_the_reference() {
    let m = model();
    for case in golden("forward_cases.jsonl") {
        let rendered = m
            .tokenizer
            .render_chat(case["messages"].as_array().unwrap(), true)
            .unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap());
        assert_eq!(
            m.tokenizer.encode(&rendered, true).unwrap(),
            ids(&case["prompt_ids"])
        );
    }
}

#[test]
fn logprobs_match_the_float32_reference() {
    let m = model();
    let mut worst = 0f32;
    for (c, case) in golden("forward_cases.jsonl").iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["reference_greedy_ids"]);
        let all: Vec<u32> = prompt.iter().chain(&greedy).copied().collect();
        let lps = m.position_logprobs(&all).unwrap();
        let top5 = case["top5_per_position"].as_array().unwrap();
        assert_eq!(top5.len(), all.len());
        for (p, t) in top5.iter().enumerate() {
            for (id, lp) in ids(&t["ids"]).iter().zip(t["logprobs"].as_array().unwrap()) {
                let diff = (lps[p][*id as usize] - lp.as_f64().unwrap() as f32).abs();
                worst = worst.max(diff);
                assert!(
                    diff < 1e-3,
                    "case {c} position {p} token {id}: {} vs {}",
                    lps[p][*id as usize],
                    lp
                );
            }
        }
    }
    eprintln!("largest log-prob difference from the float32 reference: {worst:.2e}");
}

#[test]
fn greedy_decoding_reproduces_the_reference() {
    let m = model();
    let cases = golden("forward_cases.jsonl");
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["prompt_ids"])).collect();
    let opts = vec![
        GenerateOptions {
            max_tokens: 24,
            ..Default::default()
        };
        prompts.len()
    ];
    // All five at once: the batch is left-padded, so this also checks that padding is inert.
    let out = m.generate_batch(&prompts, &opts).unwrap();
    for (c, case) in cases.iter().enumerate() {
        let want: Vec<u32> = ids(&case["reference_greedy_ids"])
            .into_iter()
            .take_while(|&t| t != 2)
            .collect();
        assert_eq!(out[c][0].ids, want, "case {c}");
    }
}
