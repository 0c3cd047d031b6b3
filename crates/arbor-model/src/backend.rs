//! The `embedded` backend of arbor-llm's `LanguageModel`: one worker thread owns the model and
//! serves an in-process queue, running whatever requests are waiting as one batch.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arbor_llm::{
    CallMeta, Choice, Completion, Delta, FinishReason, LanguageModel, LlmError, LlmRequest, Prompt,
    StatsSnapshot, TokenLogprob, TopLogprob, Usage,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::generate::{EmbeddedModel, Finish, GenerateOptions, NewToken};
use crate::stream::TextStream;

struct Job {
    req: LlmRequest,
    reply: oneshot::Sender<Result<Completion, LlmError>>,
    /// Streaming: where the text goes as it is generated.
    deltas: Option<mpsc::UnboundedSender<Delta>>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    batches: AtomicU64,
}

/// A cheap handle to the embedded model's worker.
#[derive(Clone)]
pub struct EmbeddedBackend {
    tx: mpsc::Sender<Job>,
    name: String,
    counters: Arc<Counters>,
}

/// How long the worker waits for more requests before starting a batch.
const ADMISSION_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Default `max_tokens` when a request leaves it unset.
const DEFAULT_MAX_TOKENS: usize = 256;

impl EmbeddedBackend {
    /// Starts the worker. At most `max_batch` requests' samples run together.
    pub fn start(model: EmbeddedModel, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let name = format!("embedded ({})", model.name);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("arbor-embedded".into())
            .spawn(move || worker(model, rx, max_batch.max(1), c))
            .expect("can spawn the model thread");
        Self { tx, name, counters }
    }
}

fn worker(
    model: EmbeddedModel,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        // A short admission window: callers that start together (a job's actors, a benchmark's
        // streams) land in one batch instead of the first running alone. The batch then runs to
        // completion; rows are not added mid-flight.
        let deadline = std::time::Instant::now() + ADMISSION_WINDOW;
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(_) => break,
            }
        }
        counters.batches.fetch_add(1, Relaxed);
        // Prepare each request; those that cannot be prepared fail alone.
        let mut ready = Vec::new();
        for job in jobs {
            match prepare(&model, &job.req) {
                Ok((ids, opts)) => ready.push((job, ids, opts)),
                Err(e) => {
                    counters.failed.fetch_add(1, Relaxed);
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        let prompts: Vec<Vec<u32>> = ready.iter().map(|r| r.1.clone()).collect();
        let opts: Vec<GenerateOptions> = ready.iter().map(|r| r.2.clone()).collect();
        let mut streams: Vec<Vec<TextStream>> = opts
            .iter()
            .map(|o| (0..o.n).map(|_| TextStream::new(o.stop.clone())).collect())
            .collect();
        let mut on_token = |t: NewToken<'_>| {
            let job = &ready[t.prompt].0;
            let Some(tx) = &job.deltas else { return };
            let lp = job.req.params.logprobs.then(|| {
                token_logprob(&model, t.id, t.logprob, t.top, opts[t.prompt].top_logprobs)
            });
            if let Some((text, logprobs)) =
                streams[t.prompt][t.sample].push(&model.tokenizer, t.id, lp)
            {
                let _ = tx.send(Delta {
                    index: t.sample as u32,
                    text,
                    logprobs,
                });
            }
        };
        let result = model.generate_batch_with(&prompts, &opts, &mut on_token);
        match result {
            Ok(outs) => {
                for (((job, ids, o), samples), mut streams) in
                    ready.into_iter().zip(outs).zip(streams)
                {
                    if let Some(tx) = &job.deltas {
                        for (i, s) in samples.iter().enumerate() {
                            if let Some((text, logprobs)) = streams[i].finish(&s.text) {
                                let _ = tx.send(Delta {
                                    index: i as u32,
                                    text,
                                    logprobs,
                                });
                            }
                        }
                    }
                    let completion_tokens: u64 = samples.iter().map(|s| s.ids.len() as u64).sum();
                    counters.prompt_tokens.fetch_add(ids.len() as u64, Relaxed);
                    counters
                        .completion_tokens
                        .fetch_add(completion_tokens, Relaxed);
                    let choices = samples
                        .into_iter()
                        .enumerate()
                        .map(|(i, s)| Choice {
                            index: i as u32,
                            finish_reason: match s.finish {
                                Finish::Stop => FinishReason::Stop,
                                Finish::Length => FinishReason::Length,
                            },
                            logprobs: job.req.params.logprobs.then(|| {
                                s.ids
                                    .iter()
                                    .zip(&s.logprobs)
                                    .zip(&s.top)
                                    .map(|((&id, &lp), top)| {
                                        token_logprob(&model, id, lp, top, o.top_logprobs)
                                    })
                                    .collect()
                            }),
                            text: s.text,
                            tool_calls: Vec::new(),
                        })
                        .collect();
                    let c = Completion {
                        model: model.name.clone(),
                        choices,
                        usage: Usage {
                            prompt_tokens: ids.len() as u64,
                            completion_tokens,
                        },
                        meta: CallMeta {
                            attempts: 1,
                            ..Default::default()
                        },
                    };
                    let _ = job.reply.send(Ok(c));
                }
            }
            Err(e) => {
                for (job, _, _) in ready {
                    counters.failed.fetch_add(1, Relaxed);
                    let _ = job
                        .reply
                        .send(Err(LlmError::Invalid(format!("embedded model: {e}"))));
                }
            }
        }
    }
}

fn token_logprob(
    model: &EmbeddedModel,
    id: u32,
    logprob: f32,
    top: &[(u32, f32)],
    k: usize,
) -> TokenLogprob {
    TokenLogprob {
        token: model.tokenizer.token_text(id),
        logprob,
        top: top
            .iter()
            .take(k)
            .map(|&(t, l)| TopLogprob {
                token: model.tokenizer.token_text(t),
                logprob: l,
            })
            .collect(),
    }
}

/// Prompt ids and generation options for a request.
fn prepare(
    model: &EmbeddedModel,
    req: &LlmRequest,
) -> Result<(Vec<u32>, GenerateOptions), LlmError> {
    let bad = |e: String| LlmError::Invalid(format!("embedded model: {e}"));
    let text = match &req.prompt {
        Prompt::Chat(messages) => model
            .tokenizer
            .render_chat(messages, true)
            .map_err(|e| bad(e.to_string()))?,
        Prompt::Text(t) => t.clone(),
    };
    let ids = model
        .tokenizer
        .encode(&text, true)
        .map_err(|e| bad(e.to_string()))?;
    if ids.is_empty() {
        return Err(bad("the prompt is empty".into()));
    }
    if ids.len() >= model.cfg.context {
        return Err(bad(format!(
            "the prompt is {} tokens; this model's maximum context length is {} tokens",
            ids.len(),
            model.cfg.context
        )));
    }
    let p = &req.params;
    let max_tokens = p
        .max_tokens
        .map(|m| m as usize)
        .unwrap_or(DEFAULT_MAX_TOKENS)
        .min(model.cfg.context.saturating_sub(ids.len()));
    let opts = GenerateOptions {
        max_tokens,
        // OpenAI's default temperature is 1.
        temperature: p.temperature.unwrap_or(1.0),
        top_k: p.top_k.map(|k| k as usize),
        top_p: p.top_p,
        seed: p.seed.unwrap_or_else(rand::random),
        stop: p.stop.clone(),
        stop_ids: Vec::new(),
        n: p.n.max(1) as usize,
        top_logprobs: if p.logprobs {
            p.top_logprobs as usize
        } else {
            0
        },
        json_schema: p.json_schema.clone(),
    };
    // An unsupported schema fails this request alone, before it joins a batch.
    if let Some(s) = &opts.json_schema {
        model.constraint(s).map_err(|e| bad(e.to_string()))?;
    }
    Ok((ids, opts))
}

impl EmbeddedBackend {
    /// The default model of every arbor command that has no server configured: the fetched
    /// SmolLM2 GGUF (or `model`) on the CPU, batching up to 16 requests.
    pub fn load_default(model: Option<&std::path::Path>) -> Result<Self, LlmError> {
        let path =
            crate::fetch::resolve_model(model).map_err(|e| LlmError::Invalid(e.to_string()))?;
        let m = EmbeddedModel::load(&path, burn::tensor::Device::flex())
            .map_err(|e| LlmError::Invalid(format!("loading {}: {e}", path.display())))?;
        Ok(Self::start(m, 16))
    }

    async fn submit(
        &self,
        req: &LlmRequest,
        deltas: Option<mpsc::UnboundedSender<Delta>>,
    ) -> Result<Completion, LlmError> {
        self.counters.requests.fetch_add(1, Relaxed);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                req: req.clone(),
                reply,
                deltas,
            })
            .await
            .map_err(|_| LlmError::Invalid("the embedded model's worker has stopped".into()))?;
        rx.await.map_err(|_| {
            LlmError::Invalid("the embedded model's worker dropped the request".into())
        })?
    }

    /// Batches run so far (a batch serves every request waiting when it started).
    pub fn batches(&self) -> u64 {
        self.counters.batches.load(Relaxed)
    }
}

#[async_trait]
impl LanguageModel for EmbeddedBackend {
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        self.submit(req, None).await
    }

    async fn generate_stream(
        &self,
        req: &LlmRequest,
        deltas: mpsc::UnboundedSender<Delta>,
    ) -> Result<Completion, LlmError> {
        self.submit(req, Some(deltas)).await
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn stats(&self) -> Option<StatsSnapshot> {
        let c = &self.counters;
        let requests = c.requests.load(Relaxed);
        let failed = c.failed.load(Relaxed);
        Some(StatsSnapshot {
            endpoint: self.name.clone(),
            requests,
            succeeded: requests.saturating_sub(failed),
            failed,
            attempts: requests,
            prompt_tokens: c.prompt_tokens.load(Relaxed),
            completion_tokens: c.completion_tokens.load(Relaxed),
            ..Default::default()
        })
    }
}
