//! Generation on the CPU without burn: the GGUF's quantized blocks multiplied as they are by
//! SIMD kernels (`kernels`: AVX-512 VNNI, AVX2 or portable, `cpu` says which), split over cores by rows (`matmul`), in a decoder whose sequences
//! each keep their own KV cache (`forward`). The f32 burn network stays the model for training,
//! scoring and GPU devices.
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod cpu;
mod forward;
pub mod kernels;
mod matmul;
mod prefix;
mod qacts;
mod team;

pub use forward::{Feed, NativeLlama, SeqCache};
pub use matmul::{Acts, QMatrix};
pub use prefix::{budget_from_env as prefix_budget, PrefixStats, PrefixStore};

/// Threads the decoder runs on (`ARBOR_THREADS`, else one per available core).
pub fn threads() -> usize {
    team::Team::global().size()
}

#[cfg(test)]
mod tests;
