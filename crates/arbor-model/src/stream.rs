//! One sample's tokens as text deltas for streaming. Text is held back while it ends in an
//! incomplete UTF-8 character (byte-level tokens split characters) or in what may be the start
//! of a stop string (which must never reach the client), so the deltas add up to exactly the
//! final text.
use arbor_llm::TokenLogprob;

use crate::tokenizer::TextTokenizer;

pub struct TextStream {
    ids: Vec<u32>,
    /// Bytes of text sent so far.
    sent: usize,
    stops: Vec<String>,
    /// Log-probs of tokens whose text is not sent yet.
    pending: Vec<TokenLogprob>,
    stopped: bool,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            ids: Vec::new(),
            sent: 0,
            stops,
            pending: Vec::new(),
            stopped: false,
        }
    }

    /// Takes one token; returns the text that can be sent now, if any.
    pub fn push(
        &mut self,
        tok: &TextTokenizer,
        id: u32,
        logprob: Option<TokenLogprob>,
    ) -> Option<(String, Vec<TokenLogprob>)> {
        if self.stopped {
            return None;
        }
        self.ids.push(id);
        self.pending.extend(logprob);
        let text = tok.decode(&self.ids).ok()?;
        let end = match self.stops.iter().filter_map(|s| text.find(s.as_str())).min() {
            Some(cut) => {
                self.stopped = true;
                cut
            }
            None => {
                let whole = text.strip_suffix('\u{FFFD}').unwrap_or(&text);
                whole.len() - self.stop_prefix_len(whole)
            }
        };
        self.take(&text, end)
    }

    /// The rest of `final_text` (what the completion returns) once the sample is done.
    pub fn finish(&mut self, final_text: &str) -> Option<(String, Vec<TokenLogprob>)> {
        self.take(final_text, final_text.len())
    }

    fn take(&mut self, text: &str, end: usize) -> Option<(String, Vec<TokenLogprob>)> {
        let piece = text.get(self.sent..end).filter(|p| !p.is_empty())?;
        self.sent = end;
        Some((piece.to_string(), std::mem::take(&mut self.pending)))
    }

    /// The longest end of `text` that begins some stop string.
    fn stop_prefix_len(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
            .filter(|p| text.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: a stop string leaked in pieces, a split character sent as U+FFFD, deltas that do
    /// not add up to the final text.
    #[test]
    fn deltas_hold_back_stop_prefixes_and_split_characters() {
        let tok = TextTokenizer::byte_level().unwrap();
        let text = "héllo END there";
        let ids = tok.encode(text, false).unwrap();
        let mut s = TextStream::new(vec!["END".into()]);
        let mut got = String::new();
        for id in ids {
            if let Some((d, _)) = s.push(&tok, id, None) {
                assert!(!d.contains('\u{FFFD}') && !d.contains('E'), "{d:?}");
                got.push_str(&d);
            }
        }
        if let Some((d, _)) = s.finish("héllo ") {
            got.push_str(&d);
        }
        assert_eq!(got, "héllo ");
    }
}
