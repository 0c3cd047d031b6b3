//! Dot products of quantized weight rows with quantized activations, the scheme llama.cpp uses:
//! integer products are summed inside a 32-element block and scaled once per block. AVX-512
//! VNNI or AVX2 (with FMA) where the CPU has them, detected at run time (`cpu`); a portable
//! loop otherwise. All give the same integer sums; only float rounding differs (native/tests.rs).

pub use super::cpu::kernel_name;
#[cfg(target_arch = "x86_64")]
use super::cpu::{avx2, avx512};
pub use super::qacts::{QActs, QK};
#[cfg(target_arch = "x86_64")]
use super::{avx2 as x86, avx512 as x512};

/// A weight matrix `[rows, cols]` in a layout made for these kernels: the GGUF blocks with
/// their f16 scales widened to f32 once at load (so no conversion runs per block per token).
#[derive(Debug, Clone)]
pub enum Weights {
    /// Q8_0: `w = d·q`, q signed bytes.
    Q8 { q: Vec<i8>, d: Vec<f32> },
    /// Q4_1, and Q4_0 with `m = −8d`: `w = d·nibble + m`; per block 16 bytes, low nibbles
    /// elements 0..16, high nibbles 16..32.
    Q4 {
        q: Vec<u8>,
        d: Vec<f32>,
        m: Vec<f32>,
    },
    /// Unquantized rows; multiplied with the f32 activations.
    F32(Vec<f32>),
}

/// Tokens per tile: a weight block loaded once meets this many tokens' activations.
const TILE: usize = 4;

impl Weights {
    /// Bytes held.
    pub fn size(&self) -> usize {
        match self {
            Self::Q8 { q, d } => q.len() + 4 * d.len(),
            Self::Q4 { q, d, m } => q.len() + 4 * (d.len() + m.len()),
            Self::F32(w) => 4 * w.len(),
        }
    }

    /// Whether rows multiply quantized activations (else f32 ones).
    pub fn wants_quantized(&self) -> bool {
        !matches!(self, Self::F32(_))
    }

    /// Row `r` of a matrix with `cols` columns, as f32 (the embedding lookup).
    pub fn row(&self, r: usize, cols: usize, out: &mut [f32]) {
        let nb = cols / QK;
        match self {
            Self::F32(w) => out.copy_from_slice(&w[r * cols..(r + 1) * cols]),
            Self::Q8 { q, d } => {
                for b in 0..nb {
                    let k = r * nb + b;
                    for i in 0..QK {
                        out[b * QK + i] = d[k] * f32::from(q[k * QK + i]);
                    }
                }
            }
            Self::Q4 { q, d, m } => {
                for b in 0..nb {
                    let k = r * nb + b;
                    for i in 0..QK / 2 {
                        let byte = q[k * QK / 2 + i];
                        out[b * QK + i] = f32::from(byte & 0x0F) * d[k] + m[k];
                        out[b * QK + i + QK / 2] = f32::from(byte >> 4) * d[k] + m[k];
                    }
                }
            }
        }
    }

    /// `out[t] = row(r) · x[t]` for every token t of the batch: `x` is `[n, cols]` f32 (what
    /// F32 rows read), `qa` its per-token quantization (what quantized rows read).
    pub fn dot_row(&self, r: usize, cols: usize, x: &[f32], qa: &[QActs], out: &mut [f32]) {
        let nb = cols / QK;
        let b = r * nb..(r + 1) * nb;
        if let Self::F32(w) = self {
            let w = &w[r * cols..(r + 1) * cols];
            for (t, o) in out.iter_mut().enumerate() {
                *o = f32_dot(w, &x[t * cols..(t + 1) * cols]);
            }
            return;
        }
        let mut t0 = 0;
        while t0 < out.len() {
            let tile = (out.len() - t0).min(TILE);
            let acts = &qa[t0..t0 + tile];
            let o = &mut out[t0..t0 + tile];
            match self {
                Self::Q8 { q, d } => q8_tile(&q[b.start * QK..b.end * QK], &d[b.clone()], acts, o),
                Self::Q4 { q, d, m } => q4_tile(
                    &q[b.start * 16..b.end * 16],
                    &d[b.clone()],
                    &m[b.clone()],
                    acts,
                    o,
                ),
                Self::F32(_) => unreachable!(),
            }
            t0 += tile;
        }
    }
}

/// `out[t]` for each token of `acts`: whole tiles of four through `four`, the rest one by one
/// through `one` (the kernels of one SIMD level).
fn tiled(
    acts: &[QActs],
    out: &mut [f32],
    four: impl Fn(&[QActs]) -> [f32; 4],
    one: impl Fn(&QActs) -> f32,
) {
    match acts.len() {
        4 => out.copy_from_slice(&four(acts)),
        _ => acts.iter().zip(out).for_each(|(a, o)| *o = one(a)),
    }
}

fn q8_tile(q: &[i8], d: &[f32], acts: &[QActs], out: &mut [f32]) {
    // SAFETY (every unsafe block here and in `q4_tile`): the level's CPU features were
    // detected; the kernels assert the slice lengths they read within.
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        let one = |a: &QActs| unsafe { x512::q8::<1>(q, d, std::slice::from_ref(a))[0] };
        return tiled(acts, out, |a| unsafe { x512::q8::<4>(q, d, a) }, one);
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        let one = |a: &QActs| unsafe { x86::q8::<1>(q, d, std::slice::from_ref(a))[0] };
        return tiled(acts, out, |a| unsafe { x86::q8::<4>(q, d, a) }, one);
    }
    tiled(
        acts,
        out,
        |a| std::array::from_fn(|t| portable::q8_0(q, d, &a[t])),
        |a| portable::q8_0(q, d, a),
    );
}

fn q4_tile(q: &[u8], d: &[f32], m: &[f32], acts: &[QActs], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        let one = |a: &QActs| unsafe { x512::q4::<1>(q, d, m, std::slice::from_ref(a))[0] };
        return tiled(acts, out, |a| unsafe { x512::q4::<4>(q, d, m, a) }, one);
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        let one = |a: &QActs| unsafe { x86::q4::<1>(q, d, m, std::slice::from_ref(a))[0] };
        return tiled(acts, out, |a| unsafe { x86::q4::<4>(q, d, m, a) }, one);
    }
    tiled(
        acts,
        out,
        |a| std::array::from_fn(|t| portable::q4(q, d, m, &a[t])),
        |a| portable::q4(q, d, m, a),
    );
}

/// `y += a·x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `q8_tile`.
        return unsafe { x86::axpy(a, x, y) };
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `w · x` in f32.
pub fn f32_dot(w: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `q8_tile`.
        return unsafe { x86::f32(w, x) };
    }
    portable::f32(w, x)
}

pub(crate) mod portable {
    use super::{QActs, QK};

    pub fn q8_0(q: &[i8], d: &[f32], a: &QActs) -> f32 {
        let mut sum = 0f32;
        for (b, &db) in d.iter().enumerate() {
            let w = &q[b * QK..(b + 1) * QK];
            let x = &a.q[b * QK..(b + 1) * QK];
            let dot: i32 = w
                .iter()
                .zip(x)
                .map(|(&w, &x)| i32::from(w) * i32::from(x))
                .sum();
            sum += db * a.d[b] * dot as f32;
        }
        sum
    }

    /// Nibbles times activations, plus the block minimum times the activations' block sum.
    pub fn q4(q: &[u8], d: &[f32], m: &[f32], a: &QActs) -> f32 {
        let mut sum = 0f32;
        for (b, &db) in d.iter().enumerate() {
            let w = &q[b * 16..(b + 1) * 16];
            let x = &a.q[b * QK..(b + 1) * QK];
            let mut dot = 0i32;
            for i in 0..16 {
                dot += i32::from(w[i] & 0x0F) * i32::from(x[i]);
                dot += i32::from(w[i] >> 4) * i32::from(x[i + 16]);
            }
            sum += db * a.d[b] * dot as f32 + m[b] * a.s[b];
        }
        sum
    }

    pub fn f32(w: &[f32], x: &[f32]) -> f32 {
        // Eight partial sums, so the compiler can keep them in vector lanes.
        let mut acc = [0f32; 8];
        let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
        let tail: f32 = wc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (a, b) in wc.zip(xc) {
            for i in 0..8 {
                acc[i] += a[i] * b[i];
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}
