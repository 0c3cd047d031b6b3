//! Times the native decoder's steps and its largest products on the embedded model, for
//! docs/benchmarks.md: `cargo run --release -p arbor-model --example decode_step`.
use std::time::Instant;

use arbor_model::fetch::resolve_model;
use arbor_model::gguf::Gguf;
use arbor_model::llama::LlamaConfig;
use arbor_model::native::kernels::{kernel_name, QActs};
use arbor_model::native::{Acts, Feed, NativeLlama, QMatrix, SeqCache};

fn time(label: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    println!(
        "{label:<48} {:>8.3} ms",
        t.elapsed().as_secs_f64() * 1000.0 / reps as f64
    );
}

fn main() {
    let g =
        Gguf::open(&resolve_model(None).expect("the model (arbor model fetch)")).expect("opens");
    let cfg = LlamaConfig::from_gguf(&g).expect("config");
    let m = NativeLlama::from_gguf(&g, &cfg).expect("loads");
    println!(
        "kernels: {}, {} threads, weights {:.1} MB",
        kernel_name(),
        arbor_model::native::threads(),
        m.weight_bytes() as f64 / 1e6
    );
    let mats = if std::env::args().len() > 1 {
        vec![]
    } else {
        vec![
            ("blk.0.ffn_up.weight", 1536, 576),
            ("blk.0.ffn_down.weight", 576, 1536),
            ("token_embd.weight", cfg.vocab, 576),
        ]
    };
    for (name, rows, cols) in mats {
        let w = QMatrix::from_gguf(&g, name, rows, cols).expect("tensor");
        for n in [1usize, 8] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let q: Vec<QActs> = x.chunks_exact(cols).map(QActs::quantize).collect();
            let mut out = vec![0f32; n * rows];
            time(&format!("{name} [{rows}, {cols}] x {n} tokens"), 20, || {
                w.matmul(&Acts { x: &x, q: &q }, &mut out)
            });
        }
    }
    let prompt: Vec<u32> = (0..480).map(|i| 100 + i * 37 % 5000).collect();
    // `decode_step N`: only the decode step of N rows, repeated (for a profiler).
    let only: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let at = std::env::var("AT").map_or(32, |v| v.parse().expect("AT: a position"));
    let cases = match only {
        Some(n) => vec![(n, at)],
        None => vec![(1, 32), (8, 32), (1, 480), (8, 480)],
    };
    for (rows, at) in cases {
        let mut caches: Vec<SeqCache> = (0..rows).map(|_| SeqCache::new(&cfg)).collect();
        for c in &mut caches {
            m.step(
                &mut [c],
                &[Feed {
                    tokens: &prompt[..at],
                    all_logits: false,
                }],
            );
        }
        let next = vec![42u32; rows];
        time(
            &format!("decode step, {rows} rows at position ~{at}"),
            if only.is_some() { 300 } else { 20 },
            || {
                let feeds: Vec<Feed> = next
                    .iter()
                    .map(|t| Feed {
                        tokens: std::slice::from_ref(t),
                        all_logits: false,
                    })
                    .collect();
                m.step(&mut caches.iter_mut().collect::<Vec<_>>(), &feeds);
            },
        );
    }
    if only.is_some() && std::env::var_os("GEN").is_none() {
        return;
    }
    let em = arbor_model::EmbeddedModel::load(
        &resolve_model(None).expect("model"),
        burn::tensor::Device::flex(),
    )
    .expect("loads");
    for rows in [1usize, 8] {
        let prompts = vec![prompt[..32].to_vec(); rows];
        let opts = vec![
            arbor_model::GenerateOptions {
                max_tokens: 128,
                stop_ids: vec![u32::MAX],
                ..Default::default()
            };
            rows
        ];
        let t = Instant::now();
        let out = em.generate_batch(&prompts, &opts).expect("generates");
        let n: usize = out.iter().map(|o| o[0].ids.len()).sum();
        println!(
            "generate_batch, {rows} rows: {n} tokens, {:.1} tok/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    time("prefill, 256 tokens", 2, || {
        let mut c = SeqCache::new(&cfg);
        m.step(
            &mut [&mut c],
            &[Feed {
                tokens: &prompt[..256],
                all_logits: false,
            }],
        );
    });
}
