//! A weight matrix in the kernels' layout, built from a GGUF tensor's blocks or from f32 values,
//! and its product with a batch of token activations, split over the CPU's cores by rows.
use half::f16;

use super::kernels::{QActs, Weights, QK};
use super::team::for_rows;
use crate::gguf::{GgmlType, Gguf, GgufError};
use crate::quant::{q4k_sub_blocks, QK_K};

/// Members' shares of rows come in multiples of this (whole cache lines of output).
const ROWS_PER_SHARE: usize = 16;

/// `[rows, cols]`, row r the weights of output r (GGUF's orientation).
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    pub w: Weights,
}

/// Activations of a batch of tokens, `[n, cols]`, with their per-block quantization when the
/// weights they meet want it.
pub struct Acts<'a> {
    pub x: &'a [f32],
    pub q: &'a [QActs],
}

impl QMatrix {
    /// Tensor `name` of `g` with row-major shape `[rows, cols]`, its blocks kept as they are
    /// (Q8_0, Q4_0, Q4_1) or widened to f32 (F32, F16, BF16).
    pub fn from_gguf(g: &Gguf, name: &str, rows: usize, cols: usize) -> Result<Self, GgufError> {
        let (t, bytes) = g.raw(name, Some(&[rows, cols]))?;
        let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        let w = match t.ty {
            GgmlType::Q8_0 if cols % QK == 0 => {
                let blocks = bytes.chunks_exact(34);
                Weights::Q8 {
                    d: blocks.clone().map(|b| h(&b[..2])).collect(),
                    q: blocks
                        .flat_map(|b| b[2..].iter().map(|&v| v as i8))
                        .collect(),
                }
            }
            // Q4_0's nibbles are centred on 8: the same as Q4_1 with minimum −8d (exact).
            GgmlType::Q4_0 if cols % QK == 0 => {
                let blocks = bytes.chunks_exact(18);
                let d: Vec<f32> = blocks.clone().map(|b| h(&b[..2])).collect();
                Weights::Q4 {
                    m: d.iter().map(|d| -8.0 * d).collect(),
                    d,
                    q: blocks.flat_map(|b| b[2..].iter().copied()).collect(),
                }
            }
            GgmlType::Q4_1 if cols % QK == 0 => {
                let blocks = bytes.chunks_exact(20);
                Weights::Q4 {
                    d: blocks.clone().map(|b| h(&b[..2])).collect(),
                    m: blocks.clone().map(|b| h(&b[2..4])).collect(),
                    q: blocks.flat_map(|b| b[4..].iter().copied()).collect(),
                }
            }
            // Q4_K's sub-blocks of 32 are Q4_1 blocks with their scale and minimum made f32
            // (exact: a 6-bit integer times an f16), the nibbles repacked to Q4's order.
            GgmlType::Q4K if cols % QK_K == 0 => {
                let n = rows * cols / QK;
                let (mut q, mut d, mut m) = (
                    Vec::with_capacity(n * 16),
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                );
                for blk in bytes.chunks_exact(144) {
                    for (scale, min, v) in q4k_sub_blocks(blk) {
                        d.push(scale);
                        m.push(-min);
                        q.extend((0..16).map(|i| v[i] | (v[i + 16] << 4)));
                    }
                }
                Weights::Q4 { q, d, m }
            }
            // Others (F32, F16, BF16, Q6_K): f32 rows.
            _ => Weights::F32(g.dequantize(name, Some(&[rows, cols]))?),
        };
        Ok(Self { rows, cols, w })
    }

    /// Unquantized weights (a trained checkpoint): exact up to summation order.
    pub fn from_f32(rows: usize, cols: usize, w: Vec<f32>) -> Self {
        assert_eq!(w.len(), rows * cols, "weights of [{rows}, {cols}]");
        Self {
            rows,
            cols,
            w: Weights::F32(w),
        }
    }

    /// `out[t][r] = W[r] · x[t]` for the `n` tokens of `a`; `out` is `[n, rows]`.
    pub fn matmul(&self, a: &Acts<'_>, out: &mut [f32]) {
        let n = a.x.len() / self.cols;
        assert_eq!(out.len(), n * self.rows);
        assert!(!self.w.wants_quantized() || a.q.len() == n);
        // Each member takes a run of rows for every token (a row is read from memory once per
        // step, whatever the batch), written row-major and transposed after.
        let mut by_row = if n == 1 {
            Vec::new()
        } else {
            vec![0f32; n * self.rows]
        };
        let target = if n == 1 { &mut *out } else { &mut by_row[..] };
        for_rows(target, n, ROWS_PER_SHARE, |rows, values| {
            for (r, o) in rows.zip(values.chunks_exact_mut(n)) {
                self.w.dot_row(r, self.cols, a.x, a.q, o);
            }
        });
        if n > 1 {
            for (r, vals) in by_row.chunks_exact(n).enumerate() {
                for (t, v) in vals.iter().enumerate() {
                    out[t * self.rows + r] = *v;
                }
            }
        }
    }

    /// Row `r` as f32 (embedding lookup).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        self.w.row(r, self.cols, out)
    }
}
