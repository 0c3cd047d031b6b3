//! The embedded backend through arbor-llm's `LanguageModel`: batching of concurrent callers,
//! n samples, seeds, logprobs, stop strings, and teacher-forced scoring agreeing with decoding.
use std::sync::Arc;

use arbor_core::Message;
use arbor_llm::{FinishReason, LanguageModel, LlmRequest, SamplingParams};
use arbor_model::fetch::resolve_model;
use arbor_model::{EmbeddedBackend, EmbeddedModel, GenerateOptions};
use burn::tensor::Device;

fn load() -> EmbeddedModel {
    EmbeddedModel::load(
        &resolve_model(None).unwrap_or_else(|e| panic!("{e}")),
        Device::flex(),
    )
    .unwrap()
}

fn chat(q: &str, params: SamplingParams) -> LlmRequest {
    LlmRequest::chat("embedded", vec![Message::user(q)]).with_params(params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_batched_without_changing_answers() {
    let backend = Arc::new(EmbeddedBackend::start(load(), 8));
    let greedy = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(8),
        ..Default::default()
    };
    let questions = [
        "What is 2+2?",
        "Name a colour.",
        "Say hello.",
        "What is the capital of Italy?",
        "Count to three.",
        "Who wrote Hamlet?",
    ];
    // One at a time first: the reference answers.
    let mut alone = Vec::new();
    for q in questions {
        alone.push(backend.generate(&chat(q, greedy.clone())).await.unwrap());
    }
    let before = backend.batches();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, q) in questions.iter().enumerate() {
        let b = backend.clone();
        let req = chat(q, greedy.clone());
        tasks.spawn(async move { (i, b.generate(&req).await.unwrap()) });
    }
    let mut together = vec![None; questions.len()];
    while let Some(r) = tasks.join_next().await {
        let (i, c) = r.unwrap();
        together[i] = Some(c);
    }
    let batches = backend.batches() - before;
    assert!(
        batches < questions.len() as u64,
        "{batches} batches for {} concurrent requests",
        questions.len()
    );
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(
            a.choices[0].text,
            t.as_ref().unwrap().choices[0].text,
            "batching changed a greedy answer"
        );
    }
    let s = backend.stats().unwrap();
    assert_eq!(s.requests, 12);
    assert!(s.completion_tokens > 0 && s.prompt_tokens > 0);
}

#[tokio::test]
async fn samples_seeds_logprobs_and_stops() {
    let backend = EmbeddedBackend::start(load(), 8);
    let sampled = SamplingParams {
        n: 4,
        temperature: Some(1.0),
        seed: Some(3),
        max_tokens: Some(12),
        logprobs: true,
        top_logprobs: 3,
        ..Default::default()
    };
    let a = backend
        .generate(&chat("Write a short poem.", sampled.clone()))
        .await
        .unwrap();
    let b = backend
        .generate(&chat("Write a short poem.", sampled))
        .await
        .unwrap();
    assert_eq!(a.choices.len(), 4);
    assert_eq!(a.choices, b.choices, "same seed, same samples");
    let distinct: std::collections::HashSet<_> = a.choices.iter().map(|c| &c.text).collect();
    assert!(distinct.len() >= 2, "4 samples all equal");
    for c in &a.choices {
        let lp = c.logprobs.as_ref().unwrap();
        assert!(lp
            .iter()
            .all(|t| t.logprob <= 0.0 && t.top.len() == 3 && t.top[0].logprob >= t.top[2].logprob));
        if c.finish_reason == FinishReason::Length {
            assert_eq!(lp.len(), 12);
            assert_eq!(
                lp.iter().map(|t| t.token.as_str()).collect::<String>(),
                c.text
            );
        }
    }
    let stop = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(40),
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let c = backend
        .generate(&chat("List three fruits, one per line.", stop))
        .await
        .unwrap();
    assert!(!c.text().contains('\n'), "{:?}", c.text());
    assert_eq!(c.choices[0].finish_reason, FinishReason::Stop);
}

#[test]
fn teacher_forced_scores_agree_with_decoding() {
    let m = load();
    let prompt = m
        .tokenizer
        .encode("The three primary colours are", true)
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 10,
        temperature: 0.7,
        seed: 5,
        ..Default::default()
    };
    let g = m
        .generate_batch(std::slice::from_ref(&prompt), &[opts])
        .unwrap()
        .remove(0)
        .remove(0);
    let s = m.score(&prompt, &g.ids, 2).unwrap();
    assert_eq!(s.logprobs.len(), g.ids.len());
    for (a, b) in s.logprobs.iter().zip(&g.logprobs) {
        assert!((a - b).abs() < 1e-3, "scored {a} vs decoded {b}");
    }
    assert!(s.top.iter().all(|t| t.len() == 2));
}

/// Continuous batching: a request that arrives while another is generating joins the running
/// batch and finishes first, instead of waiting for the long one to end; neither answer changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_joins_a_running_batch_and_leaves_before_it_ends() {
    let backend = Arc::new(EmbeddedBackend::start(load(), 8));
    let long_params = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(160),
        ..Default::default()
    };
    let short_params = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(4),
        ..Default::default()
    };
    let long_q = chat("Count from 1 to 100, one number per line.", long_params);
    let short_q = chat("Say hello.", short_params);
    let long_alone = backend.generate(&long_q).await.unwrap();
    let short_alone = backend.generate(&short_q).await.unwrap();
    assert!(
        long_alone.usage.completion_tokens >= 100,
        "the long answer must run long for this test: {:?}",
        long_alone.text()
    );

    let (tx, mut deltas) = tokio::sync::mpsc::unbounded_channel();
    let b = backend.clone();
    let long = tokio::spawn(async move { b.generate_stream(&long_q, tx).await });
    deltas.recv().await.expect("the long answer streams");
    let short = backend.generate(&short_q).await.unwrap();
    assert!(
        !long.is_finished(),
        "the short request waited for the long one"
    );
    assert_eq!(short.text(), short_alone.text());
    let long = long.await.unwrap().unwrap();
    assert_eq!(long.text(), long_alone.text());
}

/// Prefix caching: a prompt that extends one read before (the next expansion of a search node)
/// starts from the stored keys and values, and answers exactly as it does without the store.
#[test]
fn prompts_sharing_a_prefix_reuse_its_cache_without_changing_answers() {
    let m = load();
    let opts = GenerateOptions {
        max_tokens: 12,
        temperature: 0.0,
        n: 2,
        ..Default::default()
    };
    let root = m
        .tokenizer
        .encode(&m.tokenizer.render_chat(&[serde_json::json!({"role": "user", "content": "Solve step by step: 17 + 25 * 2."})], true).unwrap(), true)
        .unwrap();
    let run = |m: &EmbeddedModel| {
        let first = m
            .generate_batch(std::slice::from_ref(&root), std::slice::from_ref(&opts))
            .unwrap();
        // The child prompt: the root, its first answer, and a new line to go on from.
        let mut child = root.clone();
        child.extend(&first[0][0].ids);
        child.extend(m.tokenizer.encode("\n", false).unwrap());
        let second = m
            .generate_batch(
                &[child.clone(), root.clone()],
                &[opts.clone(), opts.clone()],
            )
            .unwrap();
        (first, second, child)
    };
    let before = m.prefix_stats();
    let (first, second, child) = run(&m);
    let stats = m.prefix_stats();
    assert_eq!(stats.lookups - before.lookups, 3);
    assert_eq!(
        stats.hits - before.hits,
        2,
        "the child and the repeated root start from the store"
    );
    // The child reuses the root and the answer read so far; the root all but its last token.
    assert!(
        stats.reused - before.reused >= (root.len() + child.len() - 2 - opts.max_tokens) as u64,
        "{stats:?} for prompts of {} and {} tokens",
        root.len(),
        child.len()
    );
    m.set_prefix_budget(0);
    let (first0, second0, _) = run(&m);
    assert_eq!(first, first0);
    assert_eq!(second, second0, "reused caches changed an answer");
    assert_eq!(
        m.prefix_stats().hits,
        stats.hits,
        "a budget of 0 stores nothing"
    );
}
