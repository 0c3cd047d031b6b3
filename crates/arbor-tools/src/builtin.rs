//! The built-in tools as [`Tool`]s: thin adapters from JSON arguments to the modules that do
//! the work.
use std::sync::Arc;

use arbor_core::ToolSpec;
use async_trait::async_trait;
use serde_json::{json, Value};

use arbor_checks::retrieval::Bm25Index;
use arbor_checks::sandbox::PythonRunner;
use crate::tool::{Tool, ToolRegistry};
use arbor_checks::{arithmetic, calculator, format, unit_tests, verifier};

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    }
}

fn str_arg<'a>(args: &'a Value, key: &str) -> &'a str {
    // The registry validated the arguments against the schema, which requires these strings.
    args.get(key).and_then(Value::as_str).unwrap_or("")
}

pub struct Calculator;

#[async_trait]
impl Tool for Calculator {
    fn spec(&self) -> ToolSpec {
        spec(
            "calculator",
            "Exact arithmetic: + - * / ^ %, parentheses, decimals, percentages (e.g. \"15% * 80\").",
            json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let v = calculator::evaluate(str_arg(&args, "expression")).map_err(|e| e.to_string())?;
        Ok(json!({"result": calculator::render(&v)}))
    }
}

pub struct ArithmeticCheck;

#[async_trait]
impl Tool for ArithmeticCheck {
    fn spec(&self) -> ToolSpec {
        spec(
            "check_arithmetic",
            "Recompute every worked step (\"expression = number\") of a text exactly; reports each step and whether it holds.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let eqs = arithmetic::equations(str_arg(&args, "text"));
        let wrong = eqs.iter().filter(|e| !e.holds).count();
        Ok(json!({"steps": eqs, "wrong": wrong}))
    }
}

pub struct AnswerVerifier;

#[async_trait]
impl Tool for AnswerVerifier {
    fn spec(&self) -> ToolSpec {
        spec(
            "verify_answer",
            "Extract the final answer from a response and compare it with a reference answer.",
            json!({"type": "object", "properties": {"response": {"type": "string"}, "reference": {"type": "string"}},
                   "required": ["response", "reference"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let v = verifier::verify(str_arg(&args, "response"), str_arg(&args, "reference"));
        serde_json::to_value(v).map_err(|e| e.to_string())
    }
}

pub struct Python(pub PythonRunner);

#[async_trait]
impl Tool for Python {
    fn spec(&self) -> ToolSpec {
        spec(
            "python",
            "Run a Python 3 snippet in a sandbox (no network, time and memory limits); returns stdout, stderr and exit code.",
            json!({"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let out = self
            .0
            .run(str_arg(&args, "code"), &[], "")
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_value(out).map_err(|e| e.to_string())
    }
}

pub struct UnitTests(pub PythonRunner);

#[async_trait]
impl Tool for UnitTests {
    fn spec(&self) -> ToolSpec {
        spec(
            "run_unit_tests",
            "Run Python code (or the first fenced block of a text), then each test statement (e.g. \"assert f(2) == 4\"); reports which pass.",
            json!({"type": "object", "properties": {"code": {"type": "string"}, "tests": {"type": "array", "items": {"type": "string"}}},
                   "required": ["code", "tests"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let tests: Vec<String> =
            serde_json::from_value(args["tests"].clone()).map_err(|e| e.to_string())?;
        let code = unit_tests::extract_code(str_arg(&args, "code"));
        let rep = unit_tests::run_unit_tests(&self.0, &code, &tests)
            .await
            .map_err(|e| e.to_string())?;
        Ok(
            json!({"passed": rep.passed, "total": rep.total, "load_error": rep.load_error, "results": rep.results}),
        )
    }
}

pub struct Retrieval(pub Arc<Bm25Index>);

#[async_trait]
impl Tool for Retrieval {
    fn spec(&self) -> ToolSpec {
        spec(
            "retrieve",
            "Search the local corpus (BM25); returns the top passages with their ids.",
            json!({"type": "object", "properties": {"query": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "maximum": 20}},
                   "required": ["query"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let k = args.get("k").and_then(Value::as_u64).unwrap_or(3) as usize;
        Ok(json!({"hits": self.0.search(str_arg(&args, "query"), k)}))
    }
}

pub struct RegexCheck;

#[async_trait]
impl Tool for RegexCheck {
    fn spec(&self) -> ToolSpec {
        spec(
            "regex_check",
            "Check whether text matches a regular expression (full = whole text); returns the captures.",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "pattern": {"type": "string"}, "full": {"type": "boolean"}},
                   "required": ["text", "pattern"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let full = args.get("full").and_then(Value::as_bool).unwrap_or(false);
        let r = format::check_regex(str_arg(&args, "text"), str_arg(&args, "pattern"), full)?;
        serde_json::to_value(r).map_err(|e| e.to_string())
    }
}

pub struct JsonSchemaCheck;

#[async_trait]
impl Tool for JsonSchemaCheck {
    fn spec(&self) -> ToolSpec {
        spec(
            "json_schema_check",
            "Check whether text is JSON valid under a JSON Schema; lists every violation.",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "schema": {"type": "object"}},
                   "required": ["text", "schema"], "additionalProperties": false}),
        )
    }
    async fn run(&self, args: Value) -> Result<Value, String> {
        let r = format::check_json_schema(str_arg(&args, "text"), &args["schema"])?;
        serde_json::to_value(r).map_err(|e| e.to_string())
    }
}

/// The registry of tools needing nothing from the host: calculator, arithmetic check, verifier,
/// format checks.
pub fn pure_tools(timeout: std::time::Duration) -> ToolRegistry {
    ToolRegistry::new(timeout)
        .with(Arc::new(Calculator))
        .with(Arc::new(ArithmeticCheck))
        .with(Arc::new(AnswerVerifier))
        .with(Arc::new(RegexCheck))
        .with(Arc::new(JsonSchemaCheck))
}

/// The pure tools plus the sandboxed ones (`python`, `run_unit_tests`), which need bubblewrap.
pub fn sandboxed_tools(timeout: std::time::Duration) -> Result<ToolRegistry, arbor_checks::sandbox::SandboxError> {
    let runner = PythonRunner::new(arbor_checks::sandbox::Limits::default())?;
    Ok(pure_tools(timeout)
        .with(Arc::new(Python(runner.clone())))
        .with(Arc::new(UnitTests(runner))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn registry_validates_and_reports() {
        let reg = pure_tools(Duration::from_secs(5));
        let ok = reg
            .call("calculator", r#"{"expression": "15% * 80"}"#)
            .await;
        assert!(ok.ok && ok.output["result"] == "12", "{ok:?}");
        let div0 = reg.call("calculator", r#"{"expression": "1/0"}"#).await;
        assert_eq!(
            div0.error.as_deref(),
            Some("division by zero at position 1")
        );
        let bad_json = reg.call("calculator", "{expression").await;
        assert!(bad_json
            .error
            .unwrap()
            .starts_with("arguments are not valid JSON"));
        let missing = reg.call("calculator", r#"{"expr": "1"}"#).await;
        assert!(missing.error.unwrap().starts_with("invalid arguments"),);
        let unknown = reg.call("nope", "{}").await;
        assert!(unknown.error.unwrap().contains("available: calculator, check_arithmetic"));
        let steps = reg.call("check_arithmetic", r#"{"text": "3 * 4 = 12 and 9 * 2 = 21"}"#).await;
        assert!(steps.ok && steps.output["wrong"] == 1, "{steps:?}");
        assert_eq!(steps.output["steps"][1]["value"], "18");
        let v = reg
            .call(
                "verify_answer",
                r#"{"response": "The answer is 1,000.", "reference": "1000"}"#,
            )
            .await;
        assert_eq!(v.output["correct"], true);
    }

    struct Slow;
    #[async_trait]
    impl Tool for Slow {
        fn spec(&self) -> ToolSpec {
            spec("slow", "sleeps", json!({"type": "object"}))
        }
        async fn run(&self, _: Value) -> Result<Value, String> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Value::Null)
        }
    }

    #[tokio::test]
    async fn calls_time_out() {
        let reg = ToolRegistry::new(Duration::from_millis(50)).with(Arc::new(Slow));
        let o = reg.call("slow", "").await;
        assert_eq!(o.error.as_deref(), Some("timed out after 50 ms"));
    }
}
