//! Times the pieces of one decode step on the flex backend, for docs/benchmarks.md's
//! "where the time goes": `cargo run --release -p arbor-model --example profile_ops`.
use std::time::Instant;

use burn::tensor::{Device, Tensor};

fn time<F: FnMut() -> Tensor<2>>(label: &str, reps: usize, mut f: F) {
    let _ = f().into_data();
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f().into_data();
    }
    println!(
        "{label:<44} {:>8.3} ms",
        t.elapsed().as_secs_f64() * 1000.0 / reps as f64
    );
}

fn main() {
    let d = Device::flex();
    let w_ff = Tensor::<2>::random([576, 1536], burn::tensor::Distribution::Default, &d);
    let w_head = Tensor::<2>::random([576, 49152], burn::tensor::Distribution::Default, &d);
    for b in [1usize, 8] {
        let x = Tensor::<2>::random([b, 576], burn::tensor::Distribution::Default, &d);
        time(&format!("matmul [{b},576]x[576,1536]"), 50, || {
            x.clone().matmul(w_ff.clone())
        });
        time(
            &format!("matmul [{b},576]x[576,49152] (lm head)"),
            10,
            || x.clone().matmul(w_head.clone()),
        );
        time(&format!("elementwise add [{b},576]"), 200, || {
            x.clone() + x.clone()
        });
        let wt_ff = w_ff.clone().transpose().into_data();
        let wt_ff = Tensor::<2>::from_data(wt_ff, &d);
        let wt_head = Tensor::<2>::from_data(w_head.clone().transpose().into_data(), &d);
        let xt = Tensor::<2>::from_data(x.clone().transpose().into_data(), &d);
        time(
            &format!("matmul [1536,576]x[576,{b}] (weight on the left)"),
            50,
            || wt_ff.clone().matmul(xt.clone()),
        );
        time(
            &format!("matmul [49152,576]x[576,{b}] (weight on the left)"),
            10,
            || wt_head.clone().matmul(xt.clone()),
        );
    }
}
