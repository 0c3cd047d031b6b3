//! Mixed precision for training: the matrix products in bf16 or f16, everything else in f32.
//! This is PyTorch autocast's policy — products (projections, attention, the output layer) in
//! the low type; norms, softmax, losses and the optimizer in f32 — with f32 master weights: a
//! weight is cast at each use, so its gradient comes back through the cast as f32. bf16 keeps
//! f32's exponent range and needs no loss scaling; f16 does (`arbor-train`'s `LossScaler`).
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    fn low(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(FloatDType::BF16),
            Self::F16 => Some(FloatDType::F16),
        }
    }

    /// `a · b`, computed in this precision and returned in f32.
    pub fn matmul<const D: usize>(self, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
        match self.low() {
            None => a.matmul(b),
            Some(t) => a.cast(t).matmul(b.cast(t)).cast(FloatDType::F32),
        }
    }
}

/// The names of `--precision` are the config file's (serde's), so they are spelled once.
impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use serde::de::IntoDeserializer;
        let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            s.into_deserializer();
        Self::deserialize(d).map_err(|e| format!("precision: {e}"))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => unreachable!("a unit variant serializes as its name"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;
    use burn::tensor::{Device, Tensor, TensorData};

    /// The product is rounded as the low type rounds, and comes back as f32.
    #[test]
    fn products_round_in_the_low_type() {
        let d = Device::flex();
        // 1 + 2^-10 is exact in f32 and f16, not in bf16 (8 bits of mantissa).
        let a = || Tensor::<2>::from_data(TensorData::new(vec![1.0f32 + 1.0 / 1024.0], [1, 1]), &d);
        let b = || Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &d);
        let at = |p: Precision| crate::host::to_f32(p.matmul(a(), b()))[0];
        assert_eq!(at(Precision::F32), 1.0 + 1.0 / 1024.0);
        assert_eq!(at(Precision::F16), 1.0 + 1.0 / 1024.0);
        assert_eq!(at(Precision::Bf16), 1.0);
        assert_eq!(
            Precision::F16.matmul(a(), b()).dtype(),
            burn::tensor::DType::F32
        );
        assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
        assert_eq!(Precision::Bf16.to_string(), "bf16");
        assert!("fp8".parse::<Precision>().unwrap_err().contains("`f16`"));
    }
}
