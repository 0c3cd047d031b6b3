//! Which network generates, and the KV cache of a batch on it: the native quantized decoder
//! (CPU; per-sequence caches) or the burn network (any device, f32; one left-padded cache).
use burn::tensor::{Device, Tensor};

use crate::llama::{KvCache, Llama, LlamaConfig, Step};
use crate::native::{Feed, NativeLlama, SeqCache};

/// The network that generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The file's quantized blocks with SIMD kernels on the CPU (the default on the CPU).
    Native,
    /// The f32 burn network on the model's device: the reference, and the path of GPU devices.
    Burn,
}

/// A batch's KV cache: row b is the b-th sequence being generated.
pub(crate) enum BatchCache {
    Native(Vec<SeqCache>),
    Burn { cache: KvCache, pads: Vec<usize> },
}

/// The network plus what a step needs, borrowed from the model.
pub(crate) enum Net<'a> {
    Native(&'a NativeLlama),
    Burn(&'a Llama, &'a LlamaConfig, &'a Device),
}

impl Net<'_> {
    /// One forward pass: each of the cache's rows reads its next token (`tokens`, in row order)
    /// and each of `prompts` is read into a new row appended after them, from the stored prefix
    /// it starts with when it has one (native only). Returns the logits of every row, old rows
    /// first. `capacity` sizes a burn cache (positions per row); the burn network reads new
    /// prompts only into an empty batch.
    pub fn forward(
        &self,
        cache: &mut Option<BatchCache>,
        tokens: &[u32],
        prompts: Vec<NewRow<'_>>,
        capacity: usize,
    ) -> Vec<Vec<f32>> {
        match *self {
            Net::Native(m) => {
                let caches = match cache.get_or_insert_with(|| BatchCache::Native(Vec::new())) {
                    BatchCache::Native(c) => c,
                    BatchCache::Burn { .. } => {
                        unreachable!("a cache is only used with the network that made it")
                    }
                };
                assert_eq!(caches.len(), tokens.len(), "one token per row");
                let mut rest = Vec::with_capacity(prompts.len());
                for p in prompts {
                    let start = p.start.unwrap_or_else(|| SeqCache::new(&m.cfg));
                    rest.push(&p.tokens[start.len..]);
                    caches.push(start);
                }
                let feeds: Vec<Feed> = tokens
                    .iter()
                    .map(std::slice::from_ref)
                    .chain(rest)
                    .map(|tokens| Feed {
                        tokens,
                        all_logits: false,
                    })
                    .collect();
                m.step(&mut caches.iter_mut().collect::<Vec<_>>(), &feeds)
            }
            Net::Burn(m, cfg, device) => {
                if !prompts.is_empty() {
                    assert!(
                        tokens.is_empty(),
                        "the burn network reads prompts into an empty batch"
                    );
                    assert!(
                        prompts.iter().all(|p| p.start.is_none()),
                        "no stored prefixes on burn"
                    );
                    let prompts: Vec<&[u32]> = prompts.iter().map(|p| p.tokens).collect();
                    let (padded, pads) = crate::host::left_pad(&prompts);
                    let mut kv = KvCache::new(cfg, prompts.len(), capacity, device);
                    let step = Step {
                        tokens: &padded,
                        pads: &pads,
                        all_logits: false,
                    };
                    let logits = rows(m.forward(cfg, step, &mut kv, device));
                    *cache = Some(BatchCache::Burn { cache: kv, pads });
                    return logits;
                }
                let Some(BatchCache::Burn { cache, pads }) = cache else {
                    unreachable!("a cache is only used with the network that made it")
                };
                let tokens: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
                let step = Step {
                    tokens: &tokens,
                    pads,
                    all_logits: false,
                };
                rows(m.forward(cfg, step, cache, device))
            }
        }
    }

    /// Logits at every position of one sequence (no cache kept).
    pub fn all_positions(&self, ids: &[u32]) -> Vec<Vec<f32>> {
        match *self {
            Net::Native(m) => {
                let mut cache = SeqCache::new(&m.cfg);
                let feed = Feed {
                    tokens: ids,
                    all_logits: true,
                };
                m.step(&mut [&mut cache], &[feed])
            }
            Net::Burn(m, cfg, device) => {
                let mut cache = KvCache::new(cfg, 1, ids.len(), device);
                let step = Step {
                    tokens: &[ids.to_vec()],
                    pads: &[0],
                    all_logits: true,
                };
                rows(m.forward(cfg, step, &mut cache, device))
            }
        }
    }
}

/// A prompt joining the batch: its tokens, and the cache of a stored prefix of them.
pub(crate) struct NewRow<'a> {
    pub tokens: &'a [u32],
    pub start: Option<SeqCache>,
}

impl BatchCache {
    /// Row `i`'s cache on the native engine.
    pub fn native_row(&self, i: usize) -> Option<&SeqCache> {
        match self {
            BatchCache::Native(c) => c.get(i),
            BatchCache::Burn { .. } => None,
        }
    }

    /// The cache of rows `rows` (ascending; a row may repeat: samples sharing a prompt).
    pub fn select_rows(self, rows: &[usize], device: &Device) -> Self {
        match self {
            BatchCache::Native(caches) => {
                // Move each row's cache; copy only where a row repeats.
                let mut caches: Vec<Option<SeqCache>> = caches.into_iter().map(Some).collect();
                let picked = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| {
                        if rows.get(i + 1) == Some(&r) {
                            caches[r].clone().expect("rows ascend")
                        } else {
                            caches[r].take().expect("rows ascend")
                        }
                    })
                    .collect();
                BatchCache::Native(picked)
            }
            BatchCache::Burn { cache, pads } => BatchCache::Burn {
                cache: cache.select_rows(rows, device),
                pads: rows.iter().map(|&r| pads[r]).collect(),
            },
        }
    }
}

/// Logits `[batch, positions, vocab]` as one vector per row and position.
fn rows(logits: Tensor<3>) -> Vec<Vec<f32>> {
    let [b, t, v] = logits.dims();
    let flat = crate::host::to_f32(logits);
    (0..b * t)
        .map(|i| flat[i * v..(i + 1) * v].to_vec())
        .collect()
}
