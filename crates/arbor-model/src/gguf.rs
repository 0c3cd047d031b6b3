//! A GGUF v3 reader: metadata, tensor directory, memory-mapped data (dequantized by `quant`).
//!
//! Every length and offset read from the file is checked before use, so a damaged or hostile
//! file gives a [`GgufError`], never a panic (the fuzz test in this module feeds it arbitrary
//! bytes). GGUF lists a tensor's dimensions fastest-first; [`TensorInfo::shape`] gives them in
//! the usual row-major order.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::quant::dequantize;
pub use crate::quant::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("truncated: {what} needs bytes up to {needed}, the file has {len}")]
    Truncated { what: String, needed: u64, len: u64 },
    #[error("{0}")]
    Malformed(String),
    #[error("tensor `{name}`: type {ty} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)")]
    UnsupportedType { name: String, ty: u32 },
    #[error("tensor `{0}` is not in the file")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {got:?}, expected {want:?}")]
    ShapeMismatch {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("metadata `{key}`: {msg}")]
    Metadata { key: String, msg: String },
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::U64(v) => v,
            Value::I8(v) => u64::try_from(v).ok()?,
            Value::I16(v) => u64::try_from(v).ok()?,
            Value::I32(v) => u64::try_from(v).ok()?,
            Value::I64(v) => u64::try_from(v).ok()?,
            _ => return None,
        })
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// As stored: fastest-varying first.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub start: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape (slowest first), e.g. `[out, in]` for a weight matrix.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An open GGUF file.
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: Storage,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let end = (self.at as u64)
            .checked_add(n)
            .filter(|&e| e <= self.b.len() as u64)
            .ok_or_else(|| GgufError::Truncated {
                what: what.to_string(),
                needed: self.at as u64 + n,
                len: self.b.len() as u64,
            })?;
        let s = &self.b[self.at..end as usize];
        self.at = end as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Malformed(format!("{what}: not UTF-8")))
    }
    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value, GgufError> {
        let fixed = |c: &mut Self, n| c.take(n, what);
        Ok(match ty {
            0 => Value::U8(fixed(self, 1)?[0]),
            1 => Value::I8(fixed(self, 1)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(fixed(self, 2)?.try_into().expect("2"))),
            3 => Value::I16(i16::from_le_bytes(fixed(self, 2)?.try_into().expect("2"))),
            4 => Value::U32(u32::from_le_bytes(fixed(self, 4)?.try_into().expect("4"))),
            5 => Value::I32(i32::from_le_bytes(fixed(self, 4)?.try_into().expect("4"))),
            6 => Value::F32(f32::from_le_bytes(fixed(self, 4)?.try_into().expect("4"))),
            7 => Value::Bool(fixed(self, 1)?[0] != 0),
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth > 4 {
                    return Err(GgufError::Malformed(format!(
                        "{what}: arrays nested too deep"
                    )));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: a count beyond the file is truncation.
                let left = (self.b.len() - self.at) as u64;
                if n > left {
                    return Err(GgufError::Truncated {
                        what: what.to_string(),
                        needed: self.at as u64 + n,
                        len: self.b.len() as u64,
                    });
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_le_bytes(fixed(self, 8)?.try_into().expect("8"))),
            other => {
                return Err(GgufError::Malformed(format!(
                    "{what}: unknown value type {other}"
                )))
            }
        })
    }
}

/// The parsed header of a GGUF image.
type Header = (u32, BTreeMap<String, Value>, Vec<TensorInfo>);

fn parse(b: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { b, at: 0 };
    let magic: [u8; 4] = c.take(4, "magic")?.try_into().expect("4 bytes");
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&format!("metadata key {i}"))?;
        let ty = c.u32(&format!("metadata `{key}` type"))?;
        let v = c.value(ty, &format!("metadata `{key}`"), 0)?;
        metadata.insert(key, v);
    }
    let alignment = match metadata.get("general.alignment") {
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two() && *a <= 1 << 20)
            .ok_or_else(|| GgufError::Metadata {
                key: "general.alignment".into(),
                msg: "must be a power of two".into(),
            })?,
        None => 32,
    };
    let mut raw = Vec::new();
    for i in 0..n_tensors {
        let name = c.string(&format!("tensor {i} name"))?;
        let n_dims = c.u32(&format!("tensor `{name}` rank"))?;
        if n_dims == 0 || n_dims > 4 {
            return Err(GgufError::Malformed(format!(
                "tensor `{name}`: rank {n_dims}"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| c.u64(&format!("tensor `{name}` dims")))
            .collect::<Result<Vec<_>, _>>()?;
        let ty_id = c.u32(&format!("tensor `{name}` type"))?;
        let offset = c.u64(&format!("tensor `{name}` offset"))?;
        raw.push((name, dims, ty_id, offset));
    }
    let data_start = (c.at as u64).div_ceil(alignment) * alignment;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ty_id, offset) in raw {
        let ty = GgmlType::from_id(ty_id).ok_or_else(|| GgufError::UnsupportedType {
            name: name.clone(),
            ty: ty_id,
        })?;
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| GgufError::Malformed(format!("tensor `{name}`: size overflows")))?;
        let (per, bytes) = ty.block();
        if n % per != 0 || dims[0] % per != 0 {
            return Err(GgufError::Malformed(format!(
                "tensor `{name}`: {n} elements is not a whole number of {per}-element blocks"
            )));
        }
        let n_bytes = (n / per)
            .checked_mul(bytes)
            .ok_or_else(|| GgufError::Malformed(format!("tensor `{name}`: size overflows")))?;
        let start = data_start
            .checked_add(offset)
            .ok_or_else(|| GgufError::Malformed(format!("tensor `{name}`: offset overflows")))?;
        let end = start
            .checked_add(n_bytes)
            .filter(|&e| e <= b.len() as u64)
            .ok_or_else(|| GgufError::Truncated {
                what: format!("tensor `{name}` data"),
                needed: start.saturating_add(n_bytes),
                len: b.len() as u64,
            })?;
        let _ = end;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            start,
            n_bytes,
        });
    }
    Ok((version, metadata, tensors))
}

impl Gguf {
    /// Opens and memory-maps `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |e| GgufError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; arbor never writes model files while they are open, and a
        // file changed underneath by someone else can give wrong numbers but not unsafety in
        // this reader, which bounds-checks every access against the map's length.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_storage(path.to_path_buf(), Storage::Mmap(mmap))
    }

    /// Reads a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_storage(PathBuf::from("<memory>"), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, data: Storage) -> Result<Self, GgufError> {
        let (version, metadata, tensors) = parse(&data)?;
        Ok(Self {
            path,
            version,
            metadata,
            tensors,
            data,
        })
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    pub fn meta(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            msg: "missing".into(),
        })
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.meta(key)?.as_u64().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            msg: "not an integer".into(),
        })
    }

    pub fn meta_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.meta(key)?.as_f64().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            msg: "not a number".into(),
        })
    }

    pub fn meta_str(&self, key: &str) -> Result<&str, GgufError> {
        self.meta(key)?.as_str().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            msg: "not a string".into(),
        })
    }

    /// A tensor as f32 in row-major order, checked against `want` (row-major) when given.
    pub fn dequantize(&self, name: &str, want: Option<&[usize]>) -> Result<Vec<f32>, GgufError> {
        let (t, bytes) = self.raw(name, want)?;
        Ok(dequantize(t.ty, bytes))
    }

    /// A tensor's stored blocks, its shape checked against `want` (row-major) when given.
    pub fn raw(
        &self,
        name: &str,
        want: Option<&[usize]>,
    ) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let t = self.tensor(name)?;
        if let Some(w) = want {
            if t.shape() != w {
                return Err(GgufError::ShapeMismatch {
                    name: name.into(),
                    got: t.shape(),
                    want: w.to_vec(),
                });
            }
        }
        Ok((
            t,
            &self.data[t.start as usize..(t.start + t.n_bytes) as usize],
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use half::{bf16, f16};
    use proptest::prelude::*;

    /// Builds a small valid GGUF image with the given tensors (name, dims, type id, data).
    pub fn build(
        meta: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, Vec<u64>, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((meta.len() as u64).to_le_bytes());
        let s = |b: &mut Vec<u8>, x: &str| {
            b.extend((x.len() as u64).to_le_bytes());
            b.extend(x.as_bytes());
        };
        for (k, ty, v) in meta {
            s(&mut b, k);
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in tensors {
            s(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for (_, _, _, data) in tensors {
            let mut d = data.clone();
            while d.len() % 32 != 0 {
                d.push(0);
            }
            b.extend(d);
        }
        b
    }

    fn q4_1_block(d: f32, m: f32, nibbles: &[u8; 32]) -> Vec<u8> {
        let mut b = f16::from_f32(d).to_le_bytes().to_vec();
        b.extend(f16::from_f32(m).to_le_bytes());
        for j in 0..16 {
            b.push(nibbles[j] | (nibbles[j + 16] << 4));
        }
        b
    }

    #[test]
    fn reads_metadata_and_dequantizes_each_type() {
        let mut nib = [0u8; 32];
        for (i, n) in nib.iter_mut().enumerate() {
            *n = (i % 16) as u8;
        }
        let q41 = q4_1_block(0.5, -1.0, &nib);
        let mut q80 = f16::from_f32(0.25).to_le_bytes().to_vec();
        q80.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let mut q40 = f16::from_f32(2.0).to_le_bytes().to_vec();
        q40.extend((0..16).map(|j| (j as u8) | ((15 - j as u8) << 4)));
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [0.5f32, 3.0]
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16s: Vec<u8> = [0.5f32, -4.0]
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        let mut name = 7u64.to_le_bytes().to_vec();
        name.extend(b"testing");
        let img = build(
            &[
                ("general.name", 8, name),
                ("x.count", 4, 5u32.to_le_bytes().to_vec()),
            ],
            &[
                ("q41", vec![32], 3, q41),
                ("q80", vec![32], 8, q80),
                ("q40", vec![32], 2, q40),
                ("f32", vec![2, 1], 0, f32s),
                ("f16", vec![2], 1, f16s),
                ("bf16", vec![2], 30, bf16s),
            ],
        );
        let g = Gguf::from_bytes(img).unwrap();
        assert_eq!(g.meta_str("general.name").unwrap(), "testing");
        assert_eq!(g.meta_u64("x.count").unwrap(), 5);
        let q = g.dequantize("q41", Some(&[32])).unwrap();
        assert_eq!(q[3], 3.0 * 0.5 - 1.0);
        assert_eq!(q[16], 0.0 * 0.5 - 1.0);
        assert_eq!(q[31], 15.0 * 0.5 - 1.0);
        let q = g.dequantize("q80", None).unwrap();
        assert_eq!((q[0], q[16], q[31]), (-4.0, 0.0, 3.75));
        let q = g.dequantize("q40", None).unwrap();
        assert_eq!((q[0], q[15], q[16], q[31]), (-16.0, 14.0, 14.0, -16.0));
        assert_eq!(g.dequantize("f32", Some(&[1, 2])).unwrap(), vec![1.5, -2.0]);
        assert_eq!(g.dequantize("f16", None).unwrap(), vec![0.5, 3.0]);
        assert_eq!(g.dequantize("bf16", None).unwrap(), vec![0.5, -4.0]);
        let e = g.dequantize("f32", Some(&[2, 1])).unwrap_err().to_string();
        assert_eq!(e, "tensor `f32` has shape [1, 2], expected [2, 1]");
        assert!(matches!(
            g.dequantize("nope", None),
            Err(GgufError::MissingTensor(_))
        ));
    }

    #[test]
    fn clear_errors() {
        assert!(matches!(
            Gguf::from_bytes(b"GGML\x03\0\0\0".to_vec()),
            Err(GgufError::BadMagic(_))
        ));
        let img = build(&[], &[("t", vec![32], 3, vec![0; 20])]);
        let e = Gguf::from_bytes(img[..img.len() - 16].to_vec()).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
        let q5k = build(&[], &[("t", vec![256], 13, vec![0; 176])]);
        assert_eq!(
            Gguf::from_bytes(q5k).unwrap_err().to_string(),
            "tensor `t`: type 13 is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)"
        );
        let mut v2 = build(&[], &[]);
        v2[4] = 9;
        assert!(matches!(Gguf::from_bytes(v2), Err(GgufError::Version(9))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Gguf::from_bytes(bytes);
        }

        #[test]
        fn corrupted_valid_files_never_panic(pos in 0usize..400, byte: u8, cut in 0usize..400) {
            let mut img = build(&[("a", 4, 1u32.to_le_bytes().to_vec())], &[("t", vec![32, 2], 3, vec![7; 40]), ("u", vec![4], 0, vec![1; 16])]);
            let p = pos % img.len();
            img[p] = byte;
            img.truncate(img.len() - cut.min(img.len()));
            if let Ok(g) = Gguf::from_bytes(img) {
                for t in g.tensors.clone() {
                    let _ = g.dequantize(&t.name, None);
                }
            }
        }
    }
}
