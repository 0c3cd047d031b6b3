//! The text protocol for models without native tool calls (the embedded model, base models):
//! instructions rendered from `prompts/tools/`, calls written as
//! `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, results returned as
//! `<tool_result name="…">…</tool_result>`.
use std::sync::LazyLock;

use arbor_core::{ToolCall, ToolSpec};
use minijinja::Environment;
use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::tool::ToolOutcome;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template(
        "instructions",
        include_str!("../../../prompts/tools/text_protocol.j2"),
    )
    .expect("prompts/tools/text_protocol.j2 parses");
    env.add_template(
        "results",
        include_str!("../../../prompts/tools/text_result.j2"),
    )
    .expect("prompts/tools/text_result.j2 parses");
    env.add_template(
        "final_answer",
        include_str!("../../../prompts/tools/final_answer.j2"),
    )
    .expect("prompts/tools/final_answer.j2 parses");
    env
});

static CALL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<tool_call>\s*(.*?)\s*</tool_call>").expect("static regex"));

/// The system-prompt section that teaches a model the protocol and lists the tools.
pub fn instructions(tools: &[ToolSpec]) -> String {
    TEMPLATES
        .get_template("instructions")
        .and_then(|t| t.render(minijinja::context! { tools => tools }))
        .expect("the instructions template renders any tool list")
}

/// A call as parsed from text: a well-formed call, or what was wrong with the block.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedCall {
    Call(ToolCall),
    Malformed { text: String, error: String },
}

/// Every `<tool_call>` block in `text`, in order. Ids are `text_<i>`.
pub fn parse_calls(text: &str) -> Vec<ParsedCall> {
    CALL.captures_iter(text)
        .enumerate()
        .map(|(i, c)| {
            let body = c[1].to_string();
            let parsed: Result<Value, _> = serde_json::from_str(&body);
            match parsed {
                Ok(v) => match v.get("name").and_then(Value::as_str) {
                    Some(name) => ParsedCall::Call(ToolCall {
                        id: format!("text_{i}"),
                        name: name.to_string(),
                        arguments: v
                            .get("arguments")
                            .map(Value::to_string)
                            .unwrap_or_else(|| "{}".into()),
                    }),
                    None => ParsedCall::Malformed {
                        text: body,
                        error: "missing \"name\"".into(),
                    },
                },
                Err(e) => ParsedCall::Malformed {
                    text: body,
                    error: format!("not JSON: {e}"),
                },
            }
        })
        .collect()
}

/// `text` up to the end of its last tool call: what the model said before waiting for results
/// (anything after it was written without the results and is dropped).
pub fn through_last_call(text: &str) -> &str {
    match CALL.find_iter(text).last() {
        Some(m) => &text[..m.end()],
        None => text,
    }
}

#[derive(Serialize)]
struct Rendered<'a> {
    name: &'a str,
    body: String,
}

/// The message that carries results back to the model.
pub fn render_results(outcomes: &[ToolOutcome]) -> String {
    let results: Vec<Rendered> = outcomes
        .iter()
        .map(|o| Rendered {
            name: &o.name,
            body: o.to_model_text(),
        })
        .collect();
    TEMPLATES
        .get_template("results")
        .and_then(|t| t.render(minijinja::context! { results => results }))
        .expect("the results template renders")
}

/// The request for a final JSON answer after the tool turns (text protocol with a schema).
pub fn final_answer() -> String {
    TEMPLATES
        .get_template("final_answer")
        .and_then(|t| t.render(minijinja::context! {}))
        .expect("the final-answer template renders")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_calls_and_reports_malformed_ones() {
        let text = "Let me compute.\n<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}</tool_call>\n\
                    <tool_call>{oops}</tool_call> trailing guess";
        let calls = parse_calls(text);
        assert_eq!(calls.len(), 2);
        match &calls[0] {
            ParsedCall::Call(c) => {
                assert_eq!(c.name, "calculator");
                assert_eq!(
                    serde_json::from_str::<Value>(&c.arguments).unwrap(),
                    json!({"expression": "2+2"})
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&calls[1], ParsedCall::Malformed { error, .. } if error.starts_with("not JSON"))
        );
        assert!(through_last_call(text).ends_with("</tool_call>"));
        assert!(parse_calls("no calls").is_empty());
    }

    #[test]
    fn renders_instructions_and_results() {
        let spec = ToolSpec {
            name: "calculator".into(),
            description: "math".into(),
            parameters: json!({"type": "object"}),
        };
        let text = instructions(&[spec]);
        assert!(
            text.contains("- calculator: math") && text.contains("{\"type\":\"object\"}"),
            "{text}"
        );
        let o = ToolOutcome {
            name: "calculator".into(),
            arguments: "{}".into(),
            ok: true,
            output: json!({"result": "4"}),
            error: None,
            elapsed_ms: 0,
        };
        assert_eq!(
            render_results(&[o]),
            "<tool_result name=\"calculator\">{\"result\":\"4\"}</tool_result>\n"
        );
    }
}
