//! A running batch of generation (continuous batching): requests join at any step — on the
//! native engine their prompts are read in the same forward pass as the other rows' next tokens,
//! so the weights are read once for both — and leave as soon as their samples finish, so a batch
//! runs at the size of what is generating. `EmbeddedModel::generate_batch` is a batch admitted
//! at once and run to the end.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::constrain::{allows, Cursor, JsonConstraint};
use crate::engine::{BatchCache, Net, NewRow};
use crate::generate::{EmbeddedModel, Finish, GenerateOptions, Generated, ModelError, NewToken};
use crate::native::SeqCache;
use crate::sampling::{argmax, log_softmax, sample, top_k, Draw};

/// Constrained answers check, within this many tokens of `max_tokens`, whether closing the JSON
/// needs the rest of the budget, and if so write the closing instead of sampling.
const CLOSING_WINDOW: usize = 48;

struct Request {
    prompt: Arc<[u32]>,
    opts: GenerateOptions,
    constraint: Option<Arc<JsonConstraint>>,
    samples: Vec<Option<Generated>>,
}

/// One sample being generated.
struct Row {
    key: usize,
    sample: usize,
    rng: StdRng,
    out: Generated,
    grammar: Option<Cursor>,
    /// Tokens that close a constrained answer, written as `max_tokens` runs out.
    closing: VecDeque<u32>,
    /// The token drawn last, which the next forward pass reads.
    pending: u32,
}

pub struct Batch<'m> {
    model: &'m EmbeddedModel,
    net: Net<'m>,
    requests: HashMap<usize, Request>,
    /// Rows generating, in cache order.
    live: Vec<Row>,
    cache: Option<BatchCache>,
    /// Admitted prompts not yet read, with the cache of a stored prefix when there is one.
    queued: Vec<(usize, Option<SeqCache>)>,
}

impl<'m> Batch<'m> {
    pub fn new(model: &'m EmbeddedModel) -> Self {
        Self {
            model,
            net: model.net(),
            requests: HashMap::new(),
            live: Vec::new(),
            cache: None,
            queued: Vec::new(),
        }
    }

    /// Whether a request can join now: on the native engine always; the burn network's single
    /// left-padded cache takes new prompts only while nothing is generating.
    pub fn can_admit(&self) -> bool {
        matches!(self.net, Net::Native(_)) || self.live.is_empty()
    }

    /// Rows generating or about to start.
    pub fn rows(&self) -> usize {
        let queued: usize = self
            .queued
            .iter()
            .map(|(k, _)| self.requests[k].samples.len())
            .sum();
        self.live.len() + queued
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.queued.is_empty()
    }

    /// Adds request `key` (unique in the batch); its prompt is read at the next step.
    pub fn admit(
        &mut self,
        key: usize,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<(), ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Invalid(
                "each prompt needs at least one token".into(),
            ));
        }
        if prompt.len() + opts.max_tokens > self.model.cfg.context {
            return Err(ModelError::Invalid(format!(
                "prompt ({}) + max_tokens ({}) exceeds the context ({})",
                prompt.len(),
                opts.max_tokens,
                self.model.cfg.context
            )));
        }
        assert!(
            !self.requests.contains_key(&key),
            "request keys are unique in a batch"
        );
        let constraint = opts
            .json_schema
            .as_ref()
            .map(|s| self.model.constraint(s))
            .transpose()?;
        let samples = vec![None; opts.n.max(1)];
        let start = match self.net {
            Net::Native(_) => self.model.prefixes().lookup(&prompt),
            Net::Burn(..) => None,
        };
        let prompt = prompt.into();
        self.requests.insert(
            key,
            Request {
                prompt,
                opts,
                constraint,
                samples,
            },
        );
        self.queued.push((key, start));
        Ok(())
    }

    /// One step: a forward pass that reads every row's last token and the queued prompts, then
    /// the next token of every row (told to `on_token`). Returns the requests that finished,
    /// each with its samples in order.
    pub fn step(
        &mut self,
        on_token: &mut dyn FnMut(NewToken<'_>),
    ) -> Result<Vec<(usize, Vec<Generated>)>, ModelError> {
        let mut queued = std::mem::take(&mut self.queued);
        let tokens: Vec<u32> = self.live.iter().map(|r| r.pending).collect();
        let prompts: Vec<NewRow> = queued
            .iter_mut()
            .map(|(k, start)| NewRow {
                tokens: &self.requests[k].prompt,
                start: start.take(),
            })
            .collect();
        // A burn batch is left-padded to its longest prompt, so every row needs room for that
        // and the largest max_tokens.
        let longest = queued
            .iter()
            .map(|(k, _)| self.requests[k].prompt.len())
            .max();
        let most_new = queued
            .iter()
            .map(|(k, _)| self.requests[k].opts.max_tokens)
            .max();
        let capacity = longest.unwrap_or(0) + most_new.unwrap_or(0);
        let mut logits = self
            .net
            .forward(&mut self.cache, &tokens, prompts, capacity);
        // New rows: each sample of a prompt starts from the prompt's cache row and logits.
        let old = self.live.len();
        let mut source: Vec<usize> = (0..old).collect();
        for (p, (key, _)) in queued.iter().enumerate() {
            self.remember(old + p, &self.requests[key].prompt, &[]);
            let opts = &self.requests[key].opts;
            let grammar = self.requests[key].constraint.as_ref().map(|c| c.start());
            for s in 0..opts.n.max(1) {
                source.push(old + p);
                self.live.push(Row {
                    key: *key,
                    sample: s,
                    rng: StdRng::seed_from_u64(opts.seed.wrapping_add(s as u64)),
                    out: Generated {
                        ids: Vec::new(),
                        text: String::new(),
                        logprobs: Vec::new(),
                        top: Vec::new(),
                        finish: Finish::Length,
                    },
                    grammar: grammar.clone(),
                    closing: VecDeque::new(),
                    pending: 0,
                });
            }
        }

        let mut finished = Vec::new();
        let mut keep = Vec::with_capacity(self.live.len());
        for (i, mut row) in std::mem::take(&mut self.live).into_iter().enumerate() {
            // Samples of one prompt share its logits: copy for all but the last.
            let row_logits = if source.get(i + 1) == Some(&source[i]) {
                logits[source[i]].clone()
            } else {
                std::mem::take(&mut logits[source[i]])
            };
            match self.draw(&mut row, row_logits, on_token)? {
                Some(tok) => {
                    row.pending = tok;
                    keep.push(source[i]);
                    self.live.push(row);
                }
                None => {
                    let (key, sample) = (row.key, row.sample);
                    self.remember(source[i], &self.requests[&key].prompt, &row.out.ids);
                    let req = self
                        .requests
                        .get_mut(&key)
                        .expect("a row's request is open");
                    req.samples[sample] = Some(finish(self.model, row, &req.opts)?);
                    if req.samples.iter().all(Option::is_some) {
                        let req = self.requests.remove(&key).expect("open");
                        let samples = req.samples.into_iter().map(|s| s.expect("all done"));
                        finished.push((key, samples.collect()));
                    }
                }
            }
        }
        // The cache follows the rows: finished ones leave, new samples copy their prompt's row.
        let rows_before = old + queued.len();
        if let Some(cache) = self.cache.take() {
            let same = keep.len() == rows_before && keep.iter().enumerate().all(|(i, &r)| i == r);
            if same {
                self.cache = Some(cache);
            } else if !keep.is_empty() {
                self.cache = Some(cache.select_rows(&keep, self.model.device()));
            }
        }
        Ok(finished)
    }

    /// Stores cache row `i`, which holds `prompt` and then `generated` (all but the tokens not
    /// yet read), for later prompts that start the same way.
    fn remember(&self, i: usize, prompt: &[u32], generated: &[u32]) {
        let Some(cache) = self.cache.as_ref().and_then(|c| c.native_row(i)) else {
            return;
        };
        let tokens: Vec<u32> = prompt
            .iter()
            .chain(generated)
            .take(cache.len)
            .copied()
            .collect();
        if tokens.len() == cache.len {
            self.model.prefixes().insert(&tokens, cache.clone());
        }
    }

    /// The next token of `row` from `logits` (`None`: the row has finished).
    fn draw(
        &self,
        row: &mut Row,
        mut logits: Vec<f32>,
        on_token: &mut dyn FnMut(NewToken<'_>),
    ) -> Result<Option<u32>, ModelError> {
        let req = &self.requests[&row.key];
        let o = &req.opts;
        if row.out.ids.len() >= o.max_tokens {
            return Ok(None);
        }
        let eos = self.model.tokenizer.eos;
        let forced = match (&req.constraint, &row.grammar) {
            (Some(c), Some(cursor)) => {
                let left = o.max_tokens - row.out.ids.len();
                if row.closing.is_empty() && left <= CLOSING_WINDOW {
                    row.closing = self.model.closing_tokens(c, cursor, left);
                }
                row.closing.pop_front()
            }
            _ => None,
        };
        // Forced closing tokens take no mask and no draw (the log-prob is still the model's).
        // The softmax over the vocabulary runs only when a log-prob is reported or a sampled
        // draw reads it; greedy takes the argmax of the (masked) logits either way, so asking
        // for log-probs never changes a greedy answer.
        let report = o.logprobs || o.top_logprobs > 0;
        let mut lp = None;
        let tok = match forced {
            Some(tok) => tok,
            None => {
                if let (Some(c), Some(cursor)) = (&req.constraint, &row.grammar) {
                    let mask = c.allowed(cursor);
                    for (i, x) in logits.iter_mut().enumerate() {
                        if !allows(&mask, i as u32) {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                    // A dead cursor (nothing allowed) can only end.
                    if logits.iter().all(|x| x.is_infinite()) {
                        logits[eos as usize] = 0.0;
                    }
                }
                let tok = if o.temperature <= 0.0 {
                    argmax(&logits)
                } else {
                    let draw = Draw {
                        temperature: o.temperature,
                        top_k: o.top_k,
                        top_p: o.top_p,
                    };
                    sample(lp.insert(log_softmax(&logits)), draw, &mut row.rng)
                };
                if tok == eos || o.stop_ids.contains(&tok) {
                    row.out.finish = Finish::Stop;
                    return Ok(None);
                }
                tok
            }
        };
        if let (Some(c), Some(cursor)) = (&req.constraint, &mut row.grammar) {
            c.advance(cursor, tok);
        }
        row.out.ids.push(tok);
        let lp = match (report, lp) {
            (false, _) => None,
            (true, lp) => Some(lp.unwrap_or_else(|| log_softmax(&logits))),
        };
        let logprob = lp.as_ref().map(|lp| lp[tok as usize]);
        if let Some(l) = logprob.filter(|_| o.logprobs) {
            row.out.logprobs.push(l);
        }
        row.out
            .top
            .push(lp.map_or_else(Vec::new, |lp| top_k(&lp, o.top_logprobs)));
        on_token(NewToken {
            prompt: row.key,
            sample: row.sample,
            id: tok,
            logprob,
            top: row.out.top.last().map_or(&[], Vec::as_slice),
        });
        if !o.stop.is_empty() {
            let text = self.model.tokenizer.decode(&row.out.ids)?;
            if o.stop.iter().any(|s| text.contains(s.as_str())) {
                row.out.finish = Finish::Stop;
                return Ok(None);
            }
        }
        Ok((row.out.ids.len() < o.max_tokens).then_some(tok))
    }
}

impl EmbeddedModel {
    /// Generates for several prompts at once; returns, per prompt, its `n` samples.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenerateOptions],
    ) -> Result<Vec<Vec<Generated>>, ModelError> {
        self.generate_batch_with(prompts, opts, &mut |_| {})
    }

    /// [`Self::generate_batch`], telling `on_token` of every token as it is generated
    /// (streaming).
    pub fn generate_batch_with(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenerateOptions],
        on_token: &mut dyn FnMut(NewToken<'_>),
    ) -> Result<Vec<Vec<Generated>>, ModelError> {
        if prompts.len() != opts.len() {
            return Err(ModelError::Invalid("each prompt needs options".into()));
        }
        let mut batch = Batch::new(self);
        for (i, (p, o)) in prompts.iter().zip(opts).enumerate() {
            batch.admit(i, p.clone(), o.clone())?;
        }
        let mut out: Vec<Vec<Generated>> = vec![Vec::new(); prompts.len()];
        while !batch.is_empty() {
            for (key, samples) in batch.step(on_token)? {
                out[key] = samples;
            }
        }
        Ok(out)
    }
}

/// A finished row's sample: its text, cut at the first stop string.
fn finish(model: &EmbeddedModel, row: Row, o: &GenerateOptions) -> Result<Generated, ModelError> {
    let mut out = row.out;
    let mut text = model.tokenizer.decode(&out.ids)?;
    if let Some(cut) = o.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
        out.finish = Finish::Stop;
    }
    out.text = text;
    Ok(out)
}
