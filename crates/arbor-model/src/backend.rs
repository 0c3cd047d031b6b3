//! The `embedded` backend of arbor-llm's `LanguageModel`: one worker thread owns the model and
//! serves an in-process queue with one running batch that requests join at any step (on the
//! native engine) and leave when they finish.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arbor_llm::{
    CallMeta, Choice, Completion, Delta, FinishReason, LanguageModel, LlmError, LlmRequest, Prompt,
    StatsSnapshot, TokenLogprob, TopLogprob, Usage,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::batch::Batch;
use crate::generate::{EmbeddedModel, Finish, GenerateOptions, NewToken};
use crate::stream::TextStream;
use std::collections::HashMap;

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

/// A request in the running batch, with what its replies need.
struct Open {
    job: Job,
    prompt_tokens: usize,
    opts: GenerateOptions,
    streams: Vec<TextStream>,
}

fn worker(
    model: EmbeddedModel,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let mut batch = Batch::new(&model);
    let mut open: HashMap<usize, Open> = HashMap::new();
    let mut next_key = 0usize;
    let mut admit = |batch: &mut Batch<'_>, open: &mut HashMap<usize, Open>, job: Job| {
        // A request that cannot be prepared fails alone.
        // The batch keeps the prompt; the reply needs only its length.
        let ready = prepare(&model, &job.req).and_then(|(ids, opts)| {
            let prompt_tokens = ids.len();
            batch
                .admit(next_key, ids, opts.clone())
                .map(|()| (prompt_tokens, opts))
                .map_err(|e| LlmError::Invalid(format!("embedded model: {e}")))
        });
        match ready {
            Ok((prompt_tokens, opts)) => {
                let streams = (0..opts.n.max(1))
                    .map(|_| TextStream::new(opts.stop.clone()))
                    .collect();
                open.insert(
                    next_key,
                    Open {
                        job,
                        prompt_tokens,
                        opts,
                        streams,
                    },
                );
                next_key += 1;
            }
            Err(e) => {
                counters.failed.fetch_add(1, Relaxed);
                let _ = job.reply.send(Err(e));
            }
        }
    };
    loop {
        if batch.is_empty() {
            // Idle: wait for work, then a short admission window, so callers that start
            // together (a job's actors, a benchmark's streams) read their prompts in one pass.
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            counters.batches.fetch_add(1, Relaxed);
            admit(&mut batch, &mut open, first);
            let deadline = std::time::Instant::now() + ADMISSION_WINDOW;
            while batch.rows() < max_batch && std::time::Instant::now() < deadline {
                match rx.try_recv() {
                    Ok(j) => admit(&mut batch, &mut open, j),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(std::time::Duration::from_micros(200))
                    }
                    Err(_) => break,
                }
            }
        }
        // Busy: whoever arrived joins at this step, while there is room.
        while batch.can_admit() && batch.rows() < max_batch {
            match rx.try_recv() {
                Ok(j) => admit(&mut batch, &mut open, j),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut on_token = |t: NewToken<'_>| {
            let o = open
                .get_mut(&t.prompt)
                .expect("tokens come for open requests");
            let Some(tx) = &o.job.deltas else { return };
            let lp = t
                .logprob
                .filter(|_| o.job.req.params.logprobs)
                .map(|l| token_logprob(&model, t.id, l, t.top, o.opts.top_logprobs));
            if let Some((text, logprobs)) = o.streams[t.sample].push(&model.tokenizer, t.id, lp) {
                let _ = tx.send(Delta {
                    index: t.sample as u32,
                    text,
                    logprobs,
                });
            }
        };
        match batch.step(&mut on_token) {
            Ok(done) => {
                for (key, samples) in done {
                    let o = open.remove(&key).expect("finished requests are open");
                    reply(&model, &counters, o, samples);
                }
            }
            Err(e) => {
                // A failed step leaves the batch unusable: fail what is in it, start afresh.
                for (_, o) in open.drain() {
                    counters.failed.fetch_add(1, Relaxed);
                    let _ = o
                        .job
                        .reply
                        .send(Err(LlmError::Invalid(format!("embedded model: {e}"))));
                }
                batch = Batch::new(&model);
            }
        }
    }
}

/// Sends a finished request its completion (and the last of its stream).
fn reply(model: &EmbeddedModel, counters: &Counters, o: Open, samples: Vec<crate::Generated>) {
    let Open {
        job,
        prompt_tokens,
        opts,
        mut streams,
    } = o;
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
    counters
        .prompt_tokens
        .fetch_add(prompt_tokens as u64, Relaxed);
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
                    .map(|((&id, &lp), top)| token_logprob(model, id, lp, top, opts.top_logprobs))
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
            prompt_tokens: prompt_tokens as u64,
            completion_tokens,
        },
        meta: CallMeta {
            attempts: 1,
            ..Default::default()
        },
    };
    let _ = job.reply.send(Ok(c));
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
        logprobs: p.logprobs,
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

    /// Busy periods so far: a batch starts when a request finds the model idle, and every
    /// request arriving while it runs joins it.
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
