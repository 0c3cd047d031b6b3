//! ggml's tensor types that arbor reads and their dequantization to f32 (llama.cpp's block
//! layouts: F32, F16, BF16, Q8_0, Q4_0, Q4_1).
use half::{bf16, f16};

/// ggml tensor types arbor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

impl GgmlType {
    pub(crate) fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
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
    }
}

