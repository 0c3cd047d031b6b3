//! Times the output layer's loss head at one OREO step's shape (198 action positions, the
//! 49,152-token vocabulary): log-prob of each target and the exact KL to a reference, forward
//! and backward to the logits, fused (the CPU path) against burn's ops with autodiff:
//! `cargo run --release --example output_head` (arbor-train).
use std::time::Instant;

use arbor_train::head::{policy_head, unfused_policy_head};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Tensor};

fn main() {
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let (n, v) = (198, 49_152);
    let targets: Vec<usize> = (0..n).map(|i| (i * 7919) % v).collect();
    let x0 = Tensor::<2>::random([n, v], Distribution::Normal(0.0, 3.0), &plain);
    let reference = log_softmax(
        Tensor::<2>::random([n, v], Distribution::Normal(0.0, 3.0), &plain),
        1,
    );
    for kl in [false, true] {
        for fused in [false, true] {
            let run = || {
                let x = Tensor::<2>::from_data(x0.to_data(), &device).require_grad();
                let r = kl.then(|| reference.clone());
                let (lp, k) = if fused {
                    policy_head(x.clone(), &targets, r)
                } else {
                    unfused_policy_head(x.clone(), &targets, r)
                };
                let loss = k.map_or(lp.clone().sum(), |k| lp.sum() + k.sum());
                let g = x.grad(&loss.backward()).unwrap();
                let _ = g.into_data();
            };
            run();
            let reps = 5;
            let t = Instant::now();
            for _ in 0..reps {
                run();
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
            let what = if kl { "log-prob + KL" } else { "log-prob" };
            let how = if fused { "fused" } else { "burn ops" };
            println!(
                "{what:<14} {how:<9} {ms:>8.1} ms (forward + backward, includes the input copy)"
            );
        }
    }
}
