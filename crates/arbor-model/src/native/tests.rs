//! The kernels against the f32 dot product of dequantized weights (the layouts read the same
//! bytes as `quant::dequantize`), and the SIMD kernels against the portable ones.
use super::kernels::{portable, QActs, Weights, QK};
use super::qacts::round_block;
use crate::quant::{dequantize, GgmlType};
use half::f16;
use rand::{Rng, SeedableRng};

/// Random GGUF blocks of `ty` for `n` values, and the same as the kernels' layout.
fn blocks(ty: GgmlType, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<u8>, Weights) {
    let mut raw = Vec::new();
    let (mut q8, mut q4, mut d, mut m) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n / QK {
        let scale = f16::from_f32(rng.gen_range(0.001..0.1));
        raw.extend(scale.to_le_bytes());
        d.push(scale.to_f32());
        match ty {
            GgmlType::Q8_0 => {
                for _ in 0..QK {
                    let v: i8 = rng.gen_range(-128..=127);
                    raw.push(v as u8);
                    q8.push(v);
                }
            }
            _ => {
                if ty == GgmlType::Q4_1 {
                    let min = f16::from_f32(rng.gen_range(-0.5..0.0));
                    raw.extend(min.to_le_bytes());
                    m.push(min.to_f32());
                }
                for _ in 0..16 {
                    let b: u8 = rng.gen();
                    raw.push(b);
                    q4.push(b);
                }
            }
        }
    }
    let w = match ty {
        GgmlType::Q8_0 => Weights::Q8 { q: q8, d },
        GgmlType::Q4_0 => Weights::Q4 {
            q: q4,
            m: d.iter().map(|d| -8.0 * d).collect(),
            d,
        },
        _ => Weights::Q4 { q: q4, d, m },
    };
    (raw, w)
}

#[test]
fn quantized_dots_match_dequantized_f32() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (rows, cols) = (5, 4 * QK);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let (raw, w) = blocks(ty, rows * cols, &mut rng);
        let dense = dequantize(ty, &raw);
        // Six tokens: a tile of four and two single ones.
        let n = 6;
        let xs: Vec<f32> = (0..n * cols).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let qas: Vec<QActs> = xs.chunks_exact(cols).map(QActs::quantize).collect();
        let mut row = vec![0f32; cols];
        for (r, t) in (0..rows).flat_map(|r| (0..n).map(move |t| (r, t))) {
            let mut outs = vec![0f32; n];
            w.dot_row(r, cols, &xs, &qas, &mut outs);
            let (x, qa, out) = (&xs[t * cols..(t + 1) * cols], &qas[t], &outs[t]);
            // What the kernels compute exactly: the dequantized weights against the quantized x.
            let xq: Vec<f32> = (0..cols)
                .map(|i| qa.d[i / QK] * f32::from(qa.q[i]))
                .collect();
            w.row(r, cols, &mut row);
            assert_eq!(
                row,
                dense[r * cols..(r + 1) * cols],
                "{ty:?} row {r} reads back"
            );
            let want: f32 = row.iter().zip(&xq).map(|(a, b)| a * b).sum();
            let exact: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum();
            assert!(
                (out - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{ty:?} row {r} token {t}: {out} vs {want}"
            );
            // Activation quantization costs under 1% of the dot product's scale here.
            let norm: f32 = row.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
            assert!(
                (out - exact).abs() <= 0.01 * norm,
                "{ty:?} row {r} token {t}: {out} vs exact {exact}"
            );
        }
    }
}

#[test]
fn simd_and_portable_kernels_agree() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let cols = 18 * QK;
    let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let qa = QActs::quantize(&x);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let (_, w) = blocks(ty, cols, &mut rng);
        let mut out = [0f32];
        w.dot_row(0, cols, &x, std::slice::from_ref(&qa), &mut out);
        let want = match &w {
            Weights::Q8 { q, d } => portable::q8_0(q, d, &qa),
            Weights::Q4 { q, d, m } => portable::q4(q, d, m, &qa),
            Weights::F32(_) => unreachable!(),
        };
        assert!(
            (out[0] - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{ty:?}: {} vs {want}",
            out[0]
        );
    }
    let w: Vec<f32> = (0..cols + 5).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let x5: Vec<f32> = (0..cols + 5).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut out = [0f32];
    Weights::F32(w.clone()).dot_row(0, cols + 5, &x5, &[], &mut out);
    let want: f32 = w.iter().zip(&x5).map(|(a, b)| a * b).sum();
    assert!((out[0] - want).abs() < 1e-4, "f32: {} vs {want}", out[0]);
}

/// Each SIMD level this CPU has (AVX-512 VNNI, AVX2), called directly whatever the variables
/// say, against the portable kernels: tiles of 1 and 4 tokens, rows of even and odd block
/// counts (the AVX-512 kernel reads blocks in pairs). AVX-512 and AVX2 give the same bits.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_simd_level_agrees_with_the_portable_kernels() {
    use super::{avx2, avx512};
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let levels = [
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
        super::cpu::avx512_present(),
    ];
    for nb in [1usize, 2, 3, 5, 18, 19, 48] {
        let cols = nb * QK;
        let acts: Vec<QActs> = (0..4)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-3.0..3.0)).collect();
                QActs::quantize(&x)
            })
            .collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let (_, w) = blocks(ty, cols, &mut rng);
            let want: Vec<f32> = acts
                .iter()
                .map(|a| match &w {
                    Weights::Q8 { q, d } => portable::q8_0(q, d, a),
                    Weights::Q4 { q, d, m } => portable::q4(q, d, m, a),
                    Weights::F32(_) => unreachable!(),
                })
                .collect();
            let mut got_by_level = Vec::new();
            for (level, on) in levels.iter().enumerate() {
                if !on {
                    continue;
                }
                // SAFETY: the level's features were detected just above.
                let (four, one) = unsafe {
                    match (&w, level) {
                        (Weights::Q8 { q, d }, 0) => (
                            avx2::q8::<4>(q, d, &acts),
                            avx2::q8::<1>(q, d, &acts[..1])[0],
                        ),
                        (Weights::Q8 { q, d }, _) => (
                            avx512::q8::<4>(q, d, &acts),
                            avx512::q8::<1>(q, d, &acts[..1])[0],
                        ),
                        (Weights::Q4 { q, d, m }, 0) => (
                            avx2::q4::<4>(q, d, m, &acts),
                            avx2::q4::<1>(q, d, m, &acts[..1])[0],
                        ),
                        (Weights::Q4 { q, d, m }, _) => (
                            avx512::q4::<4>(q, d, m, &acts),
                            avx512::q4::<1>(q, d, m, &acts[..1])[0],
                        ),
                        (Weights::F32(_), _) => unreachable!(),
                    }
                };
                for (t, (&got, &want)) in four
                    .iter()
                    .chain([&one])
                    .zip(want.iter().chain(&want[..1]))
                    .enumerate()
                {
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "level {level}, {ty:?}, {nb} blocks, token {t}: {got} vs {want}"
                    );
                }
                got_by_level.push((four, one));
            }
            if let [avx2, avx512] = &got_by_level[..] {
                assert_eq!(avx2, avx512, "{ty:?}, {nb} blocks: AVX2 and AVX-512 bits differ");
            }
        }
    }
}

#[test]
fn simd_and_portable_quantization_agree() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..4 * QK).map(|_| rng.gen_range(-9.0..9.0)).collect();
    let qa = QActs::quantize(&x);
    for (b, blk) in x.chunks_exact(QK).enumerate() {
        let mut q = [0i8; QK];
        let id = if qa.d[b] > 0.0 { 1.0 / qa.d[b] } else { 0.0 };
        let sum = round_block(blk, id, &mut q);
        assert_eq!(&q[..], &qa.q[b * QK..(b + 1) * QK], "block {b}");
        assert_eq!(qa.s[b], qa.d[b] * sum as f32);
    }
}

#[test]
fn activation_quantization_round_trips_within_half_a_step() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.37).collect();
    let qa = QActs::quantize(&x);
    for (i, v) in x.iter().enumerate() {
        let d = qa.d[i / QK];
        assert!((d * f32::from(qa.q[i]) - v).abs() <= d / 2.0 + 1e-6);
    }
    let zeros = QActs::quantize(&[0.0; 32]);
    assert_eq!((zeros.d[0], zeros.s[0]), (0.0, 0.0));
    assert!(zeros.q.iter().all(|&q| q == 0));
}

/// Random Q4_K super-blocks (finite f16 scales, any scale bytes and nibbles).
fn q4k_blocks(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..n {
        raw.extend(f16::from_f32(rng.gen_range(0.0005..0.01)).to_le_bytes());
        raw.extend(f16::from_f32(rng.gen_range(0.0..0.01)).to_le_bytes());
        raw.extend((0..140).map(|_| rng.gen::<u8>()));
    }
    raw
}

#[test]
fn q4_k_rows_repack_exactly_into_q4_blocks() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let (rows, cols) = (3, 512);
    let raw = q4k_blocks(rows * cols / 256, &mut rng);
    let img = crate::gguf::tests::build(
        &[],
        &[("w", vec![cols as u64, rows as u64], 12, raw.clone())],
    );
    let g = crate::gguf::Gguf::from_bytes(img).unwrap();
    let m = super::QMatrix::from_gguf(&g, "w", rows, cols).unwrap();
    assert!(matches!(m.w, Weights::Q4 { .. }), "kept quantized");
    let dense = dequantize(GgmlType::Q4K, &raw);
    let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let qa = QActs::quantize(&x);
    let xq: Vec<f32> = (0..cols)
        .map(|i| qa.d[i / QK] * f32::from(qa.q[i]))
        .collect();
    let mut row = vec![0f32; cols];
    for r in 0..rows {
        m.row(r, &mut row);
        let want = &dense[r * cols..(r + 1) * cols];
        for (a, b) in row.iter().zip(want) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "row {r}: {a} vs {b}"
            );
        }
        let mut out = [0f32];
        m.w.dot_row(r, cols, &x, std::slice::from_ref(&qa), &mut out);
        let exact: f32 = want.iter().zip(&xq).map(|(a, b)| a * b).sum();
        assert!(
            (out[0] - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
            "{} vs {exact}",
            out[0]
        );
    }
}

/// An f32 model of any width (`arbor model init` makes d = 16) decodes natively, with the
/// burn network's logits: its activations are never quantized.
#[test]
fn f32_models_of_any_width_decode_like_the_burn_network() {
    use crate::llama::{KvCache, Llama, LlamaConfig, RandomInit, Step};
    use burn::tensor::Device;
    let cfg = LlamaConfig {
        n_layers: 2,
        d_model: 16,
        d_ff: 40,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: 50,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 32,
    };
    let device = Device::flex();
    let burn = Llama::load(
        &cfg,
        &mut RandomInit(rand::rngs::StdRng::seed_from_u64(4)),
        &device,
    )
    .unwrap();
    let native = super::NativeLlama::from_f32(&cfg, burn.weights()).unwrap();
    let ids = vec![3u32, 17, 8, 42, 9];
    let mut cache = super::SeqCache::new(&cfg);
    let got = native.step(
        &mut [&mut cache],
        &[super::Feed {
            tokens: &ids,
            all_logits: true,
        }],
    );
    let mut kv = KvCache::new(&cfg, 1, ids.len(), &device);
    let step = Step {
        tokens: &[ids.clone()],
        pads: &[0],
        all_logits: true,
    };
    let want = crate::host::to_f32(burn.forward(&cfg, step, &mut kv, &device));
    for (p, row) in got.iter().enumerate() {
        for (v, (a, b)) in row.iter().zip(&want[p * cfg.vocab..]).enumerate() {
            assert!((a - b).abs() < 1e-4, "position {p} token {v}: {a} vs {b}");
        }
    }
}
