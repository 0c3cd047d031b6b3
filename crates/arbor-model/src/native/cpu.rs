//! Which SIMD kernels this CPU runs, detected once at run time. `ARBOR_NO_SIMD=1` forces the
//! portable kernels and `ARBOR_NO_AVX512=1` the AVX2 ones, so every path can be measured and
//! tested on one machine.

/// AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
pub fn avx2() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("ARBOR_NO_SIMD").is_none()
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
    })
}

/// AVX-512 with VNNI (byte dot products into i32 lanes), on top of AVX2.
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| avx2() && std::env::var_os("ARBOR_NO_AVX512").is_none() && avx512_present())
}

/// Whether the CPU has the AVX-512 features the VNNI kernels use, whatever the variables say.
#[cfg(target_arch = "x86_64")]
pub fn avx512_present() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// Which kernels run, for benchmarks and logs.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            return "avx512-vnni";
        }
        if avx2() {
            return "avx2";
        }
    }
    "portable"
}
