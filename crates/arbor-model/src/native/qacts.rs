//! A token's activations quantized per 32-element block to i8 with one f32 scale, as llama.cpp
//! quantizes what its quantized matrices multiply.

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
            let sum = if super::cpu::avx2() {
                // SAFETY: AVX2 is present (checked); both slices are 32 long.
                unsafe { round_block_avx2(blk, id, q) }
            } else {
                round_block(blk, id, q)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sum = round_block(blk, id, q);
            out.d[b] = d;
            out.s[b] = d * sum as f32;
        }
        out
    }
}

/// `q = round(x·id)` (halves to even, as the SIMD path rounds); returns Σq.
pub fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> i32 {
    let mut sum = 0;
    for (q, v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
        sum += i32::from(*q);
    }
    sum
}

/// `round_block` for one block of 32 with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn round_block_avx2(x: &[f32], id: f32, q: &mut [i8]) -> i32 {
    use std::arch::x86_64::*;
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
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, ordered);
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256(sum, 1),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}
