//! The embedded model's log-probs teacher-forced along given token paths, for
//! benches/logprob_agreement.py (which compares them with llama.cpp's and the float32
//! reference's): `logprob_agreement PATHS.json [f32]` reads a list of id lists and prints, per
//! path and position, the 50 most likely ids and their log-probs as JSON. The native engine
//! runs the kernels `ARBOR_NO_AVX512` / `ARBOR_NO_SIMD` select; `f32` scores with the burn
//! network (the float32 reference's computation).
use arbor_model::fetch::resolve_model;
use arbor_model::native::{Feed, SeqCache};
use arbor_model::{EmbeddedModel, Engine};

fn top(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    idx[..k].iter().map(|&i| (i, row[i as usize])).collect()
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let lse = max + row.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32;
    row.iter().map(|v| v - lse).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let paths: Vec<Vec<u32>> = serde_json::from_str(
        &std::fs::read_to_string(args.next().expect("PATHS.json")).expect("reads"),
    )
    .expect("a JSON list of id lists");
    let f32_path = args.next().as_deref() == Some("f32");
    let model = resolve_model(None).expect("the model (arbor model fetch)");
    let m = EmbeddedModel::load(&model, burn::tensor::Device::flex()).expect("loads");
    let m = if f32_path { m.with_engine(Engine::Burn) } else { m };
    let out: Vec<Vec<Vec<(u32, f32)>>> = paths
        .iter()
        .map(|ids| {
            let rows = if f32_path {
                m.position_logprobs(ids).expect("scores")
            } else {
                let n = m.native();
                let mut cache = SeqCache::new(&n.cfg);
                let feed = Feed {
                    tokens: ids,
                    all_logits: true,
                };
                n.step(&mut [&mut cache], &[feed])
                    .iter()
                    .map(|r| log_softmax(r))
                    .collect()
            };
            rows.iter().map(|r| top(r, 50)).collect()
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"kernels": arbor_model::native::kernels::kernel_name(), "f32": f32_path, "top": out})
    );
}
