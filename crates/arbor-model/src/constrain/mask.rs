//! Allowed tokens per matcher state: the vocabulary as a byte trie, walked with the state set
//! (a prefix that no stack accepts prunes its whole subtree), and a cache of the resulting masks
//! keyed by the state, so a state met again — every character inside a long string — costs a
//! hash lookup instead of a walk.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::grammar::Grammar;
use super::matcher::{advance, can_end, Frame, Stack, UNBOUNDED};

#[derive(Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    /// Tokens whose bytes end here.
    tokens: Vec<u32>,
}

/// The vocabulary's byte strings as a trie.
pub struct TokenTrie {
    nodes: Vec<TrieNode>,
    vocab: usize,
    /// The longest token, in bytes: how far one token can reach into a string's length bounds.
    longest: u32,
    /// Each token's bytes (`None`: a control token, never allowed by a grammar).
    bytes: Vec<Option<Vec<u8>>>,
}

impl TokenTrie {
    pub fn new(bytes: Vec<Option<Vec<u8>>>) -> Self {
        let mut nodes = vec![TrieNode::default()];
        let mut longest = 0;
        for (id, b) in bytes.iter().enumerate() {
            let Some(b) = b.as_ref().filter(|b| !b.is_empty()) else {
                continue;
            };
            longest = longest.max(b.len() as u32);
            let mut at = 0usize;
            for &byte in b {
                at = match nodes[at].children.iter().find(|c| c.0 == byte) {
                    Some(&(_, child)) => child as usize,
                    None => {
                        nodes.push(TrieNode::default());
                        let child = nodes.len() - 1;
                        nodes[at].children.push((byte, child as u32));
                        child
                    }
                };
            }
            nodes[at].tokens.push(id as u32);
        }
        Self {
            nodes,
            vocab: bytes.len(),
            longest,
            bytes,
        }
    }

    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize)?.as_deref()
    }
}

/// A bitset over the vocabulary.
pub type Mask = Arc<Vec<u64>>;

pub fn allows(mask: &[u64], id: u32) -> bool {
    mask.get(id as usize / 64)
        .is_some_and(|w| w & (1 << (id % 64)) != 0)
}

/// Masks kept per schema before the cache starts over (each is vocab / 8 bytes: 6 KiB here).
const CACHE_CAP: usize = 4096;

/// A schema compiled against a vocabulary: the allowed tokens at each point of an answer.
pub struct JsonConstraint {
    grammar: Grammar,
    trie: Arc<TokenTrie>,
    eos: u32,
    cache: Mutex<HashMap<Vec<Stack>, Mask>>,
}

/// One answer's position in the grammar.
#[derive(Debug, Clone)]
pub struct Cursor {
    states: Vec<Stack>,
}

impl JsonConstraint {
    pub fn new(grammar: Grammar, trie: Arc<TokenTrie>, eos: u32) -> Self {
        Self {
            grammar,
            trie,
            eos,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn start(&self) -> Cursor {
        Cursor {
            states: vec![vec![Frame::Value(self.grammar.root)]],
        }
    }

    /// The tokens allowed next; end of sequence only once the answer is complete.
    pub fn allowed(&self, c: &Cursor) -> Mask {
        let key = self.key(&c.states);
        if let Some(m) = self.cache.lock().expect("mask cache").get(&key) {
            return m.clone();
        }
        let mut mask = vec![0u64; self.trie.vocab.div_ceil(64)];
        self.walk(0, &c.states, &mut mask);
        if c.states.iter().any(|s| can_end(&self.grammar, s)) {
            mask[self.eos as usize / 64] |= 1 << (self.eos % 64);
        }
        let mask = Arc::new(mask);
        let mut cache = self.cache.lock().expect("mask cache");
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, mask.clone());
        mask
    }

    /// Moves `c` past token `id`; false if the grammar does not allow it (the cursor is then
    /// dead and allows nothing but the end).
    pub fn advance(&self, c: &mut Cursor, id: u32) -> bool {
        let Some(bytes) = self.trie.token_bytes(id) else {
            c.states.clear();
            return false;
        };
        for &b in bytes {
            c.states = advance(&self.grammar, &c.states, b);
        }
        !c.states.is_empty()
    }

    /// Bytes that complete the answer from `c` (at most 512), if some do.
    pub fn closing(&self, c: &Cursor) -> Option<Vec<u8>> {
        super::closing::closing(&self.grammar, &c.states, 512)
    }

    /// The cache key: string bounds further away than the longest token cannot bind within one
    /// token, so they are clamped there (a 800-character rationale is then a handful of states,
    /// not 800).
    fn key(&self, states: &[Stack]) -> Vec<Stack> {
        let l = self.trie.longest;
        states
            .iter()
            .map(|s| {
                s.iter()
                    .map(|f| match *f {
                        Frame::Str { to_min, to_max, esc, cont } => Frame::Str {
                            to_min: to_min.min(l),
                            to_max: if to_max == UNBOUNDED { to_max } else { to_max.min(l) },
                            esc,
                            cont,
                        },
                        other => other,
                    })
                    .collect()
            })
            .collect()
    }

    fn walk(&self, node: usize, states: &[Stack], mask: &mut [u64]) {
        for &(b, child) in &self.trie.nodes[node].children {
            let next = advance(&self.grammar, states, b);
            if next.is_empty() {
                continue;
            }
            for &t in &self.trie.nodes[child as usize].tokens {
                mask[t as usize / 64] |= 1 << (t % 64);
            }
            self.walk(child as usize, &next, mask);
        }
    }
}
