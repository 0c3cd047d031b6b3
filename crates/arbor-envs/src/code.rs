//! Python function-writing tasks with hidden unit tests, scored in the sandbox.
use std::path::PathBuf;

use arbor_checks::sandbox::{Limits, PythonRunner};
use arbor_checks::unit_tests::{extract_code, run_unit_tests};
use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{EnvError, Environment, Episode, Step, Task, Verification};

const BUILTIN_TASKS: &str = include_str!("../../../environments/code/tasks.jsonl");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeConfig {
    /// Another task file in the format of environments/code/tasks.jsonl.
    #[serde(default)]
    pub tasks: Option<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeTask {
    id: String,
    function: String,
    prompt: String,
    example: String,
    tests: Vec<String>,
}

fn parse_tasks(text: &str, source: &str) -> Result<Vec<CodeTask>, EnvError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let t: CodeTask = serde_json::from_str(l).map_err(|e| EnvError::BadFile {
                path: source.into(),
                line: i + 1,
                msg: e.to_string(),
            })?;
            if t.tests.is_empty() {
                return Err(EnvError::BadFile {
                    path: source.into(),
                    line: i + 1,
                    msg: "field `tests` is empty".into(),
                });
            }
            Ok(t)
        })
        .collect()
}

pub struct CodeEnv {
    tasks: Vec<CodeTask>,
    limits: Limits,
}

impl CodeEnv {
    pub fn new(cfg: CodeConfig) -> Result<Self, EnvError> {
        let tasks = match &cfg.tasks {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| EnvError::Io(format!("{}: {e}", p.display())))?;
                parse_tasks(&text, &p.display().to_string())?
            }
            None => parse_tasks(BUILTIN_TASKS, "environments/code/tasks.jsonl")?,
        };
        Ok(Self {
            tasks,
            limits: cfg.limits,
        })
    }
}

impl Environment for CodeEnv {
    fn name(&self) -> &'static str {
        "code"
    }
    fn description(&self) -> &'static str {
        "write a Python function; hidden unit tests run in the sandbox score it"
    }

    fn sample(&self, n: usize, seed: u64) -> Result<Vec<Task>, EnvError> {
        let mut order: Vec<&CodeTask> = self.tasks.iter().collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        Ok(order
            .into_iter()
            .cycle()
            .take(n)
            .enumerate()
            .map(|(i, t)| {
                let mut metadata = Map::new();
                metadata.insert("function".into(), json!(t.function));
                metadata.insert("tests".into(), json!(t.tests));
                let round = i / self.tasks.len().max(1);
                Task {
                    id: if round == 0 {
                        t.id.clone()
                    } else {
                        format!("{}#{round}", t.id)
                    },
                    env: "code".into(),
                    prompt: format!(
                        "{}\nExample: {}\nAnswer with the function in a ```python block.",
                        t.prompt, t.example
                    ),
                    reference: None,
                    metadata,
                }
            })
            .collect())
    }

    fn start(&self, task: &Task) -> Result<Box<dyn Episode>, EnvError> {
        let tests: Vec<String> = task
            .meta("tests")
            .cloned()
            .and_then(|v: Value| serde_json::from_value(v).ok())
            .filter(|t: &Vec<String>| !t.is_empty())
            .ok_or_else(|| {
                EnvError::BadTask(format!(
                    "task {}: field `tests` missing or not a list of strings",
                    task.id
                ))
            })?;
        let runner =
            PythonRunner::new(self.limits.clone()).map_err(|e| EnvError::Tool(e.to_string()))?;
        Ok(Box::new(CodeEpisode {
            prompt: task.prompt.clone(),
            tests,
            runner,
            result: None,
        }))
    }

    fn judge_tools(&self) -> Vec<&'static str> {
        vec!["python", "run_unit_tests"]
    }
}

/// One attempt: the first action is the solution.
pub struct CodeEpisode {
    prompt: String,
    tests: Vec<String>,
    runner: PythonRunner,
    result: Option<(f64, String)>,
}

#[async_trait]
impl Episode for CodeEpisode {
    fn observation(&self) -> String {
        match &self.result {
            None => self.prompt.clone(),
            Some((_, detail)) => detail.clone(),
        }
    }

    async fn step(&mut self, action: &str) -> Step {
        if let Some((_, detail)) = &self.result {
            return Step {
                observation: detail.clone(),
                reward: 0.0,
                done: true,
            };
        }
        let code = extract_code(action);
        let (score, detail) = match run_unit_tests(&self.runner, &code, &self.tests).await {
            Ok(r) => {
                let mut d = format!("{} of {} tests passed", r.passed, r.total);
                if let Some(e) = &r.load_error {
                    d.push_str(&format!("; the code did not run: {e}"));
                }
                (r.score(), d)
            }
            Err(e) => (0.0, format!("could not run the tests: {e}")),
        };
        self.result = Some((score, detail.clone()));
        Step {
            observation: detail,
            reward: score,
            done: true,
        }
    }

    fn done(&self) -> bool {
        self.result.is_some()
    }

    async fn verify(&self) -> Verification {
        match &self.result {
            Some((score, detail)) => Verification {
                correct: *score >= 1.0,
                score: *score,
                detail: detail.clone(),
            },
            None => Verification {
                correct: false,
                score: 0.0,
                detail: "no solution submitted".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tasks_parse_and_sample_deterministically() {
        let env = CodeEnv::new(CodeConfig::default()).unwrap();
        assert!(env.tasks.len() >= 12);
        let a = env.sample(20, 1).unwrap();
        assert_eq!(a, env.sample(20, 1).unwrap());
        assert_eq!(a.len(), 20);
        let ids: std::collections::HashSet<_> = a.iter().map(|t| &t.id).collect();
        assert_eq!(ids.len(), 20, "ids stay unique when the set repeats");
    }

    #[test]
    fn bad_task_files_name_the_line() {
        let e = parse_tasks("{\"id\": \"a\", \"function\": \"f\", \"prompt\": \"p\", \"example\": \"e\", \"tests\": []}\n", "t.jsonl").unwrap_err();
        assert_eq!(e.to_string(), "t.jsonl:1: field `tests` is empty");
    }
}
