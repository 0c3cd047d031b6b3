//! Dot products of quantized weight rows with quantized activations, the scheme llama.cpp uses:
//! a token's activations are quantized per 32-element block to i8 with one f32 scale, integer
//! products are summed inside a block and scaled once per block. AVX2 (with FMA) where the CPU
//! has it, detected at run time; a portable loop otherwise. Both give the same sums up to float
//! rounding (tests below).

/// Elements per quantization block (ggml's QK for every type arbor multiplies).
pub const QK: usize = 32;

/// One token's activations, quantized per block: `d[b]·q[32b..32b+32]` ≈ x, and
/// `s[b] = d[b]·Σq` (what Q4_1's per-block minimum multiplies).
#[derive(Debug, Clone, Default)]
pub struct QActs {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl QActs {
    /// Quantizes `x` (a multiple of 32 long): scale max|x|/127, values rounded to nearest.
    pub fn quantize(x: &[f32]) -> Self {
        assert_eq!(x.len() % QK, 0, "activations come in whole blocks");
        let nb = x.len() / QK;
        let mut out = Self {
            q: vec![0; x.len()],
            d: vec![0.0; nb],
            s: vec![0.0; nb],
        };
        for (b, blk) in x.chunks_exact(QK).enumerate() {
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let q = &mut out.q[b * QK..(b + 1) * QK];
            #[cfg(target_arch = "x86_64")]
            let sum = if avx2() {
                // SAFETY: AVX2 is present (checked); both slices are 32 long.
                unsafe { x86::round_block(blk, id, q) }
            } else {
                portable::round_block(blk, id, q)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sum = portable::round_block(blk, id, q);
            out.d[b] = d;
            out.s[b] = d * sum as f32;
        }
        out
    }
}

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

fn q8_tile(q: &[i8], d: &[f32], acts: &[QActs], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked); the kernel asserts the slice lengths it
        // reads within.
        unsafe {
            match acts.len() {
                4 => out.copy_from_slice(&x86::q8::<4>(q, d, acts)),
                _ => acts
                    .iter()
                    .zip(out)
                    .for_each(|(a, o)| *o = x86::q8::<1>(q, d, std::slice::from_ref(a))[0]),
            }
        }
        return;
    }
    for (a, o) in acts.iter().zip(out) {
        *o = portable::q8_0(q, d, a);
    }
}

fn q4_tile(q: &[u8], d: &[f32], m: &[f32], acts: &[QActs], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `q8_tile`.
        unsafe {
            match acts.len() {
                4 => out.copy_from_slice(&x86::q4::<4>(q, d, m, acts)),
                _ => acts
                    .iter()
                    .zip(out.iter_mut())
                    .for_each(|(a, o)| *o = x86::q4::<1>(q, d, m, std::slice::from_ref(a))[0]),
            }
        }
        return;
    }
    for (a, o) in acts.iter().zip(out) {
        *o = portable::q4(q, d, m, a);
    }
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

/// Whether the AVX2 kernels run (the `ARBOR_NO_SIMD` variable forces the portable ones, so
/// both paths can be measured and tested on one machine).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("ARBOR_NO_SIMD").is_none()
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
    })
}

/// Which kernels run, for benchmarks and logs.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return "avx2";
    }
    "portable"
}

pub(crate) mod portable {
    use super::{QActs, QK};

    /// `q = round(x·id)` (halves to even, as the SIMD path rounds); returns Σq.
    pub fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> i32 {
        let mut sum = 0;
        for (q, v) in q.iter_mut().zip(x) {
            *q = (v * id).round_ties_even() as i8;
            sum += i32::from(*q);
        }
        sum
    }

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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{QActs, QK};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Σ over 32 pairs of (unsigned byte · signed byte), as 8 i32 lanes converted to f32.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot_u8_i8(w: __m256i, x: __m256i) -> __m256 {
        let ones = _mm256_set1_epi16(1);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones))
    }

    /// Block `b` of one Q8_0 row: its 32 weights as bytes (sign moved onto the activations).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8_block(q: &[i8], b: usize) -> __m256i {
        _mm256_loadu_si256(q.as_ptr().add(b * QK) as *const __m256i)
    }

    /// Block `b` of one Q4 row: 32 nibbles as bytes, elements 0..16 (low nibbles) in the low
    /// lane, 16..32 (high nibbles) in the high one.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_block(q: &[u8], b: usize) -> __m256i {
        let raw = _mm_loadu_si128(q.as_ptr().add(b * 16) as *const __m128i);
        _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
            _mm256_set1_epi8(0x0F),
        )
    }

    /// `acc + d_w·d_x·Σ w·x` over one block; `signed` weights go through maddubs (unsigned ×
    /// signed) with their sign moved onto x.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_fma<const SIGNED: bool>(
        acc: __m256,
        w: __m256i,
        dw: f32,
        a: &QActs,
        b: usize,
    ) -> __m256 {
        let x = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
        let p = if SIGNED {
            dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
        } else {
            dot_u8_i8(w, x)
        };
        _mm256_fmadd_ps(_mm256_set1_ps(dw * *a.d.get_unchecked(b)), p, acc)
    }

    /// One row (`nb` blocks, loaded by `load`) against `T` tokens, plus `Σ m[b]·s[b]` when the
    /// row has block minimums. Blocks go in pairs with an accumulator each, so each token's sum
    /// is two independent chains kept in registers.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row<const T: usize, const SIGNED: bool>(
        nb: usize,
        d: &[f32],
        m: Option<&[f32]>,
        acts: &[QActs],
        load: impl Fn(usize) -> __m256i,
    ) -> [f32; T] {
        assert!(d.len() == nb && acts.len() == T && m.is_none_or(|m| m.len() == nb));
        assert!(acts
            .iter()
            .all(|a| a.q.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb));
        let mut even = [_mm256_setzero_ps(); T];
        let mut odd = [_mm256_setzero_ps(); T];
        let mut b = 0;
        while b + 1 < nb {
            let (w0, w1) = (load(b), load(b + 1));
            let (d0, d1) = (*d.get_unchecked(b), *d.get_unchecked(b + 1));
            for t in 0..T {
                even[t] = block_fma::<SIGNED>(even[t], w0, d0, &acts[t], b);
                odd[t] = block_fma::<SIGNED>(odd[t], w1, d1, &acts[t], b + 1);
            }
            b += 2;
        }
        if b < nb {
            let w = load(b);
            for t in 0..T {
                even[t] = block_fma::<SIGNED>(even[t], w, *d.get_unchecked(b), &acts[t], b);
            }
        }
        let mut out = [0f32; T];
        let full = nb / 8 * 8;
        for t in 0..T {
            let mut acc = _mm256_add_ps(even[t], odd[t]);
            let mut tail = 0f32;
            if let Some(m) = m {
                // The block minimums meet the activations' block sums, eight blocks at a time.
                let s = &acts[t].s;
                for b in (0..full).step_by(8) {
                    let (mv, sv) = (
                        _mm256_loadu_ps(m.as_ptr().add(b)),
                        _mm256_loadu_ps(s.as_ptr().add(b)),
                    );
                    acc = _mm256_fmadd_ps(mv, sv, acc);
                }
                tail = (full..nb).map(|b| m[b] * s[b]).sum();
            }
            out[t] = hsum(acc) + tail;
        }
        out
    }

    /// One Q8_0 row against `T` tokens.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q8<const T: usize>(q: &[i8], d: &[f32], acts: &[QActs]) -> [f32; T] {
        assert!(q.len() == d.len() * QK);
        row::<T, true>(d.len(), d, None, acts, |b| q8_block(q, b))
    }

    /// One Q4 row (nibbles and block minimums) against `T` tokens.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q4<const T: usize>(q: &[u8], d: &[f32], m: &[f32], acts: &[QActs]) -> [f32; T] {
        assert!(q.len() == d.len() * 16);
        row::<T, false>(d.len(), d, Some(m), acts, |b| q4_block(q, b))
    }

    /// `q = round(x·id)` for one block of 32, halves to even; returns Σq.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> i32 {
        assert!(x.len() == QK && q.len() == QK);
        let mul = _mm256_set1_ps(id);
        let r = |i: usize| {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * i)), mul);
            _mm256_cvtps_epi32(_mm256_round_ps(
                v,
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            ))
        };
        let (a, b, c, d) = (r(0), r(1), r(2), r(3));
        let sum = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
        // Packing works per 128-bit lane; the permute puts the 32 bytes back in order.
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, ordered);
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        assert!(x.len() >= y.len());
        let n8 = y.len() / 8 * 8;
        let av = _mm256_set1_ps(a);
        for i in (0..n8).step_by(8) {
            let v = _mm256_fmadd_ps(
                av,
                _mm256_loadu_ps(x.as_ptr().add(i)),
                _mm256_loadu_ps(y.as_ptr().add(i)),
            );
            _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
        }
        for i in n8..y.len() {
            y[i] += a * x[i];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32(w: &[f32], x: &[f32]) -> f32 {
        assert!(x.len() >= w.len());
        let n8 = w.len() / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(w.as_ptr().add(i)),
                _mm256_loadu_ps(x.as_ptr().add(i)),
                acc,
            );
        }
        hsum(acc)
            + w[n8..]
                .iter()
                .zip(&x[n8..])
                .map(|(a, b)| a * b)
                .sum::<f32>()
    }
}
