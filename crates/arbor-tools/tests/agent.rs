//! The judge's tool loop against the mock server, in both transports.
use std::sync::Arc;
use std::time::Duration;

use arbor_core::Message;
use arbor_serve::mock::{MockConfig, MockServer};
use arbor_llm::{LanguageModel, LlmRequest};
use arbor_openai::{Endpoint, EndpointConfig, OpenAiClient};
use arbor_tools::agent::{run_with_tools, ToolMode};
use arbor_tools::builtin::pure_tools;

async fn model() -> (MockServer, Arc<dyn LanguageModel>) {
    let server = MockServer::start(MockConfig::default(), 0).await.unwrap();
    let cfg = EndpointConfig::new(server.base_url().parse().unwrap(), "mock");
    let ep = Arc::new(Endpoint::new(&cfg));
    (
        server,
        Arc::new(OpenAiClient::with_endpoint(cfg, ep).unwrap()),
    )
}

#[tokio::test]
async fn native_tool_calls_run_and_feed_back() {
    let (server, m) = model().await;
    let tools = pure_tools(Duration::from_secs(5));
    let req = LlmRequest::chat("mock", vec![Message::user(
        "Check this.\nCALL calculator {\"expression\": \"12 * 7 + 1\"}\nCALL calculator {\"expression\": \"1/0\"}",
    )]);
    let run = run_with_tools(&m, &req, &tools, ToolMode::Native, 4)
        .await
        .unwrap();
    assert_eq!(run.calls.len(), 2);
    assert_eq!(run.calls[0].output["result"], "85");
    assert!(
        !run.calls[1].ok
            && run.calls[1]
                .error
                .as_deref()
                .unwrap()
                .contains("division by zero")
    );
    // user, assistant(tool_calls), tool, tool, assistant(final)
    assert_eq!(run.messages.len(), 5);
    assert_eq!(run.messages[2].tool_call_id.as_deref(), Some("call_0"));
    assert_eq!(run.messages[2].content, "{\"result\":\"85\"}");
    assert!(!run.text.is_empty() && !run.exhausted);
    assert_eq!(server.stats().requests, 2);
}

#[tokio::test]
async fn text_protocol_calls_run_and_feed_back() {
    let (server, m) = model().await;
    let tools = pure_tools(Duration::from_secs(5));
    let req = LlmRequest::chat("mock", vec![Message::user(
        "SAY I will check.\n<tool_call>{\"name\": \"verify_answer\", \"arguments\": {\"response\": \"The answer is 1,200.\", \"reference\": \"1200\"}}</tool_call>\n<tool_call>{broken</tool_call>",
    )]);
    let run = run_with_tools(&m, &req, &tools, ToolMode::Text, 4)
        .await
        .unwrap();
    assert_eq!(run.calls.len(), 2);
    assert_eq!(run.calls[0].output["correct"], true);
    assert!(run.calls[1]
        .error
        .as_deref()
        .unwrap()
        .starts_with("malformed tool call"));
    assert_eq!(run.messages[0].role, arbor_core::Role::System);
    assert!(run.messages[0].content.contains("- verify_answer:"));
    let results = &run.messages[3].content;
    assert!(
        results.starts_with("<tool_result name=\"verify_answer\">"),
        "{results}"
    );
    assert_eq!(server.stats().requests, 2);
    assert!(!run.exhausted);
}

#[tokio::test]
async fn the_round_budget_bounds_the_loop() {
    let (server, m) = model().await;
    let tools = pure_tools(Duration::from_secs(5));
    // One round allowed, and the model spends it asking for a tool: the loop stops there.
    let req = LlmRequest::chat(
        "mock",
        vec![Message::user("CALL calculator {\"expression\": \"1+1\"}")],
    );
    let run = run_with_tools(&m, &req, &tools, ToolMode::Native, 1)
        .await
        .unwrap();
    assert!(run.exhausted);
    assert_eq!(run.calls.len(), 1);
    assert_eq!(server.stats().requests, 1);
}

/// Text protocol with a schema: the tool rounds go out unconstrained (else the model could never
/// write `<tool_call>`), and an answer that misses the schema gets one constrained call for the
/// final answer; an answer that follows it gets none. Catches: the schema sent with the tool
/// rounds (the mock would answer JSON at round 2: two requests, not three), the final call
/// skipped (free text returned), or made when the answer was already valid.
#[tokio::test]
async fn text_protocol_with_a_schema_constrains_only_the_final_answer() {
    let schema = serde_json::json!({"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]});
    let (server, m) = model().await;
    let tools = pure_tools(Duration::from_secs(5));
    let mut req = LlmRequest::chat("mock", vec![Message::user(
        "SAY Checking.\n<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3\"}}</tool_call>",
    )]);
    req.params.json_schema = Some(schema.clone());
    let run = run_with_tools(&m, &req, &tools, ToolMode::Text, 4).await.unwrap();
    assert_eq!(run.calls.len(), 1);
    assert_eq!(server.stats().requests, 3, "tool round, free answer, constrained answer");
    let v: serde_json::Value = serde_json::from_str(&run.text).unwrap();
    assert!(v["score"].is_i64(), "{}", run.text);
    let asked = &run.messages[run.messages.len() - 2];
    assert!(asked.content.contains("final answer"), "{}", asked.content);

    let (server, m) = model().await;
    let mut req = LlmRequest::chat("mock", vec![Message::user("SAY {\"score\": 4}")]);
    req.params.json_schema = Some(schema);
    let run = run_with_tools(&m, &req, &tools, ToolMode::Text, 4).await.unwrap();
    assert_eq!((run.text.as_str(), server.stats().requests), ("{\"score\": 4}", 1));
}
