use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One task: the prompt a policy sees, the reference answer when there is one, and whatever
/// else the environment needs to replay it, flattened into the same JSON object. This is also
/// `arbor synth`'s input row: `{"id", "prompt", "reference"?, …metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// The environment that made it (`math`, `household`, `code`).
    pub env: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub metadata: Map<String, Value>,
}

impl Task {
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}

/// Tasks from a JSONL or Parquet file (`arbor env sample` writes them); a bad row is an error
/// naming its file and line.
pub fn read_tasks(path: &std::path::Path) -> Result<Vec<Task>, crate::EnvError> {
    let bad = |line: usize, msg: String| crate::EnvError::BadFile {
        path: path.display().to_string(),
        line,
        msg,
    };
    let rows = arbor_core::table::read_rows(path).map_err(|e| crate::EnvError::Io(e.to_string()))?;
    rows.into_iter()
        .map(|row| {
            let v = row.value.map_err(|e| bad(row.line, e))?;
            serde_json::from_value(v).map_err(|e| bad(row.line, e.to_string()))
        })
        .collect()
}
