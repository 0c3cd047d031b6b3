//! The shortest way out: bytes that complete an answer from where it stands, so that generation
//! can close the JSON when `max_tokens` is about to run out (an answer cut mid-string would not
//! parse). A greedy walk: at each byte, the allowed byte whose state is nearest to an end by
//! [`distance`], a lower bound on the bytes still needed.
use super::grammar::{Grammar, Node, NodeId};
use super::matcher::{advance, can_end, Frame, ObjStage, Stack, ArrStage};

/// Stand-in for "no finite answer found" in the distance sums.
const FAR: usize = 1 << 20;

/// The fewest bytes a value of `id` takes (`seen` guards recursive definitions).
fn min_len(g: &Grammar, id: NodeId, seen: &mut Vec<NodeId>) -> usize {
    if seen.contains(&id) {
        return FAR;
    }
    seen.push(id);
    let n = match &g.nodes[id as usize] {
        Node::Object { props, .. } => {
            2 + props
                .iter()
                .filter(|p| p.required)
                .map(|p| p.key.len() + 2 + min_len(g, p.node, seen))
                .sum::<usize>()
        }
        Node::Array { item, min, .. } => 2 + *min as usize * (min_len(g, *item, seen) + 1),
        Node::Str { min, .. } => 2 + *min as usize,
        Node::Num { .. } => 1,
        Node::Lit(c) => c.iter().map(Vec::len).min().unwrap_or(FAR),
        Node::AnyOf(alts) => alts.iter().map(|&a| min_len(g, a, seen)).min().unwrap_or(FAR),
    };
    seen.pop();
    n.min(FAR)
}

/// Bytes still needed to end from `st` (a lower bound; 0 where it can end).
pub fn distance(g: &Grammar, st: &Stack) -> usize {
    if can_end(g, st) {
        return 0;
    }
    let ml = |id| min_len(g, id, &mut Vec::new());
    st.iter()
        .map(|f| match *f {
            Frame::Value(id) => ml(id),
            Frame::Str { to_min, esc, cont, .. } => {
                let esc_left = match esc {
                    0 => 0,
                    1 => 1,
                    6 => 3,
                    e => e as usize - 1,
                };
                (cont & 0xf) as usize + esc_left + to_min as usize + 1
            }
            Frame::Num { .. } => 1,
            Frame::Lit { node, pos, alive } => match &g.nodes[node as usize] {
                Node::Lit(c) => c
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| alive & (1 << i) != 0)
                    .map(|(_, c)| c.len().saturating_sub(pos as usize))
                    .min()
                    .unwrap_or(FAR),
                _ => FAR,
            },
            Frame::Key { node, pos, alive } => match &g.nodes[node as usize] {
                Node::Object { props, .. } => props
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| alive & (1 << i) != 0)
                    .map(|(_, p)| p.key.len().saturating_sub(pos as usize) + 1 + ml(p.node))
                    .min()
                    .unwrap_or(FAR),
                _ => FAR,
            },
            Frame::Obj { node, seen, stage } => match &g.nodes[node as usize] {
                Node::Object { props, extra } => {
                    let missing: usize = props
                        .iter()
                        .enumerate()
                        .filter(|(i, p)| p.required && seen & (1 << i) == 0)
                        .map(|(_, p)| p.key.len() + 2 + ml(p.node))
                        .sum();
                    let value = |prop: u8| match (prop, extra) {
                        (u8::MAX, Some(e)) => ml(*e),
                        _ => props.get(prop as usize).map_or(FAR, |p| ml(p.node)),
                    };
                    1 + missing
                        + match stage {
                            ObjStage::Colon(p) => 1 + value(p),
                            ObjStage::Value { prop, .. } => value(prop),
                            _ => 0,
                        }
                }
                _ => FAR,
            },
            Frame::Arr { node, count, stage } => match &g.nodes[node as usize] {
                Node::Array { item, min, .. } => {
                    let open = matches!(stage, ArrStage::ItemNext { .. }) as usize;
                    1 + open * ml(*item)
                        + (*min as usize).saturating_sub(count as usize) * (ml(*item) + 1)
                }
                _ => FAR,
            },
        })
        .fold(0usize, |a, b| a.saturating_add(b))
}

/// Bytes that take `states` to an end (at most `limit` of them), or `None`.
pub fn closing(g: &Grammar, states: &[Stack], limit: usize) -> Option<Vec<u8>> {
    // Closers first, so ties go to the byte that ends something.
    let order: Vec<u8> = b"\"}]0 a,:".iter().copied().chain(0x20..0x7f).chain(0x80..0xc0).collect();
    let mut cur = states.to_vec();
    let mut out = Vec::new();
    for _ in 0..limit {
        if cur.iter().any(|s| can_end(g, s)) {
            return Some(out);
        }
        let best = order
            .iter()
            .filter_map(|&b| {
                let next = advance(g, &cur, b);
                let d = next.iter().map(|s| distance(g, s)).min()?;
                Some((d, b, next))
            })
            .min_by_key(|x| x.0)?;
        out.push(best.1);
        cur = best.2;
    }
    None
}
