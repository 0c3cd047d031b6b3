//! AVX2 (with FMA) versions of the block dot products: `maddubs` multiplies unsigned by signed
//! bytes into i16 pairs, `madd` sums those into i32 lanes; one f32 scale per block.
use super::qacts::{QActs, QK};
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
/// row has block minimums. Even and odd blocks have an accumulator each, so each token's sum
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
    for t in 0..T {
        out[t] = finish(_mm256_add_ps(even[t], odd[t]), m, &acts[t].s, nb);
    }
    out
}

/// A token's block sums `acc` reduced to one value, plus `Σ m[b]·s[b]` when the row has block
/// minimums (eight blocks at a time, the rest one by one). The AVX-512 kernel ends here too,
/// so both give the same bits.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn finish(mut acc: __m256, m: Option<&[f32]>, s: &[f32], nb: usize) -> f32 {
    let mut tail = 0f32;
    if let Some(m) = m {
        assert!(m.len() >= nb && s.len() >= nb);
        let full = nb / 8 * 8;
        for b in (0..full).step_by(8) {
            let (mv, sv) = (
                _mm256_loadu_ps(m.as_ptr().add(b)),
                _mm256_loadu_ps(s.as_ptr().add(b)),
            );
            acc = _mm256_fmadd_ps(mv, sv, acc);
        }
        tail = (full..nb).map(|b| m[b] * s[b]).sum();
    }
    hsum(acc) + tail
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
