//! Unit-test runner for code tasks: a Python solution plus assertions, run in the sandbox.
use serde::{Deserialize, Serialize};

use crate::sandbox::{PythonRunner, RunOutput, SandboxError};

const HARNESS: &str = include_str!("unit_harness.py");

/// One assertion's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub test: String,
    pub passed: bool,
    pub error: Option<String>,
}

/// The result of running a solution against its tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitTestReport {
    pub passed: usize,
    pub total: usize,
    /// Why the solution itself did not load (syntax error, exception at import), if so.
    pub load_error: Option<String>,
    pub results: Vec<TestResult>,
    /// The sandbox run (exit code, limits hit, output).
    pub run: RunOutput,
}

impl UnitTestReport {
    pub fn all_passed(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }

    /// Fraction of assertions passed, 0 when the run never reported.
    pub fn score(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

#[derive(Deserialize)]
struct HarnessReport {
    load_error: Option<String>,
    results: Vec<TestResult>,
}

/// The code inside the first ```python fence, or the whole text.
pub fn extract_code(text: &str) -> String {
    for fence in ["```python", "```py", "```"] {
        if let Some(start) = text.find(fence) {
            let body = &text[start + fence.len()..];
            let body = body.strip_prefix('\n').unwrap_or(body);
            if let Some(end) = body.find("```") {
                return body[..end].to_string();
            }
        }
    }
    text.to_string()
}

/// Runs `solution` then each of `tests` (Python statements, usually `assert …`).
pub async fn run_unit_tests(
    runner: &PythonRunner,
    solution: &str,
    tests: &[String],
) -> Result<UnitTestReport, SandboxError> {
    let nonce = format!("ARBOR-REPORT-{:032x}", rand_u128());
    let tests_json = serde_json::to_string(tests).expect("strings serialize");
    let run = runner
        .run(
            HARNESS,
            &[("solution.py", solution), ("tests.json", &tests_json)],
            &format!("{nonce}\n"),
        )
        .await?;
    let report = run
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&nonce).map(str::trim))
        .and_then(|j| serde_json::from_str::<HarnessReport>(j).ok());
    Ok(match report {
        Some(h) => UnitTestReport {
            passed: h.results.iter().filter(|r| r.passed).count(),
            total: tests.len(),
            load_error: h.load_error,
            results: h.results,
            run,
        },
        None => UnitTestReport {
            passed: 0,
            total: tests.len(),
            load_error: Some(match run.limit {
                Some(l) => format!("stopped by the {l:?} limit before reporting"),
                None => format!(
                    "the test run ended without a report (exit code {})",
                    run.exit_code
                ),
            }),
            results: Vec::new(),
            run,
        },
    })
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() ^ (std::process::id() as u128) << 64;
    }
    u128::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_taken_from_fences() {
        assert_eq!(
            extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone."),
            "def f():\n    return 1\n"
        );
        assert_eq!(extract_code("def f(): pass"), "def f(): pass");
    }
}
