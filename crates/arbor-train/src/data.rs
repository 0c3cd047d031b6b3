//! Training examples read from `arbor export` or `arbor synth` output (JSONL or Parquet): every
//! row becomes a question with one or more responses. A bad row is reported as
//! `FILE:LINE: field: why` and skipped; the caller decides whether that is fatal.
use std::path::Path;

use arbor_core::table::read_rows;
use arbor_core::{Message, Role};
use serde_json::Value;

/// A response: a search tree's reasoning steps (each rendered on its own line), or, after a
/// [`Question::Chat`] or [`Question::Text`], the whole reply as its one element.
pub type Steps = Vec<String>;

/// What a response answers, and so how it is rendered into tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum Question {
    /// A task from a search tree (rows with `tree_id`; step-DPO's `question`): the step prompt
    /// (prompts/tree/step.j2) that search and evaluation show the policy, steps one per line.
    Task(String),
    /// A conversation from elsewhere (TRL's conversational rows, `arbor synth` pairs): the
    /// model's own chat template with the generation prompt; the reply is closed as the
    /// template closes it (its end-of-turn marker), so the model also learns where to stop.
    Chat(Vec<Message>),
    /// A plain-string prompt from elsewhere (TRL's standard rows): the text as is, the reply
    /// right after it and the end-of-sequence token after that, as TRL renders them.
    Text(String),
}

impl From<&str> for Question {
    fn from(q: &str) -> Self {
        Question::Task(q.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// Supervised fine-tuning target (rejection sampling: a correct solution).
    Sft { question: Question, steps: Steps },
    /// A preference pair after a shared `prefix` (empty for whole-trajectory DPO; the steps
    /// before the divergence for step-DPO, which thereby sums ρ only after it).
    Pair {
        question: Question,
        prefix: Steps,
        chosen: Steps,
        rejected: Steps,
    },
    /// A trajectory with its sparse terminal reward (OREO); always a tree's task.
    Trajectory {
        question: String,
        steps: Steps,
        reward: f64,
    },
    /// Responses ranked best first with their scores (TPO).
    List {
        question: Question,
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

fn field<'a>(row: &'a Value, name: &str) -> Result<&'a Value, String> {
    row.get(name).ok_or_else(|| format!("`{name}` is missing"))
}

/// A TRL conversational message list.
fn messages(v: &Value, name: &str) -> Result<Vec<Message>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("`{name}`: expected a list of {{role, content}} messages"))?;
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let role: Role = m
                .get("role")
                .cloned()
                .and_then(|r| serde_json::from_value(r).ok())
                .ok_or_else(|| {
                    format!("`{name}[{i}].role`: expected system, user, assistant or tool")
                })?;
            let content = m
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("`{name}[{i}].content`: expected a string"))?;
            Ok(Message::new(role, content))
        })
        .collect()
}

/// The question of a row: a tree's task (the last message of its conversational prompt), or,
/// for rows from elsewhere, the conversation or plain text as it stands.
fn question_of(row: &Value, tree: bool) -> Result<Question, String> {
    let p = field(row, "prompt")?;
    match p {
        Value::String(s) if tree => Ok(Question::Task(s.clone())),
        Value::String(s) => Ok(Question::Text(s.clone())),
        Value::Array(_) => {
            let mut msgs = messages(p, "prompt")?;
            match msgs.last() {
                None => Err("`prompt`: no messages".into()),
                Some(_) if tree => Ok(Question::Task(msgs.pop().map(|m| m.content).unwrap_or_default())),
                Some(_) => Ok(Question::Chat(msgs)),
            }
        }
        _ => Err("`prompt`: expected a string or a list of {role, content} messages".into()),
    }
}

/// A response (a string, or the content of the last message of a conversational list): one
/// step per line after a task, the whole reply otherwise.
fn response(text: &Value, name: &str, question: &Question) -> Result<Steps, String> {
    let text = match text {
        Value::String(s) => s.clone(),
        v @ Value::Array(_) => messages(v, name)?
            .pop()
            .map(|m| m.content)
            .ok_or_else(|| format!("`{name}`: no messages"))?,
        _ => {
            return Err(format!(
                "`{name}`: expected a string or a list of {{role, content}} messages"
            ))
        }
    };
    Ok(match question {
        Question::Task(_) => lines(&text),
        _ if text.trim().is_empty() => Vec::new(),
        _ => vec![text],
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
    // Rows of `arbor export` name their tree; they are trained in the step prompt that search
    // used. Every other row is rendered as TRL would: conversations with the chat template.
    let tree = row.get("tree_id").is_some();
    // SFT: TRL conversational messages (the conversation, then the assistant's answer).
    if let Some(msgs) = row.get("messages") {
        let mut msgs = messages(msgs, "messages")?;
        let last = msgs.pop().ok_or("`messages`: empty")?;
        if last.role != Role::Assistant || !msgs.iter().any(|m| m.role == Role::User) {
            return Err("`messages`: expected user turns, then the assistant's answer last".into());
        }
        let question = if tree {
            Question::Task(
                msgs.iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
            )
        } else {
            Question::Chat(msgs)
        };
        let steps = response(&Value::String(last.content), "messages", &question)?;
        return Ok(Example::Sft { question, steps });
    }
    // TPO list.
    if let Some(scores) = row.get("scores") {
        let scores: Vec<f64> = scores
            .as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect())
            .ok_or("`scores`: expected a list of numbers")?;
        let question = question_of(row, tree)?;
        let responses: Vec<Steps> = match (row.get("steps"), tree) {
            (Some(Value::Array(lists)), true) => lists
                .iter()
                .map(|l| strings(l, "steps"))
                .collect::<Result<_, _>>()?,
            _ => field(row, "responses")?
                .as_array()
                .ok_or("`responses`: expected a list")?
                .iter()
                .map(|r| response(r, "responses", &question))
                .collect::<Result<_, _>>()?,
        };
        if responses.len() != scores.len() || responses.len() < 2 {
            return Err(format!(
                "`scores`: {} scores for {} responses (need the same number, at least 2)",
                scores.len(),
                responses.len()
            ));
        }
        return Ok(Example::List {
            question,
            responses,
            scores,
        });
    }
    // OREO trajectory.
    if let Some(reward) = row.get("reward") {
        let reward = reward.as_f64().ok_or("`reward`: expected a number")?;
        let question = match question_of(row, true)? {
            Question::Task(q) => q,
            _ => return Err("`prompt`: expected a task".into()),
        };
        return Ok(Example::Trajectory {
            question,
            steps: strings(field(row, "steps")?, "steps")?,
            reward,
        });
    }
    // Preference pair: DPO (conversational or standard) or step-DPO (question + prefix).
    if row.get("chosen").is_some() {
        let (question, prefix) = match (row.get("question"), row.get("prefix")) {
            (Some(q), Some(p)) => (
                Question::Task(
                    q.as_str()
                        .ok_or("`question`: expected a string")?
                        .to_string(),
                ),
                strings(p, "prefix")?,
            ),
            _ => (question_of(row, tree)?, Vec::new()),
        };
        let chosen = response(field(row, "chosen")?, "chosen", &question)?;
        let rejected = response(field(row, "rejected")?, "rejected", &question)?;
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
        let dpo = json!({"prompt":[{"role":"user","content":"Q?"}],"chosen":[{"role":"assistant","content":"a\nb"}],"rejected":[{"role":"assistant","content":"c"}],"tree_id":"t"});
        assert_eq!(
            parse(&dpo).unwrap(),
            Example::Pair {
                question: "Q?".into(),
                prefix: vec![],
                chosen: vec!["a".into(), "b".into()],
                rejected: vec!["c".into()]
            }
        );
        let step = json!({"prompt":"Q?\na","chosen":"b","rejected":"x","question":"Q?","prefix":["a"],"step_index":1,"tree_id":"t"});
        assert!(
            matches!(parse(&step).unwrap(), Example::Pair { prefix, .. } if prefix == vec!["a".to_string()])
        );
        let oreo = json!({"prompt":"Q?","steps":["a","b"],"reward":1.0,"tree_id":"t"});
        assert_eq!(
            parse(&oreo).unwrap(),
            Example::Trajectory {
                question: "Q?".into(),
                steps: vec!["a".into(), "b".into()],
                reward: 1.0
            }
        );
        let tpo = json!({"prompt":"Q?","responses":["a\nb","c"],"steps":[["a","b"],["c"]],"scores":[1.0,0.0],"tree_id":"t"});
        assert!(
            matches!(parse(&tpo).unwrap(), Example::List { responses, .. } if responses.len() == 2)
        );
        let sft = json!({"messages":[{"role":"user","content":"Q?"},{"role":"assistant","content":"a\nb"}],"tree_id":"t"});
        assert_eq!(
            parse(&sft).unwrap(),
            Example::Sft {
                question: "Q?".into(),
                steps: vec!["a".into(), "b".into()]
            }
        );
    }

    /// Rows without a tree (`arbor synth`, TRL datasets) keep their conversation and their
    /// replies whole, to be rendered with the chat template.
    #[test]
    fn rows_from_elsewhere_keep_the_conversation() {
        let synth = json!({"id":"x","prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Q?"}],"chosen":[{"role":"assistant","content":"a\n\nb"}],"rejected":[{"role":"assistant","content":"c"}]});
        assert_eq!(
            parse(&synth).unwrap(),
            Example::Pair {
                question: Question::Chat(vec![Message::system("Be brief."), Message::user("Q?")]),
                prefix: vec![],
                chosen: vec!["a\n\nb".into()],
                rejected: vec!["c".into()]
            }
        );
        let standard = json!({"prompt":"Q?","chosen":" a","rejected":" b"});
        assert!(matches!(parse(&standard).unwrap(), Example::Pair { question: Question::Text(q), chosen, .. } if q == "Q?" && chosen == vec![" a".to_string()]));
        let list = json!({"prompt":[{"role":"user","content":"Q?"}],"responses":["a\nb","c"],"scores":[2.0,1.0]});
        assert!(matches!(parse(&list).unwrap(), Example::List { question: Question::Chat(_), responses, .. } if responses[0] == vec!["a\nb".to_string()]));
        let chat = json!({"messages":[{"role":"user","content":"Q?"},{"role":"assistant","content":"a\nb"}]});
        assert!(matches!(parse(&chat).unwrap(), Example::Sft { question: Question::Chat(m), steps } if m.len() == 1 && steps.len() == 1));
        assert!(parse(&json!({"messages":[{"role":"user","content":"Q?"}]}))
            .unwrap_err()
            .contains("assistant"));
        assert!(parse(&json!({"prompt":[{"role":"robot","content":"Q?"}],"chosen":"a","rejected":"b"}))
            .unwrap_err()
            .contains("`prompt[0].role`"));
    }

    #[test]
    fn bad_rows_name_the_field() {
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

    /// JSON built from the keys and shapes the reader looks at, nested at random.
    fn rows() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-z\\n ]{0,6}".prop_map(Value::from),
            prop::sample::select(vec!["user", "assistant", "system", "robot"]).prop_map(Value::from),
        ];
        let keys = prop::sample::select(vec![
            "prompt", "chosen", "rejected", "messages", "scores", "responses", "steps", "reward",
            "question", "prefix", "tree_id", "role", "content",
        ]);
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest::proptest! {
        /// No row panics the reader; a refusal always says why.
        #[test]
        fn any_row_is_read_or_refused_with_a_reason(row in rows()) {
            if let Err(e) = parse(&row) {
                proptest::prop_assert!(!e.is_empty());
            }
        }

        /// Any bytes as a file: every bad line is reported with the file and its line number.
        #[test]
        fn any_file_reports_its_bad_lines(text in "(\\{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"\\}|\\{|[a-z\\[\\]\":, ]{0,12})(\n(\\{\"tree_id\":1\\}|[^\n]{0,12})){0,5}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rows.jsonl");
            std::fs::write(&path, &text).unwrap();
            if let Ok((_, bad)) = read_examples(&path) {
                for b in bad {
                    let want = format!("{}:{}: ", path.display(), b.line);
                    proptest::prop_assert!(b.message.starts_with(&want), "{}", b.message);
                }
            }
        }
    }
}
