//! Input items: JSONL or Parquet rows `{"id"?, "prompt" | "messages", "reference"?, …metadata}`.
use std::path::Path;

use arbor_core::{content_hash, Message, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One item to make a pair for. `index` is its position among the input rows (0-based).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub index: usize,
    pub id: String,
    pub messages: Vec<Message>,
    pub reference: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Item {
    /// The conversation as plain text (the judge and reward see this).
    pub fn prompt_text(&self) -> String {
        if let [only] = self.messages.as_slice() {
            return only.content.clone();
        }
        self.messages
            .iter()
            .map(|m| format!("{}: {}", role_name(m.role), m.content))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// A row that could not become an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadRow {
    pub index: usize,
    pub line: usize,
    pub cause: String,
}

/// Every row of the file, in order: items, and rows that are not (with their line and cause).
pub fn read_items(path: &Path) -> Result<Vec<Result<Item, BadRow>>, arbor_core::table::TableError> {
    let rows = arbor_core::table::read_rows(path)?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            let bad = |cause: String| BadRow {
                index,
                line: row.line,
                cause: format!("{}:{}: {cause}", path.display(), row.line),
            };
            match row.value {
                Err(e) => Err(bad(e)),
                Ok(v) => item_from_row(index, v).map_err(bad),
            }
        })
        .collect())
}

fn item_from_row(index: usize, v: Value) -> Result<Item, String> {
    let Value::Object(mut o) = v else {
        return Err("expected a JSON object".into());
    };
    let list = |field: &str, v: Value| -> Result<Vec<Message>, String> {
        let msgs: Vec<Message> =
            serde_json::from_value(v).map_err(|e| format!("field `{field}`: {e}"))?;
        if msgs.is_empty() {
            return Err(format!("field `{field}`: empty"));
        }
        Ok(msgs)
    };
    let messages = match (o.remove("messages"), o.remove("prompt")) {
        (Some(m), None) => list("messages", m)?,
        (None, Some(Value::String(p))) if !p.trim().is_empty() => vec![Message::user(p)],
        (None, Some(Value::String(_))) => return Err("field `prompt`: empty".into()),
        (None, Some(a @ Value::Array(_))) => list("prompt", a)?,
        (None, Some(_)) => return Err("field `prompt`: expected a string or a message list".into()),
        (Some(_), Some(_)) => return Err("give `prompt` or `messages`, not both".into()),
        (None, None) => return Err("missing field `prompt` (or `messages`)".into()),
    };
    let reference = match o.remove("reference") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("field `reference`: expected a string".into()),
    };
    let id = match o.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => content_hash(&(&messages, &reference))[..16].to_string(),
        Some(_) => return Err("field `id`: expected a string".into()),
    };
    Ok(Item {
        index,
        id,
        messages,
        reference,
        metadata: o,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_items_or_name_their_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"prompt\":\"2+2?\",\"reference\":4,\"topic\":\"math\"}\n{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\nnot json\n{\"prompt\":7}\n{\"text\":\"x\"}\n").unwrap();
        let items = read_items(&p).unwrap();
        let a = items[0].as_ref().unwrap();
        assert_eq!(
            (
                a.id.as_str(),
                a.reference.as_deref(),
                a.metadata["topic"].as_str()
            ),
            ("a", Some("4"), Some("math"))
        );
        assert_eq!(items[1].as_ref().unwrap().id.len(), 16);
        let e = items[2].as_ref().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.cause.contains("in.jsonl:3: invalid JSON"), "{}", e.cause);
        assert!(items[3]
            .as_ref()
            .unwrap_err()
            .cause
            .contains("field `prompt`"));
        assert!(items[4]
            .as_ref()
            .unwrap_err()
            .cause
            .contains("missing field `prompt`"));
    }

    proptest::proptest! {
        /// Any line: an item with a prompt to send, or a cause naming the file and line.
        #[test]
        fn any_line_is_an_item_or_a_named_refusal(line in "\\{(\"(prompt|messages|id|reference|role|content)\": ?(\"[a-z]{0,3}\"|\\[\\]|\\[\\{\"role\": ?\"(user|robot)\", ?\"content\": ?\"x\"\\}\\]|[0-9]|null|\\{\\}),? ?){0,4}\\}|[^\n]{0,20}") {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("in.jsonl");
            std::fs::write(&p, format!("{line}\n")).unwrap();
            for r in read_items(&p).unwrap() {
                match r {
                    Ok(item) => proptest::prop_assert!(!item.messages.is_empty(), "{line}"),
                    Err(e) => proptest::prop_assert!(e.cause.starts_with(&format!("{}:1: ", p.display())), "{}", e.cause),
                }
            }
        }
    }
}
