//! Q4_K and Q6_K dequantization against an independent implementation: the `gguf` package
//! (llama.cpp's own Python reader, from PyPI, in `$ARBOR_HOME/venv`; .ci/run installs it)
//! dequantizes the same random blocks.
use std::process::Command;

use arbor_model::quant::{dequantize, GgmlType};
use half::f16;
use rand::{Rng, SeedableRng};

fn random_blocks(ty: GgmlType, n: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let mut raw = Vec::new();
    let scale =
        |rng: &mut rand::rngs::StdRng| f16::from_f32(rng.gen_range(0.0001..0.01)).to_le_bytes();
    for _ in 0..n {
        match ty {
            GgmlType::Q4K => {
                raw.extend(scale(rng));
                raw.extend(scale(rng));
                raw.extend((0..140).map(|_| rng.gen::<u8>()));
            }
            _ => {
                raw.extend((0..208).map(|_| rng.gen::<u8>()));
                raw.extend(scale(rng));
            }
        }
    }
    raw
}

#[test]
fn k_quants_dequantize_like_llama_cpp_s_reader() {
    let python = arbor_model::fetch::arbor_home().join("venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for (ty, name) in [(GgmlType::Q4K, "Q4_K"), (GgmlType::Q6K, "Q6_K")] {
        let raw = random_blocks(ty, 16, &mut rng);
        let (input, output) = (
            dir.path().join(format!("{name}.bin")),
            dir.path().join(format!("{name}.f32")),
        );
        std::fs::write(&input, &raw).unwrap();
        let script = format!(
            "import numpy as np, gguf\n\
             b = np.fromfile({input:?}, dtype=np.uint8)\n\
             gguf.quants.dequantize(b, gguf.GGMLQuantizationType.{name}).astype(np.float32).tofile({output:?})\n"
        );
        let run = Command::new(&python)
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (the venv that .ci/run sets up, with `gguf`)",
                    python.display()
                )
            });
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let want: Vec<f32> = std::fs::read(&output)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let got = dequantize(ty, &raw);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{name} value {i}: {a} vs {b}"
            );
        }
    }
}
