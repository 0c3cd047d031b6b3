//! Crash points for tests of interruption (debug builds only): with `ARBOR_TEST_CRASH=SITE:N`
//! the N-th arrival of this process at `SITE` is where a write is cut: the caller writes part
//! of its bytes and calls [`now`], which sends itself SIGKILL.
//! Timed kills rarely land inside a write; these make the torn write certain.

/// Whether this arrival at `site` is the one to crash at.
pub fn due(site: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static ARRIVALS: AtomicU64 = AtomicU64::new(0);
        let Ok(spec) = std::env::var("ARBOR_TEST_CRASH") else {
            return false;
        };
        let Some((want, n)) = spec.split_once(':') else {
            return false;
        };
        // One counter serves: a test names one site per process.
        want == site
            && n.parse::<u64>()
                .is_ok_and(|n| ARRIVALS.fetch_add(1, Ordering::Relaxed) + 1 == n)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = site;
        false
    }
}

/// Dies at once by SIGKILL (no core file, unlike an abort).
pub fn now(site: &str) -> ! {
    eprintln!("ARBOR_TEST_CRASH: killed in the middle of {site}");
    // SAFETY: kill(2) on our own pid; no memory is touched.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}
