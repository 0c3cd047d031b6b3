//! Times the matmuls of one training step's shapes on the flex backend (4 sequences of 200
//! tokens, SmolLM2-135M widths), forward and the two backward products, so thread scaling and
//! layout costs can be read per shape: `cargo run --release -p arbor-model --example train_matmuls`
//! (set RAYON_NUM_THREADS to compare thread counts).
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

fn time<const D: usize>(label: &str, flops: f64, reps: usize, f: impl Fn() -> Tensor<D>) {
    let _ = f().into_data();
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f().into_data();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{label:<52} {:>9.2} ms {:>7.1} GFLOP/s",
        s * 1e3,
        flops / s / 1e9
    );
}

fn main() {
    let d = Device::flex();
    let (b, t) = (4usize, 200usize);
    let n = (b * t) as f64;
    for (k, m) in [(576usize, 1536usize), (576, 576), (576, 49152)] {
        let fl = 2.0 * n * k as f64 * m as f64;
        let w = Tensor::<2>::random([k, m], Distribution::Default, &d);
        let x2 = Tensor::<2>::random([b * t, k], Distribution::Default, &d);
        let x3 = Tensor::<3>::random([b, t, k], Distribution::Default, &d);
        let g2 = Tensor::<2>::random([b * t, m], Distribution::Default, &d);
        time(&format!("x[{},{k}] · w[{k},{m}]", b * t), fl, 3, || {
            x2.clone().matmul(w.clone())
        });
        time(
            &format!("x[{b},{t},{k}] · w[{k},{m}] (3-D)"),
            fl,
            3,
            || x3.clone().matmul(w.clone().unsqueeze::<3>()),
        );
        time(&format!("grad x: g[{},{m}] · wᵀ", b * t), fl, 3, || {
            g2.clone().matmul(w.clone().transpose())
        });
        time(&format!("grad w: xᵀ · g[{},{m}]", b * t), fl, 3, || {
            x2.clone().transpose().matmul(g2.clone())
        });
    }
}
