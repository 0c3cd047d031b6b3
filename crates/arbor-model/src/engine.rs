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
    /// Reads `prompts` into a new cache with room for `capacity` positions per row; returns it
    /// and each prompt's last-position logits.
    pub fn prefill(&self, prompts: &[Vec<u32>], capacity: usize) -> (BatchCache, Vec<Vec<f32>>) {
        match *self {
            Net::Native(m) => {
                let mut caches: Vec<SeqCache> =
                    prompts.iter().map(|_| SeqCache::new(&m.cfg)).collect();
                let feeds: Vec<Feed> = prompts
                    .iter()
                    .map(|p| Feed {
                        tokens: p,
                        all_logits: false,
                    })
                    .collect();
                let logits = m.step(&mut caches.iter_mut().collect::<Vec<_>>(), &feeds);
                (BatchCache::Native(caches), logits)
            }
            Net::Burn(m, cfg, device) => {
                let (padded, pads) = crate::host::left_pad(prompts);
                let mut cache = KvCache::new(cfg, prompts.len(), capacity, device);
                let step = Step {
                    tokens: &padded,
                    pads: &pads,
                    all_logits: false,
                };
                let logits = rows(m.forward(cfg, step, &mut cache, device));
                (BatchCache::Burn { cache, pads }, logits)
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

    /// One token per row; returns each row's next logits.
    pub fn decode(&self, cache: &mut BatchCache, next: &[u32]) -> Vec<Vec<f32>> {
        match (self, cache) {
            (Net::Native(m), BatchCache::Native(caches)) => {
                let feeds: Vec<Feed> = next
                    .iter()
                    .map(|t| Feed {
                        tokens: std::slice::from_ref(t),
                        all_logits: false,
                    })
                    .collect();
                m.step(&mut caches.iter_mut().collect::<Vec<_>>(), &feeds)
            }
            (Net::Burn(m, cfg, device), BatchCache::Burn { cache, pads }) => {
                let tokens: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
                let step = Step {
                    tokens: &tokens,
                    pads,
                    all_logits: false,
                };
                rows(m.forward(cfg, step, cache, device))
            }
            _ => unreachable!("a cache is only used with the network that made it"),
        }
    }
}

impl BatchCache {
    /// The cache of rows `rows` (in that order; a row may repeat: samples sharing a prompt).
    pub fn select_rows(self, rows: &[usize], device: &Device) -> Self {
        match self {
            BatchCache::Native(caches) => {
                BatchCache::Native(rows.iter().map(|&r| caches[r].clone()).collect())
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
