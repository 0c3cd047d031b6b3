//! Hugging Face checkpoints: what arbor writes, it reads back to the same network and tokenizer.
use arbor_model::fetch::resolve_model;
use arbor_model::llama::{Llama, LlamaConfig, RandomInit};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::EmbeddedModel;
use burn::tensor::Device;
use rand::SeedableRng;

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_random_model_round_trips_through_a_checkpoint() {
    let tok = TextTokenizer::byte_level().unwrap();
    let cfg = LlamaConfig {
        n_layers: 2,
        d_model: 32,
        d_ff: 64,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: tok.vocab_size,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 256,
    };
    let device = Device::flex();
    let llama = Llama::load(
        &cfg,
        &mut RandomInit(rand::rngs::StdRng::seed_from_u64(7)),
        &device,
    )
    .unwrap();
    let m = EmbeddedModel::from_parts(cfg.clone(), tok, llama, device.clone(), "tiny".into());
    let dir = tempfile::tempdir().unwrap();
    m.save_hf(dir.path()).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let back = EmbeddedModel::load(dir.path(), device).unwrap();
    assert_eq!(back.cfg, cfg);
    let ids = m
        .tokenizer
        .encode("<|im_start|>user\nMia has 12 apples.<|im_end|>", true)
        .unwrap();
    assert_eq!(
        back.tokenizer
            .encode("<|im_start|>user\nMia has 12 apples.<|im_end|>", true)
            .unwrap(),
        ids
    );
    assert_eq!(ids[0], m.tokenizer.bos, "control markers are single tokens");
    assert_eq!(
        back.tokenizer.decode(&ids).unwrap(),
        "<|im_start|>user\nMia has 12 apples.<|im_end|>"
    );
    let d = max_abs_diff(
        &m.position_logprobs(&ids).unwrap(),
        &back.position_logprobs(&ids).unwrap(),
    );
    assert!(d == 0.0, "logprobs changed by {d} through the checkpoint");
}

#[test]
fn embedded_model_converts_to_hf_and_back() {
    let path = resolve_model(None).unwrap_or_else(|e| panic!("{e}"));
    let m = EmbeddedModel::load(&path, Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.save_hf(dir.path()).unwrap();
    let back = EmbeddedModel::load(dir.path(), Device::flex()).unwrap();
    let text = m
        .tokenizer
        .render_chat(
            &[serde_json::json!({"role": "user", "content": "What is 17+25?"})],
            true,
        )
        .unwrap();
    assert_eq!(
        back.tokenizer
            .render_chat(
                &[serde_json::json!({"role": "user", "content": "What is 17+25?"})],
                true
            )
            .unwrap(),
        text
    );
    let ids = m.tokenizer.encode(&text, true).unwrap();
    assert_eq!(back.tokenizer.encode(&text, true).unwrap(), ids);
    let d = max_abs_diff(
        &m.position_logprobs(&ids).unwrap(),
        &back.position_logprobs(&ids).unwrap(),
    );
    assert!(d < 1e-4, "logprobs differ by {d} after the HF round trip");
}
