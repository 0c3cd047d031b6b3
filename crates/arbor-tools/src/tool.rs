//! The tool interface: a name, JSON-Schema arguments, an async run under a timeout, a
//! structured result; and the registry a judge calls tools through.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_core::ToolSpec;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool a model may call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and the JSON Schema of the arguments.
    fn spec(&self) -> ToolSpec;
    /// Runs with arguments already validated against the schema. An `Err` is the tool's
    /// failure message, shown to the model as the result.
    async fn run(&self, args: Value) -> Result<Value, String>;
}

/// What one call did: kept in provenance and shown to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutcome {
    pub name: String,
    /// The arguments as the model wrote them.
    pub arguments: String,
    pub ok: bool,
    /// The result when `ok`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Why it failed when not `ok`: unknown tool, bad arguments, timeout, the tool's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl ToolOutcome {
    /// The text the model sees.
    pub fn to_model_text(&self) -> String {
        if self.ok {
            match &self.output {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            }
        } else {
            format!("error: {}", self.error.as_deref().unwrap_or("unknown"))
        }
    }
}

/// The tools a judge may use, each call bounded by a timeout.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, (Arc<dyn Tool>, Arc<jsonschema::Validator>)>,
    timeout: Duration,
}

impl ToolRegistry {
    pub fn new(timeout: Duration) -> Self {
        Self {
            tools: BTreeMap::new(),
            timeout,
        }
    }

    /// Adds a tool; its argument schema must itself be valid.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let spec = tool.spec();
        let v = jsonschema::validator_for(&spec.parameters)
            .map_err(|e| format!("tool `{}`: invalid schema: {e}", spec.name))?;
        self.tools.insert(spec.name, (tool, Arc::new(v)));
        Ok(())
    }

    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.register(tool)
            .expect("built-in tool schemas are valid");
        self
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|(t, _)| t.spec()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }

    /// Calls `name` with the model's raw argument text. Never fails: every problem becomes an
    /// outcome the model can read and react to.
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        let start = Instant::now();
        let done = |r: Result<Value, String>| ToolOutcome {
            name: name.to_string(),
            arguments: arguments.to_string(),
            ok: r.is_ok(),
            error: r.as_ref().err().cloned(),
            output: r.unwrap_or(Value::Null),
            elapsed_ms: start.elapsed().as_millis() as u64,
        };
        let Some((tool, schema)) = self.tools.get(name) else {
            return done(Err(format!(
                "unknown tool `{name}`; available: {}",
                self.names().join(", ")
            )));
        };
        let args: Value = match serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        }) {
            Ok(v) => v,
            Err(e) => return done(Err(format!("arguments are not valid JSON: {e}"))),
        };
        let problems: Vec<String> = schema
            .iter_errors(&args)
            .map(|e| {
                let at = e.instance_path.to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return done(Err(format!("invalid arguments: {}", problems.join("; "))));
        }
        match tokio::time::timeout(self.timeout, tool.run(args)).await {
            Ok(r) => done(r),
            Err(_) => done(Err(format!(
                "timed out after {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}
