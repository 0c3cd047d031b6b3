//! The tool loop a judge runs: ask the model, run the tools it calls, give it the results,
//! until it answers without calls or the round budget is spent.
use std::sync::Arc;

use arbor_core::Message;
use arbor_llm::{FinishReason, LanguageModel, LlmError, LlmRequest, Prompt, Usage};
use serde::{Deserialize, Serialize};

use crate::protocol::{self, ParsedCall};
use crate::tool::{ToolOutcome, ToolRegistry};

/// How tool calls travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolMode {
    /// OpenAI `tools` / `tool_calls`.
    Native,
    /// `<tool_call>` blocks in the text (for models without tool-call support).
    Text,
}

/// A finished tool loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRun {
    /// The model's final answer (its last message).
    pub text: String,
    /// Every tool call, in order, with its result.
    pub calls: Vec<ToolOutcome>,
    /// The whole conversation, tool turns included.
    pub messages: Vec<Message>,
    pub usage: Usage,
    /// The round budget ran out while the model still asked for tools.
    pub exhausted: bool,
    /// The final answer stopped at `max_tokens` (`finish_reason: "length"`).
    #[serde(default)]
    pub cut: bool,
}

/// Runs `request` (a chat request) with `tools` available for up to `max_rounds` model calls.
///
/// With the text protocol and a `json_schema`, the tool rounds go out unconstrained (a
/// constrained sampler could not write `<tool_call>`); an answer that then does not follow the
/// schema gets one more, constrained, call for the final answer.
pub async fn run_with_tools(
    model: &Arc<dyn LanguageModel>,
    request: &LlmRequest,
    tools: &ToolRegistry,
    mode: ToolMode,
    max_rounds: usize,
) -> Result<AgentRun, LlmError> {
    let Prompt::Chat(start) = &request.prompt else {
        return Err(LlmError::Invalid("tool use needs a chat request".into()));
    };
    let mut messages = start.clone();
    let mut req = request.clone();
    req.params.n = 1;
    let schema = match mode {
        ToolMode::Text => req.params.json_schema.take(),
        ToolMode::Native => None,
    };
    match mode {
        ToolMode::Native => req.tools = tools.specs(),
        ToolMode::Text => {
            let doc = protocol::instructions(&tools.specs());
            match messages.first_mut() {
                Some(m) if m.role == arbor_core::Role::System => {
                    m.content = format!("{}\n\n{doc}", m.content)
                }
                _ => messages.insert(0, Message::system(doc)),
            }
        }
    }
    let mut run = AgentRun {
        text: String::new(),
        calls: Vec::new(),
        messages: Vec::new(),
        usage: Usage::default(),
        exhausted: false,
        cut: false,
    };
    for round in 0..max_rounds.max(1) {
        req.prompt = Prompt::Chat(messages.clone());
        let c = model.generate(&req).await?;
        run.usage += c.usage;
        let choice = c
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Invalid("model returned no choice".into()))?;
        let last_round = round + 1 == max_rounds.max(1);
        run.cut = choice.finish_reason == FinishReason::Length;
        match mode {
            ToolMode::Native => {
                if choice.tool_calls.is_empty() {
                    messages.push(Message::assistant(&choice.text));
                    run.text = choice.text;
                    break;
                }
                let mut asked = Message::assistant(&choice.text);
                asked.tool_calls = choice.tool_calls.clone();
                messages.push(asked);
                for call in &choice.tool_calls {
                    let o = tools.call(&call.name, &call.arguments).await;
                    messages.push(Message::tool(&call.id, o.to_model_text()));
                    run.calls.push(o);
                }
            }
            ToolMode::Text => {
                let parsed = protocol::parse_calls(&choice.text);
                if parsed.is_empty() {
                    messages.push(Message::assistant(&choice.text));
                    run.text = choice.text;
                    break;
                }
                messages.push(Message::assistant(protocol::through_last_call(
                    &choice.text,
                )));
                let mut outcomes = Vec::new();
                for p in parsed {
                    outcomes.push(match p {
                        ParsedCall::Call(call) => tools.call(&call.name, &call.arguments).await,
                        ParsedCall::Malformed { text, error } => ToolOutcome {
                            name: "?".into(),
                            arguments: text,
                            ok: false,
                            output: serde_json::Value::Null,
                            error: Some(format!("malformed tool call: {error}")),
                            elapsed_ms: 0,
                        },
                    });
                }
                messages.push(Message::user(protocol::render_results(&outcomes)));
                run.calls.extend(outcomes);
            }
        }
        if last_round {
            run.exhausted = true;
            run.text = choice.text;
        }
    }
    if let Some(schema) = schema.filter(|s| !follows(&run.text, s)) {
        // After the answer, or after the last tool results when the rounds ran out.
        messages.push(Message::user(protocol::final_answer()));
        req.prompt = Prompt::Chat(messages.clone());
        req.params.json_schema = Some(schema);
        let c = model.generate(&req).await?;
        run.usage += c.usage;
        let choice = c
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Invalid("model returned no choice".into()))?;
        run.cut = choice.finish_reason == FinishReason::Length;
        messages.push(Message::assistant(&choice.text));
        run.text = choice.text;
    }
    run.messages = messages;
    Ok(run)
}

/// `text` is one JSON value that follows `schema`.
fn follows(text: &str, schema: &serde_json::Value) -> bool {
    arbor_checks::format::check_json_schema(text, schema).is_ok_and(|c| c.valid)
}
