//! Math word problems: a seeded generator of GSM-style multi-step problems with verified
//! answers, and a loader for GSM8K-format JSONL. Episodes are step-by-step solutions; the final
//! answer is checked by arbor-tools' verifier.
use std::path::{Path, PathBuf};

use arbor_checks::calculator;
use arbor_checks::number::{format_exact, parse_number};
use arbor_checks::verifier::{self, Method};
use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{EnvError, Environment, Episode, Step, Task, Verification};

/// Difficulty knobs of the generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    pub min_steps: usize,
    pub max_steps: usize,
    pub max_value: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            min_steps: 2,
            max_steps: 4,
            max_value: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MathConfig {
    /// Sample tasks from this GSM8K-format file instead of generating them.
    #[serde(default)]
    pub gsm8k: Option<PathBuf>,
    #[serde(default = "default_episode_steps")]
    pub max_episode_steps: usize,
    #[serde(default)]
    pub generator: GeneratorConfig,
}

fn default_episode_steps() -> usize {
    10
}

impl Default for MathConfig {
    fn default() -> Self {
        Self {
            gsm8k: None,
            max_episode_steps: default_episode_steps(),
            generator: GeneratorConfig::default(),
        }
    }
}

impl MathConfig {
    pub fn validate(&self) -> Result<(), EnvError> {
        let g = &self.generator;
        if g.min_steps == 0 || g.min_steps > g.max_steps || g.max_steps > 12 {
            return Err(EnvError::Config(
                "generator: need 1 <= min_steps <= max_steps <= 12".into(),
            ));
        }
        if !(10..=1_000_000).contains(&g.max_value) {
            return Err(EnvError::Config(
                "generator.max_value must be in 10..=1000000".into(),
            ));
        }
        if self.max_episode_steps == 0 {
            return Err(EnvError::Config(
                "max_episode_steps must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

const NAMES: [(&str, &str, &str); 10] = [
    ("Mia", "she", "her"),
    ("Liam", "he", "his"),
    ("Ava", "she", "her"),
    ("Noah", "he", "his"),
    ("Zoe", "she", "her"),
    ("Omar", "he", "his"),
    ("Priya", "she", "her"),
    ("Kenji", "he", "his"),
    ("Lucia", "she", "her"),
    ("Tomas", "he", "his"),
];
const ITEMS: [&str; 10] = [
    "apples",
    "stickers",
    "marbles",
    "books",
    "cookies",
    "pencils",
    "seashells",
    "cards",
    "stamps",
    "beads",
];
const FRIENDS: [&str; 5] = [
    "a friend",
    "a neighbour",
    "a classmate",
    "a cousin",
    "the school fair",
];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Generates one problem: (question, GSM8K-style solution with `<<expr=result>>`, answer).
pub fn generate(cfg: &GeneratorConfig, rng: &mut StdRng) -> (String, String, u64) {
    let (name, he, his) = NAMES[rng.gen_range(0..NAMES.len())];
    let item = ITEMS[rng.gen_range(0..ITEMS.len())];
    let steps = rng.gen_range(cfg.min_steps..=cfg.max_steps);
    let hi = cfg.max_value.max(10);
    let mut x: u64 = rng.gen_range(hi / 10 + 2..=hi);
    let mut q = vec![format!("{name} has {x} {item}.")];
    let mut sol = Vec::new();
    for _ in 0..steps {
        // Pick an operation that keeps the count a positive whole number.
        loop {
            match rng.gen_range(0..5) {
                0 => {
                    let k = rng.gen_range(1..=hi);
                    q.push(format!("{} buys {k} more {item}.", cap(he)));
                    sol.push(format!(
                        "After buying {k} more, {he} has {x}+{k} = <<{x}+{k}={}>>{} {item}.",
                        x + k,
                        x + k
                    ));
                    x += k;
                }
                1 if x > 1 => {
                    let k = rng.gen_range(1..x);
                    let to = FRIENDS[rng.gen_range(0..FRIENDS.len())];
                    q.push(format!("{} gives {k} {item} to {to}.", cap(he)));
                    sol.push(format!(
                        "After giving {k} away, {he} has {x}-{k} = <<{x}-{k}={}>>{} {item}.",
                        x - k,
                        x - k
                    ));
                    x -= k;
                }
                2 if x <= hi * 10 => {
                    let m = rng.gen_range(2..=4u64);
                    let word = ["", "", "doubles", "triples", "quadruples"][m as usize];
                    q.push(format!("Then {he} {word} {his} {item}."));
                    sol.push(format!(
                        "Multiplying by {m} gives {x}*{m} = <<{x}*{m}={}>>{} {item}.",
                        x * m,
                        x * m
                    ));
                    x *= m;
                }
                3 => {
                    let divisors: Vec<u64> = (2..=6).filter(|d| x % d == 0 && x / d >= 1).collect();
                    let Some(&d) = divisors.choose(rng) else {
                        continue;
                    };
                    q.push(format!("{} shares {his} {item} equally among {d} people, {} included, and keeps one share.", cap(he), if he == "he" { "himself" } else { "herself" }));
                    sol.push(format!(
                        "One share of {d} is {x}/{d} = <<{x}/{d}={}>>{} {item}.",
                        x / d,
                        x / d
                    ));
                    x /= d;
                }
                4 => {
                    let ps: Vec<u64> = [10, 20, 25, 50, 75]
                        .into_iter()
                        .filter(|p| x * p % 100 == 0 && x * p / 100 < x)
                        .collect();
                    let Some(&p) = ps.choose(rng) else { continue };
                    let sold = x * p / 100;
                    q.push(format!("{} sells {p}% of {his} {item}.", cap(he)));
                    sol.push(format!("{} sells {x}*{p}/100 = <<{x}*{p}/100={sold}>>{sold} {item}, leaving {x}-{sold} = <<{x}-{sold}={}>>{} {item}.", cap(he), x - sold, x - sold));
                    x -= sold;
                }
                _ => continue,
            }
            break;
        }
    }
    let answer;
    if rng.gen_bool(0.3) {
        let price = rng.gen_range(2..=9u64);
        q.push(format!("If each of {his} {item} sells for ${price}, how many dollars are {name}'s {item} worth?"));
        sol.push(format!(
            "They are worth {x}*{price} = <<{x}*{price}={}>>{} dollars.",
            x * price,
            x * price
        ));
        answer = x * price;
    } else {
        q.push(format!("How many {item} does {name} have now?"));
        answer = x;
    }
    sol.push(format!("#### {answer}"));
    (q.join(" "), sol.join("\n"), answer)
}

/// Recomputes a solution's annotated arithmetic with the calculator: every `<<expr=r>>` must
/// evaluate to r, and the last annotation must equal the final answer.
pub fn check_solution(solution: &str, answer: &str) -> Result<(), String> {
    let want = parse_number(answer).ok_or_else(|| format!("answer {answer:?} is not a number"))?;
    let mut last = None;
    for part in solution.split("<<").skip(1) {
        let inner = part.split(">>").next().unwrap_or("");
        let (expr, result) = inner
            .split_once('=')
            .ok_or_else(|| format!("annotation without `=`: {inner}"))?;
        let got = calculator::evaluate(expr).map_err(|e| format!("{expr}: {e}"))?;
        let stated = parse_number(result).ok_or_else(|| format!("bad result in {inner}"))?;
        if got != stated {
            return Err(format!("{expr} is {}, not {result}", format_exact(&got)));
        }
        last = Some(got);
    }
    match last {
        Some(l) if l == want => Ok(()),
        Some(l) => Err(format!(
            "last step gives {}, answer says {answer}",
            format_exact(&l)
        )),
        None => Err("no annotated arithmetic".into()),
    }
}

/// Loads a GSM8K-format JSONL file (`{"question", "answer"}`, the answer ending in `#### n`).
pub fn load_gsm8k(path: &Path) -> Result<Vec<Task>, EnvError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EnvError::Io(format!("{}: {e}", path.display())))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("gsm8k");
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: &str| EnvError::BadFile {
            path: path.display().to_string(),
            line: i + 1,
            msg: msg.to_string(),
        };
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let question = v
            .get("question")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("field `question` missing or not a string"))?;
        let answer = v
            .get("answer")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("field `answer` missing or not a string"))?;
        let reference = answer
            .rsplit_once("####")
            .map(|(_, r)| r.trim().replace(',', ""))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad("field `answer` has no `#### <final answer>`"))?;
        let mut metadata = Map::new();
        metadata.insert("solution".into(), json!(answer));
        metadata.insert(
            "source".into(),
            json!(format!("{}:{}", path.display(), i + 1)),
        );
        tasks.push(Task {
            id: format!("gsm8k-{stem}-{}", i + 1),
            env: "math".into(),
            prompt: question.to_string(),
            reference: Some(reference),
            metadata,
        });
    }
    Ok(tasks)
}

pub struct MathEnv {
    cfg: MathConfig,
}

impl MathEnv {
    pub fn new(cfg: MathConfig) -> Result<Self, EnvError> {
        cfg.validate()?;
        Ok(Self { cfg })
    }
}

impl Environment for MathEnv {
    fn name(&self) -> &'static str {
        "math"
    }
    /// The final answer as the verifier extracts and normalizes it ("12", "12.0" and "12.00"
    /// are one answer).
    fn answer_of(&self, steps: &[String]) -> Option<String> {
        let e = verifier::extract(&steps.join("\n"))?;
        Some(verifier::normalize(&e.raw).to_string())
    }
    fn description(&self) -> &'static str {
        "GSM-style multi-step word problems (procedural, or a GSM8K file); steps are lines of reasoning, the last gives the answer"
    }

    fn sample(&self, n: usize, seed: u64) -> Result<Vec<Task>, EnvError> {
        let mut rng = StdRng::seed_from_u64(seed);
        if let Some(path) = &self.cfg.gsm8k {
            let mut all = load_gsm8k(path)?;
            all.shuffle(&mut rng);
            all.truncate(n);
            return Ok(all);
        }
        let g = &self.cfg.generator;
        (0..n)
            .map(|i| {
                let (question, solution, answer) = generate(g, &mut rng);
                check_solution(&solution, &answer.to_string())
                    .map_err(|e| EnvError::BadTask(format!("generator bug: {e}")))?;
                let mut metadata = Map::new();
                metadata.insert("solution".into(), json!(solution));
                metadata.insert("seed".into(), json!(seed));
                metadata.insert(
                    "difficulty".into(),
                    json!({"steps": solution.matches("<<").count(), "max_value": g.max_value}),
                );
                Ok(Task {
                    id: format!("math-{seed}-{i}"),
                    env: "math".into(),
                    prompt: question,
                    reference: Some(answer.to_string()),
                    metadata,
                })
            })
            .collect()
    }

    fn start(&self, task: &Task) -> Result<Box<dyn Episode>, EnvError> {
        let reference = task
            .reference
            .clone()
            .ok_or_else(|| EnvError::BadTask(format!("task {}: no reference answer", task.id)))?;
        Ok(Box::new(MathEpisode {
            prompt: task.prompt.clone(),
            reference,
            steps: Vec::new(),
            max_steps: self.cfg.max_episode_steps,
            done: false,
        }))
    }

    fn judge_tools(&self) -> Vec<&'static str> {
        vec!["calculator", "verify_answer", "python"]
    }
}

/// A step-by-step solution in progress: each action is one reasoning step.
pub struct MathEpisode {
    prompt: String,
    reference: String,
    steps: Vec<String>,
    max_steps: usize,
    done: bool,
}

impl MathEpisode {
    fn answered(step: &str) -> bool {
        verifier::extract(step).is_some_and(|e| e.method != Method::LastNumber)
    }
}

#[async_trait]
impl Episode for MathEpisode {
    fn observation(&self) -> String {
        let mut s = self.prompt.clone();
        for step in &self.steps {
            s.push('\n');
            s.push_str(step);
        }
        s
    }

    async fn step(&mut self, action: &str) -> Step {
        if self.done {
            return Step {
                observation: self.observation(),
                reward: 0.0,
                done: true,
            };
        }
        self.steps.push(action.trim_end().to_string());
        self.done = Self::answered(action) || self.steps.len() >= self.max_steps;
        let reward = if self.done && verifier::verify(action, &self.reference).correct {
            1.0
        } else {
            0.0
        };
        Step {
            observation: self.observation(),
            reward,
            done: self.done,
        }
    }

    fn done(&self) -> bool {
        self.done
    }

    async fn verify(&self) -> Verification {
        let v = verifier::verify(&self.steps.join("\n"), &self.reference);
        Verification {
            correct: v.correct,
            score: if v.correct { 1.0 } else { 0.0 },
            detail: format!(
                "answer {} vs reference {}",
                v.answer.as_deref().unwrap_or("none"),
                v.reference
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_answers_are_verified_and_deterministic() {
        let env = MathEnv::new(MathConfig::default()).unwrap();
        let a = env.sample(300, 7).unwrap();
        assert_eq!(a, env.sample(300, 7).unwrap());
        assert_ne!(a, env.sample(300, 8).unwrap());
        for t in &a {
            let sol = t.meta("solution").unwrap().as_str().unwrap();
            check_solution(sol, t.reference.as_deref().unwrap()).unwrap();
            assert!(verifier::verify(sol, t.reference.as_deref().unwrap()).correct);
        }
    }

    #[test]
    fn difficulty_knobs_apply() {
        let cfg = MathConfig {
            generator: GeneratorConfig {
                min_steps: 6,
                max_steps: 6,
                max_value: 1000,
            },
            ..Default::default()
        };
        let env = MathEnv::new(cfg).unwrap();
        for t in env.sample(50, 1).unwrap() {
            // six operations, plus one more annotation for a price question or a percentage sale
            let n = t.meta("difficulty").unwrap()["steps"].as_u64().unwrap();
            assert!(n >= 6, "{n}");
        }
        assert!(MathEnv::new(MathConfig {
            generator: GeneratorConfig {
                min_steps: 3,
                max_steps: 2,
                max_value: 100
            },
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn check_solution_catches_wrong_arithmetic() {
        assert!(check_solution("a <<2+2=5>>5\n#### 5", "5").is_err());
        assert!(check_solution("a <<2+2=4>>4\n#### 5", "5").is_err());
        assert!(check_solution("a <<2+2=4>>4\n#### 4", "4").is_ok());
    }

    #[tokio::test]
    async fn episodes_reward_the_right_final_answer() {
        let env = MathEnv::new(MathConfig::default()).unwrap();
        let task = &env.sample(1, 3).unwrap()[0];
        let answer = task.reference.clone().unwrap();
        let mut ep = env.start(task).unwrap();
        let s1 = ep.step("First I count the items.").await;
        assert!(!s1.done && s1.reward == 0.0);
        let s2 = ep.step(&format!("The answer is {answer}.")).await;
        assert!(s2.done && s2.reward == 1.0);
        assert!(ep.verify().await.correct);
        let mut wrong = env.start(task).unwrap();
        let s = wrong.step("#### 999999999").await;
        assert!(s.done && s.reward == 0.0);
        assert!(!wrong.verify().await.correct);
    }

    #[test]
    fn gsm8k_loader_names_bad_lines() {
        let d = std::env::temp_dir().join(format!("arbor-gsm8k-{}", std::process::id()));
        std::fs::write(&d, "{\"question\": \"q\", \"answer\": \"x\\n#### 1,000\"}\n{\"question\": \"q\", \"answer\": \"no marker\"}\n").unwrap();
        let e = load_gsm8k(&d).unwrap_err().to_string();
        assert!(
            e.ends_with(":2: field `answer` has no `#### <final answer>`"),
            "{e}"
        );
        std::fs::write(
            &d,
            "{\"question\": \"q\", \"answer\": \"x\\n#### 1,000\"}\n",
        )
        .unwrap();
        assert_eq!(
            load_gsm8k(&d).unwrap()[0].reference.as_deref(),
            Some("1000")
        );
        std::fs::remove_file(&d).unwrap();
    }
}
