//! A byte-level recognizer of the JSON texts a [`Grammar`] allows: a pushdown automaton whose
//! stack is a `Vec<Frame>`. `anyOf` makes it nondeterministic, so a state is a set of stacks;
//! every other step is deterministic (a literal that is a prefix of another — `1` and `10` — only
//! ends when the next byte cannot continue it, and no JSON value continues with `,`, `]` or `}`).
use super::grammar::{Grammar, Node, NodeId, MAX_NUMBER_BYTES};

/// A map key is being written (the object's `extra` values follow).
const EXTRA: u8 = u8::MAX;
/// Exponent digits allowed: 1e99 times the longest mantissa is still a finite double.
const MAX_EXP_DIGITS: u8 = 2;

/// No `maxLength`.
pub const UNBOUNDED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjStage {
    /// After `{`: a key or `}`.
    Open,
    /// After `,`: a key (one space first while `space`).
    KeyNext { space: bool },
    /// After the key of property `.0` (or [`EXTRA`]): `:`.
    Colon(u8),
    /// After `:`: the value (one space first while `space`).
    Value { prop: u8, space: bool },
    /// After a value: `,` or `}`.
    AfterValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrStage {
    Open,
    ItemNext { space: bool },
    AfterItem,
}

/// Where in a number (JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumAt {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    EDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame {
    /// A value of this node comes next.
    Value(NodeId),
    Obj { node: NodeId, seen: u64, stage: ObjStage },
    /// Inside a property key; `alive`: the properties whose key still matches.
    Key { node: NodeId, pos: u16, alive: u64 },
    Arr { node: NodeId, count: u32, stage: ArrStage },
    /// Inside a string: characters still needed / still allowed; `esc` 1 after `\`, 2..=5 while
    /// `\u` hex digits remain (esc - 1 of them), 6 after `\uD` (no surrogates); `cont`: UTF-8 continuation bytes still due
    /// (tokens split characters, so a character may span tokens, but never ends malformed).
    Str { to_min: u32, to_max: u32, esc: u8, cont: u8 },
    /// A number; with bounds, its sign, integer part (saturating) and whether a non-zero
    /// fraction digit came (without bounds those stay zero, so that states repeat); `exp`:
    /// exponent digits so far (at most [`MAX_EXP_DIGITS`], so the value fits a double).
    Num { node: NodeId, at: NumAt, len: u8, neg: bool, int: i64, frac: bool, exp: u8 },
    Lit { node: NodeId, pos: u16, alive: u64 },
}

pub type Stack = Vec<Frame>;

fn set_top(st: &mut Stack, f: Frame) {
    *st.last_mut().expect("a frame to replace") = f;
}

fn bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

fn num_next(at: NumAt, b: u8, integer: bool) -> Option<NumAt> {
    use NumAt::*;
    Some(match (at, b) {
        (Minus, b'0') => Zero,
        (Minus, b'1'..=b'9') => Int,
        (Int, b'0'..=b'9') => Int,
        (Zero | Int, b'.') if !integer => Dot,
        (Zero | Int | Frac, b'e' | b'E') if !integer => E,
        (Dot | Frac, b'0'..=b'9') => Frac,
        (E, b'+' | b'-') => ESign,
        (E | ESign | EDigits, b'0'..=b'9') => EDigits,
        _ => return None,
    })
}

fn num_complete(at: NumAt) -> bool {
    matches!(at, NumAt::Zero | NumAt::Int | NumAt::Frac | NumAt::EDigits)
}

/// A complete number within the node's bounds. With integer bounds, a non-zero fraction puts
/// the value strictly between `int` and `int + 1`, so `int + 0.5` compares exactly.
fn num_in_bounds(f: Frame, g: &Grammar) -> bool {
    let Frame::Num { node, at, neg, int, frac, .. } = f else { return false };
    let Node::Num { min, max, .. } = g.nodes[node as usize] else { return false };
    if !num_complete(at) {
        return false;
    }
    let mag = int as f64 + if frac { 0.5 } else { 0.0 };
    let v = if neg { -mag } else { mag };
    min.is_none_or(|m| v >= m as f64) && max.is_none_or(|m| v <= m as f64)
}

fn lit_alive(cands: &[Vec<u8>], alive: u64, pos: usize, b: u8) -> u64 {
    let mut out = 0;
    for (i, c) in cands.iter().enumerate() {
        if alive & (1 << i) != 0 && c.get(pos) == Some(&b) {
            out |= 1 << i;
        }
    }
    out
}

fn lit_ends(cands: &[Vec<u8>], alive: u64, pos: usize) -> bool {
    cands
        .iter()
        .enumerate()
        .any(|(i, c)| alive & (1 << i) != 0 && c.len() == pos)
}

/// The stacks that `st` becomes after byte `b`, pushed onto `out` (none: `b` is not allowed).
pub fn feed(g: &Grammar, mut st: Stack, b: u8, out: &mut Vec<Stack>) {
    loop {
        let Some(&top) = st.last() else { return };
        match top {
            Frame::Value(id) => {
                let next = match &g.nodes[id as usize] {
                    Node::AnyOf(alts) => {
                        st.pop();
                        for &a in alts {
                            let mut alt = st.clone();
                            alt.push(Frame::Value(a));
                            feed(g, alt, b, out);
                        }
                        return;
                    }
                    Node::Object { .. } if b == b'{' => Frame::Obj { node: id, seen: 0, stage: ObjStage::Open },
                    Node::Array { .. } if b == b'[' => Frame::Arr { node: id, count: 0, stage: ArrStage::Open },
                    Node::Str { min, max } if b == b'"' => Frame::Str {
                        to_min: *min,
                        to_max: max.unwrap_or(UNBOUNDED),
                        esc: 0,
                        cont: 0,
                    },
                    Node::Num { min, max, .. } => {
                        let bounded = min.is_some() || max.is_some();
                        let (at, int) = match b {
                            b'-' if min.is_none_or(|m| m < 0) => (NumAt::Minus, 0),
                            b'0' => (NumAt::Zero, 0),
                            b'1'..=b'9' if bounded => (NumAt::Int, i64::from(b - b'0')),
                            b'1'..=b'9' => (NumAt::Int, 0),
                            _ => return,
                        };
                        let f = Frame::Num { node: id, at, len: 1, neg: b == b'-', int, frac: false, exp: 0 };
                        if !num_prefix_ok(f, g) {
                            return;
                        }
                        f
                    }
                    Node::Lit(c) => {
                        let alive = lit_alive(c, bits(c.len()), 0, b);
                        if alive == 0 {
                            return;
                        }
                        Frame::Lit { node: id, pos: 1, alive }
                    }
                    _ => return,
                };
                set_top(&mut st, next);
                out.push(st);
                return;
            }
            Frame::Obj { node, seen, stage } => {
                let Node::Object { props, extra } = &g.nodes[node as usize] else {
                    unreachable!("Obj frames are objects")
                };
                let unseen = bits(props.len()) & !seen;
                let done = props
                    .iter()
                    .enumerate()
                    .all(|(i, p)| !p.required || seen & (1 << i) != 0);
                let with = |stage| Frame::Obj { node, seen, stage };
                match stage {
                    ObjStage::Open | ObjStage::KeyNext { .. } => {
                        if stage == (ObjStage::KeyNext { space: true }) && b == b' ' {
                            set_top(&mut st, with(ObjStage::KeyNext { space: false }));
                        } else if stage == ObjStage::Open && b == b'}' && done {
                            st.pop();
                        } else if b == b'"' && extra.is_some() {
                            set_top(&mut st, with(ObjStage::Colon(EXTRA)));
                            st.push(Frame::Str { to_min: 0, to_max: UNBOUNDED, esc: 0, cont: 0 });
                        } else if b == b'"' && unseen != 0 {
                            st.push(Frame::Key { node, pos: 1, alive: unseen });
                        } else {
                            return;
                        }
                    }
                    ObjStage::Colon(prop) if b == b':' => {
                        set_top(&mut st, with(ObjStage::Value { prop, space: true }));
                    }
                    ObjStage::Colon(_) => return,
                    ObjStage::Value { prop, space } => {
                        if space && b == b' ' {
                            set_top(&mut st, with(ObjStage::Value { prop, space: false }));
                        } else {
                            let child = match (prop, extra) {
                                (EXTRA, Some(e)) => *e,
                                _ => props[prop as usize].node,
                            };
                            set_top(&mut st, with(ObjStage::AfterValue));
                            st.push(Frame::Value(child));
                            continue;
                        }
                    }
                    ObjStage::AfterValue => {
                        if b == b',' && (extra.is_some() || unseen != 0) {
                            set_top(&mut st, with(ObjStage::KeyNext { space: true }));
                        } else if b == b'}' && done {
                            st.pop();
                        } else {
                            return;
                        }
                    }
                }
                out.push(st);
                return;
            }
            Frame::Key { node, pos, alive } => {
                let Node::Object { props, .. } = &g.nodes[node as usize] else {
                    unreachable!("Key frames belong to objects")
                };
                let mut next = 0u64;
                for (i, p) in props.iter().enumerate() {
                    if alive & (1 << i) != 0 && p.key.get(pos as usize) == Some(&b) {
                        next |= 1 << i;
                    }
                }
                if next == 0 {
                    return;
                }
                let pos = pos + 1;
                // Keys end with a quote, so a finished key is the only one still alive.
                let finished = next.trailing_zeros() as usize;
                if next.count_ones() == 1 && props[finished].key.len() == pos as usize {
                    st.pop();
                    let Some(Frame::Obj { seen, .. }) = st.last().copied() else {
                        unreachable!("a Key frame sits on its object")
                    };
                    set_top(
                        &mut st,
                        Frame::Obj {
                            node,
                            seen: seen | (1 << finished),
                            stage: ObjStage::Colon(finished as u8),
                        },
                    );
                } else {
                    set_top(&mut st, Frame::Key { node, pos, alive: next });
                }
                out.push(st);
                return;
            }
            Frame::Arr { node, count, stage } => {
                let Node::Array { item, min, max } = g.nodes[node as usize] else {
                    unreachable!("Arr frames are arrays")
                };
                let room = max.is_none_or(|m| count < m);
                match stage {
                    ArrStage::Open if b == b']' && min == 0 => {
                        st.pop();
                    }
                    ArrStage::ItemNext { space: true } if b == b' ' => {
                        set_top(&mut st, Frame::Arr { node, count, stage: ArrStage::ItemNext { space: false } });
                    }
                    ArrStage::Open | ArrStage::ItemNext { .. } if room => {
                        set_top(&mut st, Frame::Arr { node, count: count + 1, stage: ArrStage::AfterItem });
                        st.push(Frame::Value(item));
                        continue;
                    }
                    ArrStage::AfterItem if b == b',' && room => {
                        set_top(&mut st, Frame::Arr { node, count, stage: ArrStage::ItemNext { space: true } });
                    }
                    ArrStage::AfterItem if b == b']' && count >= min => {
                        st.pop();
                    }
                    _ => return,
                }
                out.push(st);
                return;
            }
            Frame::Str { to_min, to_max, esc, cont } => {
                // A character counts at its first byte (an escape at its backslash).
                let count = |to_max: u32| if to_max == UNBOUNDED { to_max } else { to_max - 1 };
                let str = |to_min, to_max, esc, cont| Some(Frame::Str { to_min, to_max, esc, cont });
                let next = match (esc, b) {
                    (_, 0x80..=0xbf) if cont > 0 && continues(cont, b) => {
                        str(to_min, to_max, esc, (cont & 0xf) - 1)
                    }
                    _ if cont > 0 => return,
                    (0, b'"') if to_min == 0 => None,
                    (0, b'"') | (0, 0..=0x1f) | (0, 0x80..=0xc1) | (0, 0xf5..=0xff) => return,
                    (0, _) if to_max == 0 => return,
                    (0, lead @ 0xc2..=0xf4) => {
                        // Low nibble: bytes due; high: the narrower range of the next one, where
                        // UTF-8 forbids overlong forms, surrogates and code points past U+10FFFF.
                        let cont = match lead {
                            0xe0 => 0x12,
                            0xed => 0x22,
                            0xf0 => 0x33,
                            0xf4 => 0x43,
                            0xc2..=0xdf => 1,
                            0xe1..=0xef => 2,
                            _ => 3,
                        };
                        str(to_min.saturating_sub(1), count(to_max), 0, cont)
                    }
                    (0, b'\\') => str(to_min.saturating_sub(1), count(to_max), 1, 0),
                    (0, _) => str(to_min.saturating_sub(1), count(to_max), 0, 0),
                    (1, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => str(to_min, to_max, 0, 0),
                    (1, b'u') => str(to_min, to_max, 5, 0),
                    // No surrogate escapes (\uD800-\uDFFF): a lone one does not parse, and
                    // characters beyond the BMP can be written as UTF-8.
                    (5, b'd' | b'D') => str(to_min, to_max, 6, 0),
                    (6, b'0'..=b'7') => str(to_min, to_max, 3, 0),
                    (2..=5, h) if h.is_ascii_hexdigit() => {
                        str(to_min, to_max, if esc == 2 { 0 } else { esc - 1 }, 0)
                    }
                    _ => return,
                };
                match next {
                    Some(f) => set_top(&mut st, f),
                    None => {
                        st.pop();
                    }
                }
                out.push(st);
                return;
            }
            Frame::Num { node, at, len, neg, int, frac, exp } => {
                let Node::Num { integer, min, max } = g.nodes[node as usize] else {
                    unreachable!("Num frames are numbers")
                };
                let bounded = min.is_some() || max.is_some();
                match num_next(at, b, integer) {
                    // Bounds are checked on plain decimals only.
                    Some(NumAt::E) if bounded => return,
                    Some(NumAt::EDigits) if exp >= MAX_EXP_DIGITS => return,
                    Some(next) if u32::from(len) < MAX_NUMBER_BYTES => {
                        let digit = i64::from(b.wrapping_sub(b'0'));
                        let (int, frac) = match next {
                            NumAt::Int if bounded => (int.saturating_mul(10).saturating_add(digit), frac),
                            NumAt::Frac if bounded => (int, frac || digit != 0),
                            _ => (int, frac),
                        };
                        let exp = exp + u8::from(next == NumAt::EDigits);
                        let f = Frame::Num { node, at: next, len: len + 1, neg, int, frac, exp };
                        if !num_prefix_ok(f, g) {
                            return;
                        }
                        set_top(&mut st, f);
                        out.push(st);
                        return;
                    }
                    Some(_) => return,
                    // The number ended; `b` belongs to what holds it.
                    None if num_complete(at) && (!bounded || num_in_bounds(top, g)) => {
                        st.pop();
                        continue;
                    }
                    None => return,
                }
            }
            Frame::Lit { node, pos, alive } => {
                let Node::Lit(c) = &g.nodes[node as usize] else {
                    unreachable!("Lit frames are literals")
                };
                let next = lit_alive(c, alive, pos as usize, b);
                if next != 0 {
                    set_top(&mut st, Frame::Lit { node, pos: pos + 1, alive: next });
                    out.push(st);
                    return;
                }
                if lit_ends(c, alive, pos as usize) {
                    st.pop();
                    continue;
                }
                return;
            }
        }
    }
}

/// `b` may follow in a UTF-8 sequence with `cont` (see the lead byte's case in [`feed`]).
fn continues(cont: u8, b: u8) -> bool {
    match cont >> 4 {
        1 => (0xa0..=0xbf).contains(&b),
        2 => (0x80..=0x9f).contains(&b),
        3 => (0x90..=0xbf).contains(&b),
        4 => (0x80..=0x8f).contains(&b),
        _ => true,
    }
}

/// The answer may end here: what is open is a number or literal that is complete at top level.
pub fn can_end(g: &Grammar, st: &Stack) -> bool {
    let mut depth = st.len();
    while depth > 0 {
        match st[depth - 1] {
            f @ Frame::Num { .. } if num_in_bounds(f, g) => {}
            Frame::Lit { node, pos, alive } => match &g.nodes[node as usize] {
                Node::Lit(c) if lit_ends(c, alive, pos as usize) => {}
                _ => return false,
            },
            _ => return false,
        }
        depth -= 1;
    }
    true
}

/// Every stack of `states` after byte `b`, duplicates dropped.
pub fn advance(g: &Grammar, states: &[Stack], b: u8) -> Vec<Stack> {
    let mut out = Vec::with_capacity(states.len());
    for s in states {
        feed(g, s.clone(), b, &mut out);
    }
    if out.len() > 1 {
        let mut uniq: Vec<Stack> = Vec::with_capacity(out.len());
        for s in out {
            if !uniq.contains(&s) {
                uniq.push(s);
            }
        }
        return uniq;
    }
    out
}

/// A number prefix that some continuation can still bring within the bounds, so the mask never
/// leads into a number that cannot end. More integer digits only move it away from zero; once
/// the integer part is fixed (`0`, or a `.` came) the value stays within `int..int + 1` in
/// magnitude, above `int` once a non-zero fraction digit came.
fn num_prefix_ok(f: Frame, g: &Grammar) -> bool {
    let Frame::Num { node, at, neg, int, frac, .. } = f else { return false };
    let Node::Num { min, max, .. } = g.nodes[node as usize] else { return false };
    let fixed = matches!(at, NumAt::Zero | NumAt::Dot | NumAt::Frac);
    // The bound the number grows away from, and the one it must reach, seen as magnitudes.
    let (away, reach) = if neg {
        (min.map(|m| -m), max.map(|m| -m))
    } else {
        (max, min)
    };
    let beyond = away.is_some_and(|a| int > a || (int == a && frac));
    let short = fixed && reach.is_some_and(|r| int < r);
    !(beyond || short)
}
