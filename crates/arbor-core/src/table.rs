//! Row tables on disk: JSONL (one JSON object a line) and Parquet, chosen by file extension.
//!
//! Every dataset arbor writes (pairs, tree exports) is a list of JSON objects; Parquet files are
//! written from the same rows with a schema inferred over all of them, so nested message lists
//! become Arrow lists of structs that HF `datasets` and pandas read as they are.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// The two table formats, told apart by extension (`.parquet` or anything else as JSONL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Jsonl,
    Parquet,
}

impl TableFormat {
    pub fn of(path: &Path) -> TableFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("parquet") => TableFormat::Parquet,
            _ => TableFormat::Jsonl,
        }
    }
}

/// One input row, or why its line could not be read. Lines are 1-based.
#[derive(Debug)]
pub struct Row {
    pub line: usize,
    pub value: Result<Value, String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, message: impl ToString) -> TableError {
    TableError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Writes rows to `path` in the format its extension names.
pub fn write_rows(path: &Path, rows: &[Value]) -> Result<(), TableError> {
    match TableFormat::of(path) {
        TableFormat::Jsonl => write_jsonl(path, rows),
        TableFormat::Parquet => write_parquet(path, rows),
    }
}

pub fn write_jsonl(path: &Path, rows: &[Value]) -> Result<(), TableError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut out = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|e| format_err(path, e))?;
        out.write_all(b"\n").map_err(io_err(path))?;
    }
    out.flush().map_err(io_err(path))
}

/// Writes rows as one Parquet file (snappy), the schema inferred over every row so a field
/// absent from some rows becomes nullable rather than an error.
pub fn write_parquet(path: &Path, rows: &[Value]) -> Result<(), TableError> {
    let objects: Vec<&Value> = rows.iter().collect();
    let schema = arrow_json::reader::infer_json_schema_from_iterator(
        objects
            .iter()
            .map(|v| Ok::<_, arrow_schema::ArrowError>((*v).clone())),
    )
    .map_err(|e| format_err(path, format!("cannot infer a Parquet schema: {e}")))?;
    let schema = Arc::new(schema);
    let batch = rows_to_batch(path, schema.clone(), rows)?;
    let file = File::create(path).map_err(io_err(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| format_err(path, e))?;
    if batch.num_rows() > 0 {
        writer.write(&batch).map_err(|e| format_err(path, e))?;
    }
    writer.close().map_err(|e| format_err(path, e))?;
    Ok(())
}

fn rows_to_batch(
    path: &Path,
    schema: Arc<Schema>,
    rows: &[Value],
) -> Result<RecordBatch, TableError> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(|e| format_err(path, e))?;
    decoder.serialize(rows).map_err(|e| format_err(path, e))?;
    let batch = decoder.flush().map_err(|e| format_err(path, e))?;
    Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// Reads every row of a JSONL or Parquet file. A JSONL line that is not a JSON object comes
/// back as an error row with its line number; the other lines still load. Blank lines are
/// skipped. A Parquet row's "line" is its 1-based row number.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, TableError> {
    match TableFormat::of(path) {
        TableFormat::Jsonl => read_jsonl(path),
        TableFormat::Parquet => read_parquet(path),
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Row>, TableError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                rows.push(Row {
                    line: line_no,
                    value: Err(format!("unreadable line: {e}")),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("expected a JSON object".to_string()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        rows.push(Row {
            line: line_no,
            value,
        });
    }
    Ok(rows)
}

fn read_parquet(path: &Path) -> Result<Vec<Row>, TableError> {
    let file = File::open(path).map_err(io_err(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format_err(path, e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format_err(path, e))?;
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        writer.write(&batch).map_err(|e| format_err(path, e))?;
        writer.finish().map_err(|e| format_err(path, e))?;
        let bytes = writer.into_inner();
        let values: Vec<Value> = if bytes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| format_err(path, e))?
        };
        for value in values {
            rows.push(Row {
                line: rows.len() + 1,
                value: Ok(value),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parquet_round_trips_nested_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let rows = vec![
            json!({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}], "score": 1.5}),
            json!({"prompt": [{"role": "user", "content": "3+3?"}], "chosen": [], "score": 2.0, "extra": "x"}),
        ];
        write_rows(&path, &rows).unwrap();
        let back: Vec<Value> = read_rows(&path)
            .unwrap()
            .into_iter()
            .map(|r| r.value.unwrap())
            .collect();
        assert_eq!(back[0]["prompt"][0]["content"], "2+2?");
        assert_eq!(back[0]["score"], 1.5);
        assert_eq!(back[1]["extra"], "x");
        assert!(back[0].get("extra").is_none_or(|v| v.is_null()));
    }

    #[test]
    fn jsonl_reports_bad_lines_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{broken\n\n[1,2]\n{\"a\":2}\n").unwrap();
        let rows = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].value.is_ok());
        assert_eq!(rows[1].line, 2);
        assert!(rows[1].value.as_ref().unwrap_err().contains("invalid JSON"));
        assert_eq!(rows[2].line, 4);
        assert!(rows[2].value.as_ref().unwrap_err().contains("object"));
        assert_eq!(rows[3].value.as_ref().unwrap()["a"], 2);
    }

    #[test]
    fn empty_tables_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["e.jsonl", "e.parquet"] {
            let path = dir.path().join(name);
            write_rows(&path, &[]).unwrap();
            assert!(read_rows(&path).unwrap().is_empty());
        }
    }
}
