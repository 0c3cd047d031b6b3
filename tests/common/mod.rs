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
