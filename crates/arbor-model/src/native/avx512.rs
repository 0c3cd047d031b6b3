//! AVX-512 VNNI versions of the block dot products: a 512-bit register holds two 32-byte
//! blocks, and `vpdpbusd` sums four unsigned-by-signed byte products into each i32 lane in one
//! instruction (AVX2 needs `maddubs` and `madd`, through saturating i16). The register's low
//! half accumulates the even blocks and its high half the odd ones, lane for lane as the AVX2
//! kernel's two accumulators do, and the sum ends in the same reduction, so both kernels give
//! the same bits: a model decodes alike on CPUs with and without AVX-512.
use super::avx2::finish;
use super::qacts::{QActs, QK};
use std::arch::x86_64::*;

/// The AVX-512 features every function here is compiled for (checked by `cpu::avx512`).
macro_rules! avx512 {
    ($($item:item)*) => {$(
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
        $item
    )*};
}

avx512! {
    /// `[v[b]; 8] ++ [v[b + 1]; 8]`: the scales of blocks b and b + 1 over the register's halves.
    #[inline]
    unsafe fn pair_scales(v: &[f32], b: usize) -> __m512 {
        let two = _mm_castpd_ps(_mm_load_sd(v.as_ptr().add(b) as *const f64));
        let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two))
    }

    /// Blocks b and b + 1 of a Q8_0 row as unsigned magnitudes, and the mask of negative ones
    /// (whose activations are negated instead).
    #[inline]
    unsafe fn q8_pair(q: &[i8], b: usize) -> (__m512i, __mmask64) {
        let w = _mm512_loadu_si512(q.as_ptr().add(b * QK) as *const __m512i);
        (_mm512_abs_epi8(w), _mm512_movepi8_mask(w))
    }

    /// Blocks b and b + 1 of a Q4 row: 64 nibbles as bytes, in element order (each block's
    /// low nibbles are its elements 0..16, its high nibbles 16..32).
    #[inline]
    unsafe fn q4_pair(q: &[u8], b: usize) -> (__m512i, __mmask64) {
        let raw = _mm256_loadu_si256(q.as_ptr().add(b * 16) as *const __m256i);
        let both = _mm512_inserti64x4(_mm512_castsi256_si512(raw), _mm256_srli_epi16(raw, 4), 1);
        // 128-bit lanes [low b, low b+1, high b, high b+1] → [low b, high b, low b+1, high b+1].
        let ordered = _mm512_shuffle_i64x2(both, both, 0b11_01_10_00);
        (_mm512_and_si512(ordered, _mm512_set1_epi8(0x0F)), 0)
    }

    /// `acc + scales · Σ w·x` over blocks b and b + 1 of one token (the second half of `w`
    /// zero when block b is the last: its lanes then add 0).
    #[inline]
    unsafe fn pair_fma(acc: __m512, w: (__m512i, __mmask64), scales: __m512, a: &QActs, b: usize, last: bool) -> __m512 {
        let x = if last {
            _mm512_zextsi256_si512(_mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i))
        } else {
            _mm512_loadu_si512(a.q.as_ptr().add(b * QK) as *const __m512i)
        };
        let x = _mm512_mask_sub_epi8(x, w.1, _mm512_setzero_si512(), x);
        let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.0, x);
        _mm512_fmadd_ps(scales, _mm512_cvtepi32_ps(p), acc)
    }

    /// One row of `nb` blocks (pairs loaded by `load`, an odd last block by `load_last`)
    /// against `T` tokens, plus `Σ m[b]·s[b]` when the row has block minimums.
    #[inline]
    unsafe fn row<const T: usize>(
        nb: usize,
        d: &[f32],
        m: Option<&[f32]>,
        acts: &[QActs],
        load: impl Fn(usize) -> (__m512i, __mmask64),
        load_last: impl Fn(usize) -> (__m512i, __mmask64),
    ) -> [f32; T] {
        assert!(d.len() == nb && acts.len() == T && m.is_none_or(|m| m.len() == nb));
        assert!(acts
            .iter()
            .all(|a| a.q.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb));
        let mut acc = [_mm512_setzero_ps(); T];
        let mut b = 0;
        while b + 1 < nb {
            let (w, dw) = (load(b), pair_scales(d, b));
            for t in 0..T {
                let scales = _mm512_mul_ps(dw, pair_scales(&acts[t].d, b));
                acc[t] = pair_fma(acc[t], w, scales, &acts[t], b, false);
            }
            b += 2;
        }
        if b < nb {
            let w = load_last(b);
            for t in 0..T {
                let scales = _mm512_set1_ps(d[b] * acts[t].d[b]);
                acc[t] = pair_fma(acc[t], w, scales, &acts[t], b, true);
            }
        }
        let mut out = [0f32; T];
        for t in 0..T {
            let (even, odd) = (
                _mm512_castps512_ps256(acc[t]),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1)),
            );
            out[t] = finish(_mm256_add_ps(even, odd), m, &acts[t].s, nb);
        }
        out
    }

    /// One Q8_0 row against `T` tokens.
    pub unsafe fn q8<const T: usize>(q: &[i8], d: &[f32], acts: &[QActs]) -> [f32; T] {
        assert!(q.len() == d.len() * QK);
        let last = |b: usize| {
            let w = _mm256_loadu_si256(q.as_ptr().add(b * QK) as *const __m256i);
            let w = _mm512_zextsi256_si512(w);
            (_mm512_abs_epi8(w), _mm512_movepi8_mask(w) & 0xFFFF_FFFF)
        };
        row::<T>(d.len(), d, None, acts, |b| q8_pair(q, b), last)
    }

    /// One Q4 row (nibbles and block minimums) against `T` tokens.
    pub unsafe fn q4<const T: usize>(q: &[u8], d: &[f32], m: &[f32], acts: &[QActs]) -> [f32; T] {
        assert!(q.len() == d.len() * 16);
        let last = |b: usize| {
            let raw = _mm_loadu_si128(q.as_ptr().add(b * 16) as *const __m128i);
            let w = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
                _mm256_set1_epi8(0x0F),
            );
            (_mm512_zextsi256_si512(w), 0)
        };
        row::<T>(d.len(), d, Some(m), acts, |b| q4_pair(q, b), last)
    }
}
