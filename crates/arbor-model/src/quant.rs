//! ggml's tensor types that arbor reads and their dequantization to f32 (llama.cpp's block
//! layouts: F32, F16, BF16, Q8_0, Q4_0, Q4_1, and the k-quants Q4_K and Q6_K that common GGUF
//! files mix in, e.g. Q4_K_M).
use half::{bf16, f16};

/// ggml tensor types arbor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q6K,
    BF16,
}

/// Values per k-quant super-block.
pub(crate) const QK_K: usize = 256;

impl GgmlType {
    pub(crate) fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block)
    pub(crate) fn block(self) -> (u64, u64) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }
}

/// Dequantizes whole blocks of `ty` (llama.cpp's layouts).
pub fn dequantize(ty: GgmlType, b: &[u8]) -> Vec<f32> {
    let h = |x: &[u8]| f16::from_le_bytes([x[0], x[1]]).to_f32();
    match ty {
        GgmlType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect(),
        GgmlType::F16 => b.chunks_exact(2).map(h).collect(),
        GgmlType::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(b.len() / 34 * 32);
            for blk in b.chunks_exact(34) {
                let d = h(&blk[..2]);
                out.extend(blk[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (size, has_min) = if ty == GgmlType::Q4_1 {
                (20, true)
            } else {
                (18, false)
            };
            let mut out = Vec::with_capacity(b.len() / size * 32);
            for blk in b.chunks_exact(size) {
                let d = h(&blk[..2]);
                let (m, qs) = if has_min {
                    (h(&blk[2..4]), &blk[4..])
                } else {
                    (-8.0 * d, &blk[2..])
                };
                // Low nibbles are elements 0..16, high nibbles 16..32 (not interleaved).
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0F) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
            out
        }
        GgmlType::Q4K => {
            let mut out = Vec::with_capacity(b.len() / 144 * QK_K);
            for blk in b.chunks_exact(144) {
                for (scale, min, nibbles) in q4k_sub_blocks(blk) {
                    out.extend(nibbles.iter().map(|&q| scale * f32::from(q) - min));
                }
            }
            out
        }
        GgmlType::Q6K => {
            let mut out = Vec::with_capacity(b.len() / 210 * QK_K);
            for blk in b.chunks_exact(210) {
                let (ql, rest) = blk.split_at(128);
                let (qh, rest) = rest.split_at(64);
                let (scales, d) = rest.split_at(16);
                let d = h(d);
                let mut y = [0f32; QK_K];
                // Two halves of 128 values; in each, value l (of 32) gives four quants, the low
                // nibbles and two high bits of ql / qh, centred on 32, each with its scale of 16.
                for half in 0..2 {
                    let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                    let sc = &scales[8 * half..];
                    let y = &mut y[128 * half..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q = |low: u8, shift: u32| {
                            i32::from(low | (((qh[l] >> shift) & 3) << 4)) - 32
                        };
                        let q1 = q(ql[l] & 0xF, 0);
                        let q2 = q(ql[l + 32] & 0xF, 2);
                        let q3 = q(ql[l] >> 4, 4);
                        let q4 = q(ql[l + 32] >> 4, 6);
                        let s = |k: usize| d * f32::from(sc[is + k] as i8);
                        y[l] = s(0) * q1 as f32;
                        y[l + 32] = s(2) * q2 as f32;
                        y[l + 64] = s(4) * q3 as f32;
                        y[l + 96] = s(6) * q4 as f32;
                    }
                }
                out.extend(y);
            }
            out
        }
    }
}

/// The eight sub-blocks of 32 of one Q4_K super-block: (scale, minimum, the 32 nibbles in
/// order), value = scale·nibble − minimum. Scales and minimums are 6-bit numbers packed in 12
/// bytes, times the super-block's f16 `d` and `dmin`.
pub(crate) fn q4k_sub_blocks(blk: &[u8]) -> impl Iterator<Item = (f32, f32, [u8; 32])> + '_ {
    let h = |x: &[u8]| f16::from_le_bytes([x[0], x[1]]).to_f32();
    let (d, dmin, sc, qs) = (h(&blk[0..2]), h(&blk[2..4]), &blk[4..16], &blk[16..144]);
    (0..8).map(move |j| {
        let (s, m) = if j < 4 {
            (sc[j] & 63, sc[j + 4] & 63)
        } else {
            (
                (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4),
                (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
            )
        };
        // Sub-blocks 2i and 2i+1 share 32 bytes: low nibbles, then high nibbles.
        let bytes = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        let nibbles = std::array::from_fn(|l| {
            if j % 2 == 0 {
                bytes[l] & 0xF
            } else {
                bytes[l] >> 4
            }
        });
        (d * f32::from(s), dmin * f32::from(m), nibbles)
    })
}
