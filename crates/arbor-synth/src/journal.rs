//! The durable journal: one line per finished item, appended and fsynced before the item counts
//! as done. `--resume` skips the items it lists; a line torn by a kill is cut off and its item
//! runs again (its model calls come back from the response cache).
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::prompts::PromptPair;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At least one pair passed the reward gate (or the gate is off).
    Accepted,
    /// Every round's pairs were rejected by the gate (or not separated by the judge).
    GatedOut,
    /// Failed: bad input, or model calls / answers that kept failing.
    Dead,
    /// Not played: its prompt repeats an earlier item's (`dedup`).
    Duplicate,
}

/// How one item ended, with everything the output files need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub index: usize,
    pub id: String,
    pub status: Status,
    pub rounds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Input line of a malformed row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Rows of pairs.jsonl and provenance.jsonl.
    #[serde(default)]
    pub rows: Vec<Value>,
    #[serde(default)]
    pub provenance: Vec<Value>,
    /// The prompt pairs that earned the accepted pairs (the prompt pool's input).
    #[serde(default)]
    pub wins: Vec<PromptPair>,
    /// Judge scores of the last round's candidates and reward scores of its pairs.
    #[serde(default)]
    pub judge_scores: Vec<f64>,
    #[serde(default)]
    pub reward_scores: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rankings_agree: Option<bool>,
    /// The item itself, for dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl ItemRecord {
    /// A record with its identity, status and rounds; the caller fills in what it knows.
    pub fn new(index: usize, id: String, status: Status, rounds: u32) -> Self {
        Self {
            index,
            id,
            status,
            rounds,
            cause: None,
            line: None,
            rows: Vec::new(),
            provenance: Vec::new(),
            wins: Vec::new(),
            judge_scores: Vec::new(),
            reward_scores: Vec::new(),
            rankings_agree: None,
            input: None,
        }
    }

    /// A dead letter: the item could not be played (bad input, failing calls or answers).
    pub fn dead(index: usize, id: String, rounds: u32, cause: String) -> Self {
        Self {
            cause: Some(cause),
            ..Self::new(index, id, Status::Dead, rounds)
        }
    }
}

pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens `path`; with `resume`, returns the records already there (a torn last line is cut
    /// off), otherwise starts it empty.
    pub fn open(path: &Path, resume: bool) -> std::io::Result<(Journal, Vec<ItemRecord>)> {
        if !resume {
            let file = File::create(path)?;
            return Ok((Journal { file }, Vec::new()));
        }
        let mut records = Vec::new();
        let mut good_len = 0u64;
        if path.exists() {
            let mut r = BufReader::new(File::open(path)?);
            let mut line = String::new();
            loop {
                line.clear();
                let n = r.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<ItemRecord>(&line) {
                    Ok(rec) => records.push(rec),
                    Err(_) => break,
                }
                good_len += n as u64;
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        file.set_len(good_len)?;
        file.seek(SeekFrom::End(0))?;
        Ok((Journal { file }, records))
    }

    /// Appends records and syncs them to disk.
    pub fn append(&mut self, records: &[ItemRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        if arbor_core::crash::due("journal") {
            self.file.write_all(&buf[..buf.len() / 2])?;
            self.file.sync_data()?;
            arbor_core::crash::now("a journal append");
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> ItemRecord {
        ItemRecord {
            index: i,
            id: format!("i{i}"),
            status: Status::Accepted,
            rounds: 1,
            cause: None,
            line: None,
            rows: vec![],
            provenance: vec![],
            wins: vec![],
            judge_scores: vec![],
            reward_scores: vec![],
            rankings_agree: None,
            input: None,
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let (mut j, old) = Journal::open(&p, false).unwrap();
        assert!(old.is_empty());
        j.append(&[rec(0), rec(1)]).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"index\":2,\"id\":\"i2\",\"sta").unwrap();
        drop(f);
        let (mut j, old) = Journal::open(&p, true).unwrap();
        assert_eq!(old, vec![rec(0), rec(1)]);
        j.append(&[rec(2)]).unwrap();
        let (_, all) = Journal::open(&p, true).unwrap();
        assert_eq!(all, vec![rec(0), rec(1), rec(2)]);
    }
}
