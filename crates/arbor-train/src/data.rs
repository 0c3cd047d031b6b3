//! Training examples read from `arbor export` output (JSONL or Parquet): every row becomes a
//! question with one or more step lists. A bad row is reported as `FILE:LINE: field: why` and
//! skipped; the caller decides whether that is fatal.
use std::path::Path;

use arbor_core::table::read_rows;
use serde_json::Value;

/// A response as its reasoning steps (each rendered on its own line).
pub type Steps = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// Supervised fine-tuning target (rejection sampling: a correct solution).
    Sft { question: String, steps: Steps },
    /// A preference pair after a shared `prefix` (empty for whole-trajectory DPO; the steps
    /// before the divergence for step-DPO, which thereby sums ρ only after it).
    Pair {
        question: String,
        prefix: Steps,
        chosen: Steps,
        rejected: Steps,
    },
    /// A trajectory with its sparse terminal reward (OREO).
    Trajectory {
        question: String,
        steps: Steps,
        reward: f64,
    },
    /// Responses ranked best first with their scores (TPO).
    List {
        question: String,
        responses: Vec<Steps>,
        scores: Vec<f64>,
    },
}

impl Example {
    /// What kind of example this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Example::Sft { .. } => "sft",
            Example::Pair { .. } => "a preference pair",
            Example::Trajectory { .. } => "an OREO trajectory",
            Example::List { .. } => "a TPO list",
        }
    }
}

/// A row that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub line: usize,
    pub message: String,
}

fn lines(text: &str) -> Steps {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Text of a prompt or response field: a string, or the content of the last message of a
/// TRL conversational list.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(msgs) => msgs.last()?.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn field<'a>(row: &'a Value, name: &str) -> Result<&'a Value, String> {
    row.get(name).ok_or_else(|| format!("`{name}` is missing"))
}

fn text_field(row: &Value, name: &str) -> Result<String, String> {
    text_of(field(row, name)?).ok_or_else(|| {
        format!("`{name}`: expected a string or a list of {{role, content}} messages")
    })
}

fn strings(v: &Value, name: &str) -> Result<Steps, String> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("`{name}`: expected a list of strings"))
}

fn parse(row: &Value) -> Result<Example, String> {
    if !row.is_object() {
        return Err("the row is not a JSON object".into());
    }
    // SFT: TRL conversational messages (user question, assistant answer).
    if let Some(msgs) = row.get("messages") {
        let arr = msgs.as_array().ok_or("`messages`: expected a list")?;
        let content = |role: &str| {
            arr.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some(role))
                .and_then(|m| m.get("content")?.as_str())
        };
        let question = content("user")
            .ok_or("`messages`: no user message")?
            .to_string();
        let answer = content("assistant").ok_or("`messages`: no assistant message")?;
        return Ok(Example::Sft {
            question,
            steps: lines(answer),
        });
    }
    // TPO list.
    if let Some(scores) = row.get("scores") {
        let scores: Vec<f64> = scores
            .as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect())
            .ok_or("`scores`: expected a list of numbers")?;
        let responses: Vec<Steps> = match row.get("steps") {
            Some(Value::Array(lists)) => lists
                .iter()
                .map(|l| strings(l, "steps"))
                .collect::<Result<_, _>>()?,
            _ => strings(field(row, "responses")?, "responses")?
                .iter()
                .map(|r| lines(r))
                .collect(),
        };
        if responses.len() != scores.len() || responses.len() < 2 {
            return Err(format!(
                "`scores`: {} scores for {} responses (need the same number, at least 2)",
                scores.len(),
                responses.len()
            ));
        }
        return Ok(Example::List {
            question: text_field(row, "prompt")?,
            responses,
            scores,
        });
    }
    // OREO trajectory.
    if let Some(reward) = row.get("reward") {
        let reward = reward.as_f64().ok_or("`reward`: expected a number")?;
        return Ok(Example::Trajectory {
            question: text_field(row, "prompt")?,
            steps: strings(field(row, "steps")?, "steps")?,
            reward,
        });
    }
    // Preference pair: DPO (conversational or standard) or step-DPO (question + prefix).
    if row.get("chosen").is_some() {
        let (question, prefix) = match (row.get("question"), row.get("prefix")) {
            (Some(q), Some(p)) => (
                q.as_str()
                    .ok_or("`question`: expected a string")?
                    .to_string(),
                strings(p, "prefix")?,
            ),
            _ => (text_field(row, "prompt")?, Vec::new()),
        };
        let (chosen, rejected) = (
            lines(&text_field(row, "chosen")?),
            lines(&text_field(row, "rejected")?),
        );
        if chosen.is_empty() || rejected.is_empty() {
            return Err("`chosen`/`rejected`: empty response".into());
        }
        return Ok(Example::Pair {
            question,
            prefix,
            chosen,
            rejected,
        });
    }
    Err("not a training row: expected `messages` (sft), `chosen`/`rejected` (dpo, step-dpo), `steps` + `reward` (oreo) or `scores` (tpo)".into())
}

/// Reads every row of `path`; bad rows come back separately, each naming its line.
pub fn read_examples(path: &Path) -> Result<(Vec<Example>, Vec<BadRow>), String> {
    let rows = read_rows(path).map_err(|e| e.to_string())?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        match row.value.map_err(|e| e).and_then(|v| parse(&v)) {
            Ok(ex) => good.push(ex),
            Err(message) => bad.push(BadRow {
                line: row.line,
                message: format!("{}:{}: {message}", path.display(), row.line),
            }),
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn export_rows_become_examples() {
        let dpo = json!({"prompt":[{"role":"user","content":"Q?"}],"chosen":[{"role":"assistant","content":"a\nb"}],"rejected":[{"role":"assistant","content":"c"}]});
        assert_eq!(
            parse(&dpo).unwrap(),
            Example::Pair {
                question: "Q?".into(),
                prefix: vec![],
                chosen: vec!["a".into(), "b".into()],
                rejected: vec!["c".into()]
            }
        );
        let step = json!({"prompt":"Q?\na","chosen":"b","rejected":"x","question":"Q?","prefix":["a"],"step_index":1});
        assert!(
            matches!(parse(&step).unwrap(), Example::Pair { prefix, .. } if prefix == vec!["a".to_string()])
        );
        let oreo = json!({"prompt":"Q?","steps":["a","b"],"reward":1.0});
        assert_eq!(
            parse(&oreo).unwrap(),
            Example::Trajectory {
                question: "Q?".into(),
                steps: vec!["a".into(), "b".into()],
                reward: 1.0
            }
        );
        let tpo = json!({"prompt":"Q?","responses":["a\nb","c"],"steps":[["a","b"],["c"]],"scores":[1.0,0.0]});
        assert!(
            matches!(parse(&tpo).unwrap(), Example::List { responses, .. } if responses.len() == 2)
        );
        let sft = json!({"messages":[{"role":"user","content":"Q?"},{"role":"assistant","content":"a\nb"}]});
        assert_eq!(
            parse(&sft).unwrap(),
            Example::Sft {
                question: "Q?".into(),
                steps: vec!["a".into(), "b".into()]
            }
        );
        assert!(parse(&json!({"prompt":"Q","steps":["a"],"reward":"high"}))
            .unwrap_err()
            .contains("`reward`"));
        assert!(
            parse(&json!({"prompt":"Q","responses":["a"],"scores":[1.0, 2.0]}))
                .unwrap_err()
                .contains("`scores`")
        );
        assert!(parse(&json!([1]))
            .unwrap_err()
            .contains("not a JSON object"));
    }
}
