//! The allocator policy of a process that trains.
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step (tens to hundreds of MiB each). glibc's defaults serve every block over its mmap
//! threshold (at most 32 MiB) with a fresh mapping and unmap it on free, and trim the heap's free
//! top back to the kernel, so each step faults in and zeroes those pages again: 14% of the CPU
//! samples of a SmolLM2 DPO step were in the kernel's page-fault path. Serving large blocks
//! from the heap and keeping its free top lets the next step reuse the same pages (DPO step
//! 10.7 → 8.8 s at +3% peak RSS; docs/benchmarks.md, "Training step").
use std::sync::Once;

/// Applies the policy once per process; later calls do nothing. Only glibc has these knobs.
pub fn keep_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
        unsafe {
            // No mmap-backed blocks: freed large blocks stay in the heap for reuse.
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // Keep up to 2 GiB of free heap top instead of returning it after every step.
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}
