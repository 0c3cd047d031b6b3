//! Between host vectors and tensors: left padding of token rows, and reading a tensor's values
//! back (every reader converts, since a backend may keep another float type).
use burn::tensor::Tensor;

/// Rows left-padded with 0 to the longest; returns the rows and each row's pad length.
pub fn left_pad<S: AsRef<[u32]>>(rows: &[S]) -> (Vec<Vec<u32>>, Vec<usize>) {
    let len = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let pads: Vec<usize> = rows.iter().map(|r| len - r.as_ref().len()).collect();
    let padded = rows
        .iter()
        .map(|r| {
            std::iter::repeat_n(0u32, len - r.as_ref().len())
                .chain(r.as_ref().iter().copied())
                .collect()
        })
        .collect();
    (padded, pads)
}

/// The tensor's values as f32, row-major.
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// The tensor's values as f64, row-major.
pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .expect("converted to f64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_pad_aligns_rows_on_the_right() {
        let (rows, pads) = left_pad(&[vec![5u32, 6], vec![7], vec![]]);
        assert_eq!(rows, vec![vec![5, 6], vec![0, 7], vec![0, 0]]);
        assert_eq!(pads, vec![0, 1, 2]);
    }
}
