//! JSON Schema → a grammar of [`Node`]s: the subset of JSON Schema that structured output needs
//! (what OpenAI's strict mode accepts, plus bounds that a sampler can enforce).
//!
//! Supported: `type` (one or a list), `properties` / `required` / `additionalProperties`,
//! `items` / `minItems` / `maxItems`, `minLength` / `maxLength`, `enum`, `const`, `anyOf` /
//! `oneOf`, `$ref` into `$defs` / `definitions`, and `minimum` / `maximum` on integers when the
//! range holds at most [`MAX_LITERALS`] values (they become literals), else integer-valued
//! `minimum` / `maximum` on numbers (checked as the number is written; no exponent then).
//! Ignored, and checked only by whoever reads the answer: `pattern`, `format`, exclusive and
//! fractional bounds.
//!
//! Properties come in any order, each at most once; an object closes only when every required
//! one is written. Whitespace: none, except one optional space after `:` and `,` (free whitespace
//! lets a small model pad its answer with newlines until the token limit).
use serde_json::Value;
use std::collections::HashMap;

pub type NodeId = u32;

/// Literal alternatives per node; more become an `AnyOf` of literal groups.
pub const MAX_LITERALS: usize = 64;

/// Longest number the grammar accepts, in bytes (a model can otherwise write digits forever).
pub const MAX_NUMBER_BYTES: u32 = 24;

#[derive(Debug, Clone)]
pub struct Prop {
    /// The key as it is written: JSON-encoded, quotes included.
    pub key: Vec<u8>,
    pub node: NodeId,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub enum Node {
    /// Fixed properties; or, when `props` is empty and `extra` is set, any keys with values of
    /// `extra` (a map).
    Object { props: Vec<Prop>, extra: Option<NodeId> },
    Array { item: NodeId, min: u32, max: Option<u32> },
    /// A string of `min..=max` characters.
    Str { min: u32, max: Option<u32> },
    /// A number; integer `min` / `max` bounds when the schema gives them.
    Num { integer: bool, min: Option<i64>, max: Option<i64> },
    /// One of these serialized JSON values.
    Lit(Vec<Vec<u8>>),
    AnyOf(Vec<NodeId>),
}

/// A compiled schema: `nodes[root]` is the whole answer.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub nodes: Vec<Node>,
    pub root: NodeId,
}

struct Compiler<'a> {
    doc: &'a Value,
    nodes: Vec<Node>,
    refs: HashMap<String, NodeId>,
    any: Option<NodeId>,
}

fn err<T>(path: &str, msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("json_schema at `{}`: {msg}", if path.is_empty() { "#" } else { path }))
}

impl Grammar {
    /// Compiles `schema`; an unsupported construct is an error naming its place in the schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let mut c = Compiler {
            doc: schema,
            nodes: Vec::new(),
            refs: HashMap::new(),
            any: None,
        };
        let root = c.node(schema, "")?;
        Ok(Self { nodes: c.nodes, root })
    }

    /// `response_format` `json_object`: any JSON object.
    pub fn any_object() -> Self {
        Self::compile(&serde_json::json!({"type": "object"})).expect("a plain object compiles")
    }
}

impl Compiler<'_> {
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    /// Any JSON value (`{}` or `true` as a schema).
    fn any(&mut self) -> NodeId {
        if let Some(a) = self.any {
            return a;
        }
        let id = self.push(Node::AnyOf(Vec::new()));
        self.any = Some(id);
        let obj = self.push(Node::Object { props: Vec::new(), extra: Some(id) });
        let arr = self.push(Node::Array { item: id, min: 0, max: None });
        let s = self.push(Node::Str { min: 0, max: None });
        let num = self.push(Node::Num { integer: false, min: None, max: None });
        let lit = self.literals(&[b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]);
        self.nodes[id as usize] = Node::AnyOf(vec![obj, arr, s, num, lit]);
        id
    }

    fn literals(&mut self, values: &[Vec<u8>]) -> NodeId {
        if values.len() <= MAX_LITERALS {
            return self.push(Node::Lit(values.to_vec()));
        }
        let groups = values
            .chunks(MAX_LITERALS)
            .map(|c| self.push(Node::Lit(c.to_vec())))
            .collect();
        self.push(Node::AnyOf(groups))
    }

    fn node(&mut self, s: &Value, path: &str) -> Result<NodeId, String> {
        let obj = match s {
            Value::Bool(true) => return Ok(self.any()),
            Value::Object(o) => o,
            _ => return err(path, "a schema must be an object or `true`"),
        };
        if let Some(r) = obj.get("$ref") {
            let r = r.as_str().ok_or_else(|| format!("json_schema at `{path}`: `$ref` must be a string"))?;
            return self.reference(r, path);
        }
        if let Some(v) = obj.get("const") {
            return Ok(self.literals(&[serialize(v)]));
        }
        if let Some(e) = obj.get("enum") {
            let Some(vals) = e.as_array().filter(|a| !a.is_empty()) else {
                return err(path, "`enum` must be a non-empty list");
            };
            let lits: Vec<Vec<u8>> = vals.iter().map(serialize).collect();
            return Ok(self.literals(&lits));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(key) {
                let Some(alts) = alts.as_array().filter(|a| !a.is_empty()) else {
                    return err(path, format!("`{key}` must be a non-empty list"));
                };
                let ids = alts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.node(a, &format!("{path}/{key}/{i}")))
                    .collect::<Result<_, _>>()?;
                return Ok(self.push(Node::AnyOf(ids)));
            }
        }
        match obj.get("type") {
            None => {
                if obj.contains_key("properties") {
                    self.typed("object", obj, path)
                } else {
                    Ok(self.any())
                }
            }
            Some(Value::String(t)) => self.typed(t, obj, path),
            Some(Value::Array(ts)) => {
                let mut ids = Vec::new();
                for t in ts {
                    let Some(t) = t.as_str() else {
                        return err(path, "`type` lists must hold strings");
                    };
                    ids.push(self.typed(t, obj, path)?);
                }
                if ids.is_empty() {
                    return err(path, "`type` is an empty list");
                }
                Ok(self.push(Node::AnyOf(ids)))
            }
            Some(_) => err(path, "`type` must be a string or a list of strings"),
        }
    }

    fn reference(&mut self, r: &str, path: &str) -> Result<NodeId, String> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let Some(target) = r.strip_prefix('#').and_then(|p| {
            if p.is_empty() {
                Some(self.doc)
            } else {
                self.doc.pointer(p)
            }
        }) else {
            return err(path, format!("`$ref` {r:?} does not point into this schema"));
        };
        // A placeholder first, so recursive definitions refer to themselves.
        let id = self.push(Node::AnyOf(Vec::new()));
        self.refs.insert(r.to_string(), id);
        let inner = self.node(target, r.trim_start_matches('#'))?;
        self.nodes[id as usize] = Node::AnyOf(vec![inner]);
        Ok(id)
    }

    fn typed(
        &mut self,
        t: &str,
        obj: &serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, String> {
        let uint = |k: &str| -> Result<Option<u32>, String> {
            match obj.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| format!("json_schema at `{path}`: `{k}` must be a non-negative integer")),
            }
        };
        Ok(match t {
            "string" => {
                let (min, max) = (uint("minLength")?.unwrap_or(0), uint("maxLength")?);
                if max.is_some_and(|m| m < min) {
                    return err(path, "`maxLength` is below `minLength`");
                }
                self.push(Node::Str { min, max })
            }
            "integer" | "number" => {
                let integer = t == "integer";
                let (min, max) = (bound(obj, "minimum"), bound(obj, "maximum"));
                match (min, max) {
                    (Some(lo), Some(hi)) if hi < lo => return err(path, "`maximum` is below `minimum`"),
                    (Some(lo), Some(hi)) if integer && (hi - lo) < MAX_LITERALS as i64 => {
                        let lits: Vec<Vec<u8>> = (lo..=hi).map(|i| i.to_string().into_bytes()).collect();
                        self.literals(&lits)
                    }
                    _ => self.push(Node::Num { integer, min, max }),
                }
            }
            "boolean" => self.literals(&[b"true".to_vec(), b"false".to_vec()]),
            "null" => self.literals(&[b"null".to_vec()]),
            "array" => {
                let item = match obj.get("items") {
                    None => self.any(),
                    Some(i) => self.node(i, &format!("{path}/items"))?,
                };
                let (min, max) = (uint("minItems")?.unwrap_or(0), uint("maxItems")?);
                if max.is_some_and(|m| m < min) {
                    return err(path, "`maxItems` is below `minItems`");
                }
                self.push(Node::Array { item, min, max })
            }
            "object" => self.object(obj, path)?,
            other => return err(path, format!("unknown type {other:?}")),
        })
    }

    fn object(&mut self, obj: &serde_json::Map<String, Value>, path: &str) -> Result<NodeId, String> {
        let props = match obj.get("properties") {
            None => serde_json::Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return err(path, "`properties` must be an object"),
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => return err(path, "`required` must be a list of names"),
        };
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return err(path, format!("required property {missing:?} is not in `properties`"));
        }
        if props.is_empty() {
            let extra = match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Some(self.any()),
                Some(Value::Bool(false)) => None,
                Some(s) => Some(self.node(s, &format!("{path}/additionalProperties"))?),
            };
            return Ok(self.push(Node::Object { props: Vec::new(), extra }));
        }
        if props.len() > 64 {
            return err(path, "objects of more than 64 properties are not supported");
        }
        let mut order: Vec<&str> = required.clone();
        order.extend(props.keys().map(String::as_str).filter(|k| !required.contains(k)));
        let mut out = Vec::new();
        for k in order {
            let node = self.node(&props[k], &format!("{path}/properties/{k}"))?;
            out.push(Prop {
                key: serialize(&Value::String(k.to_string())),
                node,
                required: required.contains(&k),
            });
        }
        Ok(self.push(Node::Object { props: out, extra: None }))
    }
}

/// An integer-valued `minimum` / `maximum` (others are left to the reader of the answer).
fn bound(obj: &serde_json::Map<String, Value>, key: &str) -> Option<i64> {
    let v = obj.get(key)?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|x| x.fract() == 0.0 && x.abs() < 1e15)
            .map(|x| x as i64)
    })
}

fn serialize(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serializes")
}
