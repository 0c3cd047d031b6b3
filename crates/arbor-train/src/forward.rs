//! From examples to tensors: tokenization with step boundaries, left-padded batches, per-token
//! log-probabilities and the exact KL to the reference (their math in `head`), and the
//! aggregation of tokens into the units a loss works on (tokens, steps, whole responses).
use arbor_model::llama::{Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use arbor_core::Message;
use arbor_envs::prompt::step_prompt;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::data::Question;
use crate::head::{index_tensor, policy_head, reference_head};

/// A prompt and response as token ids, with where each response step ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Exclusive end (index into `tokens`) of each response step.
    pub step_ends: Vec<usize>,
}

/// A task's prompt is the tree search's step prompt (question and `prefix` steps), so training
/// sees exactly what search and evaluation show the model; each step is one line. A
/// conversation is rendered with the model's chat template and its one response closed as the
/// template closes an assistant turn; plain text is followed by the response and the
/// end-of-sequence token.
pub fn encode(
    tok: &TextTokenizer,
    question: &Question,
    prefix: &[String],
    steps: &[String],
) -> Result<Encoded, String> {
    let special = |text: &str| tok.encode(text, true).map_err(|e| e.to_string());
    let (mut tokens, responses): (Vec<u32>, Vec<Vec<u32>>) = match question {
        Question::Task(q) => (
            special(&step_prompt(q, prefix))?,
            steps
                .iter()
                .map(|s| tok.encode(&format!("{s}\n"), false).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
        ),
        Question::Chat(messages) => {
            let [reply] = steps else {
                return Err(format!("a chat reply is one response, not {} steps", steps.len()));
            };
            let prompt = tok.render_chat(messages, true).map_err(|e| e.to_string())?;
            let mut turn = messages.clone();
            turn.push(Message::assistant(reply.as_str()));
            let full = tok.render_chat(&turn, false).map_err(|e| e.to_string())?;
            let closed = full.strip_prefix(&prompt).ok_or(
                "the chat template renders the conversation differently once it has a reply",
            )?;
            (special(&prompt)?, vec![special(closed)?])
        }
        Question::Text(prompt) => {
            let [reply] = steps else {
                return Err(format!("a reply is one response, not {} steps", steps.len()));
            };
            let mut r = tok.encode(reply, false).map_err(|e| e.to_string())?;
            r.push(tok.eos);
            (tok.encode(prompt, false).map_err(|e| e.to_string())?, vec![r])
        }
    };
    let prompt_len = tokens.len();
    let mut step_ends = Vec::with_capacity(responses.len());
    for r in responses {
        tokens.extend(r);
        step_ends.push(tokens.len());
    }
    if prompt_len == 0 || tokens.len() == prompt_len {
        return Err("empty prompt or response".into());
    }
    Ok(Encoded {
        tokens,
        prompt_len,
        step_ends,
    })
}

/// Left-padded sequences. Position j of the `[B, T−1]` per-token tensors is the prediction of
/// token j+1 from the state before it.
pub struct Batch<'a> {
    pub seqs: Vec<&'a Encoded>,
    pub tokens: Vec<Vec<u32>>,
    pub pads: Vec<usize>,
    pub len: usize,
}

impl<'a> Batch<'a> {
    pub fn new(seqs: Vec<&'a Encoded>) -> Self {
        let (tokens, pads) =
            arbor_model::host::left_pad(&seqs.iter().map(|s| &s.tokens).collect::<Vec<_>>());
        let len = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
        Self {
            seqs,
            tokens,
            pads,
            len,
        }
    }

    pub fn rows(&self) -> usize {
        self.seqs.len()
    }

    /// Response tokens in the batch (what "training tokens" counts).
    pub fn action_tokens(&self) -> usize {
        self.seqs
            .iter()
            .map(|s| s.tokens.len() - s.prompt_len)
            .sum()
    }

    fn flat_f32(&self, f: impl Fn(usize, usize) -> f32, k: usize) -> Vec<f32> {
        (0..self.rows())
            .flat_map(|b| (0..k).map(move |j| (b, j)))
            .map(|(b, j)| f(b, j))
            .collect()
    }

    /// Whether position j of row b predicts a response token.
    fn acts(&self, b: usize, j: usize) -> bool {
        j + 1 >= self.pads[b] + self.seqs[b].prompt_len
    }

    /// 1 where position j predicts a response token.
    pub fn action_mask(&self, device: &Device) -> Tensor<2> {
        let t = self.len - 1;
        let v = self.flat_f32(|b, j| if self.acts(b, j) { 1.0 } else { 0.0 }, t);
        Tensor::from_data(TensorData::new(v, [self.rows(), t]), device)
    }

    /// The flat indices `b·(T−1) + j` of the positions that predict response tokens, in order.
    fn action_positions(&self) -> Vec<usize> {
        let t = self.len - 1;
        (0..self.rows())
            .flat_map(|b| (0..t).map(move |j| (b, j)))
            .filter(|&(b, j)| self.acts(b, j))
            .map(|(b, j)| b * t + j)
            .collect()
    }

    /// A value per action position (`[N]`, in [`Batch::action_positions`] order) spread to
    /// `[B, T−1]`, zero elsewhere.
    pub fn spread(&self, x: Tensor<1>, device: &Device) -> Tensor<2> {
        let (b, t) = (self.rows(), self.len - 1);
        let idx = index_tensor(&self.action_positions(), device);
        Tensor::<1>::zeros([b * t], device)
            .select_assign(0, idx, x, IndexingUpdateOp::Add)
            .reshape([b, t])
    }
}

/// What one forward pass of the trained policy gives a loss.
pub struct TokenPass {
    /// log π(token j+1 | ≤ j), `[B, T−1]`, at the positions that predict response tokens
    /// (zero at prompt and pad positions, which every loss masks out).
    pub logprobs: Tensor<2>,
    /// KL(π‖π_ref) at those positions, `[B, T−1]`, when the reference's distributions are given.
    pub kl: Option<Tensor<2>>,
    /// Final hidden states `[B, T, d]`.
    pub hidden: Tensor<3>,
}

/// The output layer runs only where a loss reads it: the vocabulary-wide logits, their
/// log-softmax and its gradient are the step's largest tensors, and the prompt's positions
/// (often half the tokens) are masked out of every loss anyway. Returns the hidden states, the
/// logits `[N, V]` at the action positions and the tokens they predict.
fn action_logits(
    model: &Llama,
    cfg: &LlamaConfig,
    batch: &Batch<'_>,
    device: &Device,
) -> (Tensor<3>, Tensor<2>, Vec<usize>) {
    let hidden = model.hidden(cfg, &batch.tokens, &batch.pads, device);
    let (b, t) = (batch.rows(), batch.len - 1);
    let at = batch.action_positions();
    let targets: Vec<usize> = at
        .iter()
        .map(|&p| batch.tokens[p / t][p % t + 1] as usize)
        .collect();
    let states = hidden
        .clone()
        .narrow(1, 0, t)
        .reshape([b * t, cfg.d_model])
        .select(0, index_tensor(&at, device));
    let logits = model.logits(states.unsqueeze::<3>()).squeeze_dim::<2>(0);
    (hidden, logits, targets)
}

/// The policy's pass; `reference` (the reference's log-distributions `[N, V]` in
/// [`Batch::spread`]'s order) asks for the exact KL.
pub fn token_pass(
    model: &Llama,
    cfg: &LlamaConfig,
    batch: &Batch<'_>,
    device: &Device,
    reference: Option<Tensor<2>>,
) -> TokenPass {
    let (hidden, logits, targets) = action_logits(model, cfg, batch, device);
    let (logp, kl) = policy_head(logits, &targets, reference);
    TokenPass {
        logprobs: batch.spread(logp, device),
        kl: kl.map(|kl| batch.spread(kl, device)),
        hidden,
    }
}

/// The frozen reference's log-probs `[B, T−1]` (as [`TokenPass::logprobs`]) and, when
/// `keep_dist`, its log-distributions `[N, V]` at the action positions.
pub fn reference_pass(
    model: &Llama,
    cfg: &LlamaConfig,
    batch: &Batch<'_>,
    device: &Device,
    keep_dist: bool,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let (_, logits, targets) = action_logits(model, cfg, batch, device);
    let (logp, dist) = reference_head(logits, &targets, keep_dist);
    (batch.spread(logp, device), dist)
}

/// Moves a tensor computed on another device (the frozen reference's) onto `device`.
pub fn to_device<const D: usize>(x: Tensor<D>, device: &Device) -> Tensor<D> {
    Tensor::from_data(x.into_data(), device)
}

/// What a loss sums over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Token,
    Step,
    Response,
}

/// Token → unit aggregation for a batch: `agg` `[B, K, T−1]` (1 where position j's token belongs
/// to unit k), `start` `[B, K]` (the position whose state a unit starts from), `mask` `[B, K]`.
pub struct Units {
    pub agg: Tensor<3>,
    pub start: Tensor<2, Int>,
    pub mask: Tensor<2>,
}

impl Units {
    pub fn new(batch: &Batch<'_>, level: Level, device: &Device) -> Self {
        let (b, t) = (batch.rows(), batch.len - 1);
        // Per row: the token spans [from, to) of each unit, in absolute (padded) token indices.
        let spans: Vec<Vec<(usize, usize)>> = batch
            .seqs
            .iter()
            .zip(&batch.pads)
            .map(|(s, &pad)| {
                let first = pad + s.prompt_len;
                match level {
                    Level::Token => (first..pad + s.tokens.len()).map(|i| (i, i + 1)).collect(),
                    Level::Response => vec![(first, pad + s.tokens.len())],
                    Level::Step => {
                        let mut from = first;
                        s.step_ends
                            .iter()
                            .map(|&e| {
                                let span = (from, pad + e);
                                from = pad + e;
                                span
                            })
                            .filter(|(a, z)| z > a)
                            .collect()
                    }
                }
            })
            .collect();
        let k = spans.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut agg = vec![0f32; b * k * t];
        let mut start = vec![0i64; b * k];
        let mut mask = vec![0f32; b * k];
        for (row, sp) in spans.iter().enumerate() {
            for (u, &(from, to)) in sp.iter().enumerate() {
                // Token i is predicted at position i − 1.
                for i in from..to {
                    agg[(row * k + u) * t + i - 1] = 1.0;
                }
                start[row * k + u] = (from - 1) as i64;
                mask[row * k + u] = 1.0;
            }
        }
        Self {
            agg: Tensor::from_data(TensorData::new(agg, [b, k, t]), device),
            start: Tensor::from_data(TensorData::new(start, [b, k]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, k]), device),
        }
    }

    /// Sums a per-position quantity `[B, T−1]` over each unit's tokens → `[B, K]`.
    pub fn sum(&self, x: Tensor<2>) -> Tensor<2> {
        self.agg
            .clone()
            .matmul(x.unsqueeze_dim::<3>(2))
            .squeeze_dim::<2>(2)
    }

    /// A per-position quantity read at each unit's start state → `[B, K]`.
    pub fn at_start(&self, x: Tensor<2>) -> Tensor<2> {
        x.gather(1, self.start.clone())
    }

    /// Mean hidden state of each unit's tokens `[B, K, d]` (from `[B, T, d]` hidden states).
    pub fn mean_hidden(&self, hidden: Tensor<3>) -> Tensor<3> {
        let t = hidden.dims()[1];
        let counts = self.agg.clone().sum_dim(2).clamp_min(1.0); // [B, K, 1]
                                                                 // Position j's token is token j+1, whose own hidden state is at index j+1.
        self.agg.clone().matmul(hidden.narrow(1, 1, t - 1)) / counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_model::host::to_f32;
    use arbor_model::llama::RandomInit;
    use burn::tensor::activation::log_softmax;
    use rand::SeedableRng;

    /// The output layer on the action positions only gives, at each of them, the log-prob and
    /// log-distribution that the full `[B, T−1, V]` computation gives, and zero elsewhere; rows
    /// with different pads and prompt lengths catch an index or target off by one.
    #[test]
    fn action_positions_match_the_full_output_layer() {
        let tok = TextTokenizer::byte_level().unwrap();
        let cfg = crate::device_check::config(&tok);
        let device = Device::flex();
        let mut src = RandomInit(rand::rngs::StdRng::seed_from_u64(7));
        let Ok(model) = Llama::load(&cfg, &mut src, &device);
        let a = encode(&tok, &"What is 2+2?".into(), &[], &["2+2 = 4".into()]).unwrap();
        let long = "Ava has 3 cards and buys 2 more. How many?";
        let b = encode(&tok, &long.into(), &["3 + 2 = 5".into()], &["The answer is 5".into()]).unwrap();
        let batch = Batch::new(vec![&a, &b]);
        let pass = token_pass(&model, &cfg, &batch, &device, None);
        let (ref_lp, dist) = reference_pass(&model, &cfg, &batch, &device, true);

        let t = batch.len - 1;
        let full = log_softmax(model.logits(pass.hidden.clone().narrow(1, 0, t)), 2);
        let full = to_f32(full);
        let got = to_f32(pass.logprobs);
        assert!(got.iter().zip(to_f32(ref_lp)).all(|(a, b)| (a - b).abs() < 1e-5));
        let dist = to_f32(dist.unwrap());
        let v = cfg.vocab;
        let mut n = 0;
        for (row, toks) in batch.tokens.iter().enumerate() {
            for j in 0..t {
                let p = row * t + j;
                if batch.acts(row, j) {
                    let want = full[p * v + toks[j + 1] as usize];
                    assert!((got[p] - want).abs() < 1e-5, "row {row} pos {j}: {} vs {want}", got[p]);
                    let (d, f) = (&dist[n * v..(n + 1) * v], &full[p * v..(p + 1) * v]);
                    assert!(d.iter().zip(f).all(|(x, y)| (x - y).abs() < 1e-5));
                    n += 1;
                } else {
                    assert_eq!(got[p], 0.0);
                }
            }
        }
        assert_eq!(n, batch.action_tokens());
        assert!(batch.pads.iter().any(|&p| p > 0), "the rows are padded differently");
    }

    /// A task is the step prompt with a line per step; a conversation goes through the chat
    /// template and its reply ends with the end-of-turn token, which the model must learn to
    /// emit; plain text ends with end-of-sequence.
    #[test]
    fn each_question_kind_renders_as_its_source_did() {
        let tok = TextTokenizer::byte_level().unwrap();
        let steps = vec!["2+2 = 4".to_string(), "The answer is 4".to_string()];
        let task = encode(&tok, &"What is 2+2?".into(), &[], &steps).unwrap();
        assert_eq!(
            tok.decode(&task.tokens).unwrap(),
            format!("{}2+2 = 4\nThe answer is 4\n", step_prompt("What is 2+2?", &[]))
        );
        assert_eq!(task.step_ends.len(), 2);

        let convo = vec![Message::system("Be brief."), Message::user("What is 2+2?")];
        let reply = vec!["4, since 2+2 = 4.".to_string()];
        let chat = encode(&tok, &Question::Chat(convo.clone()), &[], &reply).unwrap();
        let prompt = tok.render_chat(&convo, true).unwrap();
        assert_eq!(tok.decode(&chat.tokens[..chat.prompt_len]).unwrap(), prompt);
        assert!(prompt.contains("Be brief.") && prompt.ends_with("<|im_start|>assistant\n"));
        let response = tok.decode(&chat.tokens[chat.prompt_len..]).unwrap();
        assert!(response.starts_with("4, since 2+2 = 4.<|im_end|>"), "{response:?}");
        assert!(chat.tokens[chat.prompt_len..].contains(&tok.eos));
        assert!(encode(&tok, &Question::Chat(convo), &[], &steps).is_err());

        let text = encode(&tok, &Question::Text("Q: 2+2? A:".into()), &[], &[" 4".into()]).unwrap();
        assert_eq!(text.tokens.last(), Some(&tok.eos));
        assert_eq!(tok.decode(&text.tokens[..text.prompt_len]).unwrap(), "Q: 2+2? A:");
    }
}
