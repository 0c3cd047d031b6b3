//! The on-disk response cache: rerunning a job asks the model nothing it has already answered.
//!
//! Two stores. A directory (`open`), shared between runs and tools: one file per entry, `DIR/ab/abcd….json`, keyed by [`LlmRequest::key`]. An entry is written to a
//! temporary file, then renamed into place, so readers see a whole entry or none; its
//! header carries the key and the sha256 of the body, so anything else (a torn copy from another
//! tool, a disk error) is detected, ignored and removed rather than read as valid. Concurrent
//! writers of one key race harmlessly: both write the same answer and the last rename wins.
//!
//! A log (`open_log`), for one job's calls (`arbor synth`): one line per entry appended to a
//! single file and held in memory, far cheaper per call than a file per entry. Each line carries
//! the key and the sha256 of its body; a line torn by a kill fails the check and is skipped, so
//! that call is simply made again.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{CallMeta, Completion, LanguageModel, LlmError, LlmRequest, StatsSnapshot};

const MAGIC: &str = "arbor.cache/1";

#[derive(Debug)]
pub struct ResponseCache {
    dir: PathBuf,
    log: Option<Log>,
}

#[derive(Debug)]
struct Log {
    file: parking_lot::Mutex<std::fs::File>,
    entries: parking_lot::RwLock<std::collections::HashMap<String, Completion>>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ResponseCache {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LlmError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LlmError::Cache(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self { dir, log: None })
    }

    /// A log-file store at `path` (created if missing); its valid entries are loaded.
    pub fn open_log(path: impl Into<PathBuf>) -> Result<Self, LlmError> {
        let path = path.into();
        let err = |e: std::io::Error| LlmError::Cache(format!("{}: {e}", path.display()));
        let mut entries = std::collections::HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            for line in bytes.split(|&b| b == b'\n') {
                // `MAGIC KEY SHA BODY` on one line (the JSON body has no raw newlines).
                let mut it = line.splitn(4, |&b| b == b' ');
                let (Some(m), Some(k), Some(sha), Some(body)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    continue;
                };
                if m != MAGIC.as_bytes() || hex::encode(Sha256::digest(body)).as_bytes() != sha {
                    continue;
                }
                if let (Ok(k), Ok(c)) = (
                    std::str::from_utf8(k),
                    serde_json::from_slice::<Completion>(body),
                ) {
                    entries.insert(k.to_string(), c);
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        // A torn tail gets its own line ending so the next entry starts clean.
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 0
            && !std::fs::read(&path).map_err(err)?.ends_with(b"\n")
        {
            file.write_all(b"\n").map_err(err)?;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            dir,
            log: Some(Log {
                file: parking_lot::Mutex::new(file),
                entries: parking_lot::RwLock::new(entries),
            }),
        })
    }

    /// Whether lookups and stores are in memory (cheap enough to run on the async workers).
    pub fn is_log(&self) -> bool {
        self.log.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.json"))
    }

    /// The cached answer for `key`, if a valid entry exists.
    pub fn get(&self, key: &str) -> Option<Completion> {
        if let Some(log) = &self.log {
            return log.entries.read().get(key).cloned();
        }
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match decode(&bytes, key) {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "ignoring invalid cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn put(&self, key: &str, value: &Completion) -> Result<(), LlmError> {
        if let Some(log) = &self.log {
            let mut stored = value.clone();
            stored.meta = CallMeta::default();
            let body = serde_json::to_vec(&stored).expect("completions serialize");
            let mut line =
                format!("{MAGIC} {key} {} ", hex::encode(Sha256::digest(&body))).into_bytes();
            line.extend_from_slice(&body);
            line.push(b'\n');
            // One write per entry: whole lines survive a kill (no fsync, see the module doc).
            log.file
                .lock()
                .write_all(&line)
                .map_err(|e| LlmError::Cache(format!("{}: {e}", self.dir.display())))?;
            log.entries.write().insert(key.to_string(), stored);
            return Ok(());
        }
        let path = self.path(key);
        let dir = path.parent().expect("entry paths have a parent");
        let io = |what: &str, e: std::io::Error| {
            LlmError::Cache(format!("{what} {}: {e}", path.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create directory for", e))?;
        let mut stored = value.clone();
        stored.meta = CallMeta::default();
        let body = serde_json::to_vec(&stored).expect("completions serialize");
        let header = format!("{MAGIC} {key} {}\n", hex::encode(Sha256::digest(&body)));
        let tmp = dir.join(format!(
            ".tmp-{}-{}-{key}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(header.as_bytes())?;
            f.write_all(&body)?;
            // No fsync: the rename makes the entry appear whole to other processes and after a
            // kill; after a machine crash a torn entry fails its checksum and is refetched.
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("cannot write", e)
        })
    }
}

fn decode(bytes: &[u8], key: &str) -> Result<Completion, &'static str> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or("no header")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header not UTF-8")?;
    let body = &bytes[nl + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err("unknown format");
    }
    if parts.next() != Some(key) {
        return Err("key mismatch");
    }
    if parts.next() != Some(hex::encode(Sha256::digest(body)).as_str()) {
        return Err("checksum mismatch (torn or corrupt entry)");
    }
    serde_json::from_slice(body).map_err(|_| "body does not parse")
}

/// A model whose successful answers are cached on disk.
pub struct CachedModel {
    inner: Arc<dyn LanguageModel>,
    cache: Arc<ResponseCache>,
    hits: AtomicU64,
}

impl CachedModel {
    pub fn new(inner: Arc<dyn LanguageModel>, cache: Arc<ResponseCache>) -> Self {
        Self {
            inner,
            cache,
            hits: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl LanguageModel for CachedModel {
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let key = req.key();
        let cache = self.cache.clone();
        let k = key.clone();
        let hit = if cache.is_log() {
            cache.get(&k)
        } else {
            tokio::task::spawn_blocking(move || cache.get(&k))
                .await
                .map_err(|e| LlmError::Cache(format!("lookup task failed: {e}")))?
        };
        if let Some(mut c) = hit {
            self.hits.fetch_add(1, Relaxed);
            c.meta = CallMeta {
                cached: true,
                ..CallMeta::default()
            };
            return Ok(c);
        }
        let c = self.inner.generate(req).await?;
        let cache = self.cache.clone();
        if cache.is_log() {
            cache.put(&key, &c)?;
        } else {
            let stored = c.clone();
            tokio::task::spawn_blocking(move || cache.put(&key, &stored))
                .await
                .map_err(|e| LlmError::Cache(format!("store task failed: {e}")))??;
        }
        Ok(c)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The inner model's accounting, with cache hits counted as requests that succeeded.
    fn stats(&self) -> Option<StatsSnapshot> {
        let hits = self.hits.load(Relaxed);
        let mut s = self.inner.stats().unwrap_or_else(|| StatsSnapshot {
            endpoint: self.describe(),
            ..Default::default()
        });
        s.requests += hits;
        s.succeeded += hits;
        s.cache_hits += hits;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Choice, FinishReason, Usage};

    fn sample() -> Completion {
        Completion {
            model: "m".into(),
            choices: vec![Choice {
                index: 0,
                text: "hello".into(),
                finish_reason: FinishReason::Stop,
                logprobs: None,
                tool_calls: vec![],
            }],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            },
            meta: CallMeta {
                attempts: 3,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_log_store_reloads_and_skips_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("calls.log");
        let c = ResponseCache::open_log(&p).unwrap();
        c.put("k1", &sample()).unwrap();
        c.put("k2", &sample()).unwrap();
        drop(c);
        // A kill in the middle of the third write.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"arbor.cache/1 k3 00ff {\"model\":").unwrap();
        drop(f);
        let c = ResponseCache::open_log(&p).unwrap();
        assert_eq!(c.get("k1").unwrap().choices, sample().choices);
        assert!(c.get("k2").is_some() && c.get("k3").is_none());
        c.put("k3", &sample()).unwrap();
        let c = ResponseCache::open_log(&p).unwrap();
        assert!(
            c.get("k3").is_some(),
            "a new entry after a torn tail starts on its own line"
        );
    }

    #[test]
    fn round_trip_drops_meta() {
        let d = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(d.path()).unwrap();
        assert!(c.get("abcdef").is_none());
        c.put("abcdef", &sample()).unwrap();
        let got = c.get("abcdef").unwrap();
        assert_eq!(got.choices, sample().choices);
        assert_eq!(got.meta, CallMeta::default());
    }

    #[test]
    fn torn_or_tampered_entries_are_misses_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(d.path()).unwrap();
        c.put("abcdef", &sample()).unwrap();
        let path = c.path("abcdef");
        let full = std::fs::read(&path).unwrap();
        // Every strict prefix of a valid entry, as a torn write would leave it, is rejected.
        for cut in [0, 5, full.len() / 2, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            assert!(
                c.get("abcdef").is_none(),
                "prefix of {cut} bytes read as valid"
            );
            assert!(!path.exists());
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(c.get("abcdef").is_none());
        // An entry copied under another key is not served for it.
        std::fs::write(c.path("abzzzz"), &full).unwrap();
        assert!(c.get("abzzzz").is_none());
    }

    #[test]
    fn concurrent_writers_leave_one_valid_entry() {
        let d = tempfile::tempdir().unwrap();
        let c = Arc::new(ResponseCache::open(d.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        c.put("abcdef", &sample()).unwrap();
                        assert!(c.get("abcdef").is_some());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("ab")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }
}
