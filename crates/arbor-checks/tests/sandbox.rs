//! Containment of the Python sandbox: each escape attempt is stopped and reported, and the
//! host is unaffected. Needs bubblewrap (`apt-get install bubblewrap`; .ci/run installs it).
use std::time::Duration;

use arbor_checks::sandbox::{LimitHit, Limits, PythonRunner, RunOutput};
use arbor_checks::unit_tests::run_unit_tests;

fn runner(tweak: impl FnOnce(&mut Limits)) -> PythonRunner {
    let mut l = Limits {
        wall_secs: 8.0,
        cpu_secs: 2,
        ..Limits::default()
    };
    tweak(&mut l);
    PythonRunner::new(l).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether any scratch directory on the host still holds a file named `marker`.
fn marker_left(marker: &str) -> bool {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("arbor-sandbox-")
        })
        .any(|e| e.path().join(marker).exists())
}

/// Processes still running as the run's uid, after giving the kernel up to 2 s to reap them.
async fn leftovers(out: &RunOutput) -> usize {
    let uid = out
        .uid
        .expect("tests run as root, so each run has its own uid");
    let count = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                e.metadata()
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
            })
            .count()
    };
    for _ in 0..20 {
        if count() == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count()
}

#[tokio::test]
async fn runs_code_and_reports_output_and_exit_status() {
    let r = runner(|_| {});
    let out = r
        .run(
            "import sys\nprint(input()[::-1])\nprint('err', file=sys.stderr)\nsys.exit(3)",
            &[],
            "abc\n",
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "cba\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.limit, None);
    let ok = r.run("print(sum(range(10)))", &[], "").await.unwrap();
    assert!(ok.success() && ok.stdout == "45\n");
}

#[tokio::test]
async fn infinite_loops_are_stopped_by_cpu_or_wall_time() {
    let r = runner(|l| l.wall_secs = 4.0);
    let busy = r.run("while True: pass", &[], "").await.unwrap();
    assert_eq!(busy.limit, Some(LimitHit::CpuTime), "{busy:?}");
    let sleepy = r
        .run("import time\ntime.sleep(100)", &[], "")
        .await
        .unwrap();
    assert_eq!(sleepy.limit, Some(LimitHit::WallTime), "{sleepy:?}");
    assert!(sleepy.elapsed_ms < 30_000);
    assert_eq!(
        leftovers(&busy).await + leftovers(&sleepy).await,
        0,
        "sandbox processes outlived the run"
    );
}

#[tokio::test]
async fn fork_bombs_hit_the_process_limit() {
    let r = runner(|l| l.wall_secs = 6.0);
    let marker = format!("bomb-{}", std::process::id());
    let code = format!("import os\nopen('{marker}', 'w').write('x')\nwhile True:\n    os.fork()");
    let out = r.run(&code, &[], "").await.unwrap();
    // Stopped by the process limit: not by the clocks, which would also stop it, later.
    assert_eq!(out.limit, Some(LimitHit::Processes), "{out:?}");
    assert!(!out.success());
    // The host still forks, and nothing of the bomb is left.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert_eq!(leftovers(&out).await, 0, "fork bomb survived");
    assert!(!marker_left(&marker), "scratch directory left behind");
}

/// The reason is the limit's, not a guess from the output: a SIGKILL long before the CPU limit
/// is a signal, and "MemoryError" printed by the code is not out of memory.
#[tokio::test]
async fn kills_and_printed_errors_are_not_taken_for_limits() {
    let r = runner(|l| l.cpu_secs = 5);
    let killed = r
        .run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", &[], "")
        .await
        .unwrap();
    assert_eq!((killed.signal, killed.limit), (Some(9), None), "{killed:?}");
    let printed = r
        .run("import sys\nprint('MemoryError', file=sys.stderr)\nsys.exit(1)", &[], "")
        .await
        .unwrap();
    assert_eq!((printed.exit_code, printed.limit), (1, None), "{printed:?}");
}

#[tokio::test]
async fn a_ten_gigabyte_allocation_fails_inside() {
    let r = runner(|_| {});
    let out = r
        .run("x = bytearray(10 * 1024**3)\nprint('allocated')", &[], "")
        .await
        .unwrap();
    assert_eq!(out.limit, Some(LimitHit::Memory), "{out:?}");
    assert!(!out.stdout.contains("allocated"));
}

#[tokio::test]
async fn no_network_not_even_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = runner(|_| {});
    let code = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\nexcept OSError as e:\n    print('BLOCKED', type(e).__name__)"
    );
    let out = r.run(&code, &[], "").await.unwrap();
    assert!(out.stdout.starts_with("BLOCKED"), "{out:?}");
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's listener"
    );
}

#[tokio::test]
async fn cannot_write_outside_scratch_nor_read_host_files() {
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret.txt");
    std::fs::write(&secret, "TOP SECRET").unwrap();
    let target = host.path().join("pwned.txt");
    let code = format!(
        r#"
def attempt(label, f):
    try:
        f()
        print(label, "ALLOWED")
    except OSError as e:
        print(label, "DENIED", type(e).__name__)

attempt("write-host", lambda: open({target:?}, "w").write("x"))
attempt("write-usr", lambda: open("/usr/pwned", "w").write("x"))
attempt("read-host", lambda: print(open({secret:?}).read()))
attempt("read-shadow", lambda: open("/etc/shadow").read())
attempt("read-root", lambda: open("/root/.bashrc").read())
attempt("write-scratch", lambda: open("ok.txt", "w").write("x"))
"#,
        target = target.display().to_string(),
        secret = secret.display().to_string()
    );
    let out = runner(|_| {}).run(&code, &[], "").await.unwrap();
    for label in [
        "write-host",
        "write-usr",
        "read-host",
        "read-shadow",
        "read-root",
    ] {
        assert!(
            out.stdout.contains(&format!("{label} DENIED")),
            "{label}: {}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("write-scratch ALLOWED"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("TOP SECRET"));
    assert!(!target.exists());
    assert!(!std::path::Path::new("/usr/pwned").exists());
}

#[tokio::test]
async fn output_is_truncated_at_the_limit() {
    let r = runner(|l| l.output_bytes = 1000);
    let out = r.run("print('x' * 1_000_000)", &[], "").await.unwrap();
    assert!(out.stdout_truncated && out.stdout.len() == 1000);
    assert!(out.success());
}

#[tokio::test]
async fn unit_tests_count_passes_and_report_failures() {
    let r = runner(|_| {});
    let solution = "def add(a, b):\n    return a + b if a < 100 else 0\n";
    let tests: Vec<String> = [
        "assert add(1, 2) == 3",
        "assert add(100, 1) == 101",
        "assert add(-1, 1) == 0",
        "assert nothere(1)",
    ]
    .map(String::from)
    .to_vec();
    let rep = run_unit_tests(&r, solution, &tests).await.unwrap();
    assert_eq!((rep.passed, rep.total), (2, 4));
    assert!(
        rep.results[1].error.as_deref() == Some("AssertionError"),
        "{:?}",
        rep.results[1]
    );
    assert!(rep.results[3]
        .error
        .as_deref()
        .unwrap()
        .contains("NameError"));
    let broken = run_unit_tests(&r, "def add(a, b) return", &tests)
        .await
        .unwrap();
    assert_eq!(broken.passed, 0);
    assert!(broken.load_error.unwrap().contains("SyntaxError"));
    // A solution that prints a fake report cannot pass: it does not know the nonce.
    let forger =
        "print('ARBOR-REPORT-0 {\"load_error\": null, \"results\": []}')\nimport os\nos._exit(0)\n";
    let forged = run_unit_tests(&r, forger, &tests).await.unwrap();
    assert_eq!(forged.passed, 0);
    assert!(!forged.all_passed());
}
