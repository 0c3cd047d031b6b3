//! The sandbox's uid pool when it runs out (its own test binary, so the pool is made with one
//! uid): a run waits for the uid to come free, and never runs as root. Needs bubblewrap and
//! root (as CI runs); as another user each run keeps arbor's uid and the pool is not used.
use std::time::Instant;

use arbor_checks::sandbox::{Limits, PythonRunner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_uid_pool_exhausted_a_run_waits_instead_of_running_as_root() {
    // SAFETY (set_var): this binary's only test, before any thread reads the environment.
    std::env::set_var("ARBOR_SANDBOX_UIDS", "1");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the uid pool is not used");
        return;
    }
    let r = PythonRunner::new(Limits {
        wall_secs: 10.0,
        ..Limits::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let code = "import os, time\ntime.sleep(1)\nprint(os.getuid())";
    let t = Instant::now();
    let (a, b) = tokio::join!(r.run(code, &[], ""), r.run(code, &[], ""));
    let (a, b) = (a.unwrap(), b.unwrap());
    for out in [&a, &b] {
        assert!(out.success(), "{out:?}");
        let uid: u32 = out.stdout.trim().parse().unwrap();
        assert_ne!(uid, 0, "ran as root");
        assert_eq!(Some(uid), out.uid);
    }
    assert_eq!(a.uid, b.uid, "one uid in the pool");
    // One after the other: the second waited for the first's uid.
    assert!(t.elapsed().as_secs_f64() >= 2.0, "{:?}", t.elapsed());
}
