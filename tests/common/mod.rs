//! Helpers shared by the CLI tests.
#![allow(dead_code)]

pub const ARBOR: &str = env!("CARGO_BIN_EXE_arbor");

/// Runs `arbor ARGS`: (success, stdout, stderr).
pub fn arbor(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(ARBOR)
        .args(args)
        .output()
        .expect("the arbor binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM (what Ctrl-C asks of a job) to the process `pid`.
pub fn terminate(pid: u32) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success(), "kill -TERM {pid} failed");
}

/// A JSON file's value.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Python of `.ci/run`'s virtual environment, with HF `datasets` and pandas.
pub fn venv_python() -> std::path::PathBuf {
    let py = arbor_model::fetch::arbor_home().join("venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import datasets, pandas"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "HF datasets is missing: run `bash .ci/run`, or `{} -m pip install datasets pandas pyarrow`", py.display());
    py
}
