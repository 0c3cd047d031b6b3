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

/// `arbor mock-server` on a free port, killed on drop.
pub struct Mock {
    pub child: std::process::Child,
    /// Its base URL, ending in `/v1`.
    pub url: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `arbor mock-server EXTRA…` and waits for the address it prints.
pub fn mock(extra: &[&str]) -> Mock {
    use std::io::BufRead;
    let mut child = std::process::Command::new(ARBOR)
        .args(["mock-server", "--port", "0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = format!("{}/v1", line.trim().trim_end_matches('/').trim_end_matches("/v1"));
    Mock { child, url }
}

/// `n` one-step math tasks (`arbor env sample`, seed 5) written to `DIR/items.jsonl`.
pub fn math_tasks(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let (ok, out, err) = arbor(&["env", "sample", "--env", "math", "--n", &n.to_string(), "--seed", "5"]);
    assert!(ok, "{err}");
    let p = dir.join("items.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}
