//! `ndarray` conversions (feature `ndarray`, on by default): inputs from arrays of any
//! dimension, outputs as `ArrayD`.

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use crate::{ClientError, Element, InferResult, InputTensor};

impl InputTensor {
    /// An input from an array of any shape (copied in row-major order, whatever the
    /// array's memory layout).
    ///
    /// ```
    /// use troupe_client::InputTensor;
    /// let x = ndarray::Array2::<f32>::zeros((2, 16));
    /// let t = InputTensor::from_array("input", &x);
    /// assert_eq!(t.shape, vec![2, 16]);
    /// assert_eq!(t.datatype, "FP32");
    /// ```
    pub fn from_array<T, S, D>(name: &str, a: &ArrayBase<S, D>) -> Self
    where
        T: Element,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let shape = a.shape().iter().map(|&d| d as i64).collect();
        match a.as_slice() {
            Some(s) => Self::from_slice(name, shape, s),
            None => {
                let v: Vec<T> = a.iter().copied().collect();
                Self::from_slice(name, shape, &v)
            }
        }
    }
}

impl InferResult {
    /// An output as an array of its shape (its datatype must be `T`'s).
    pub fn array<T: Element>(&self, name: &str) -> Result<ArrayD<T>, ClientError> {
        let values = self.values::<T>(name)?;
        let o = self.output(name)?;
        let shape: Vec<usize> = o
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| ClientError::Decode(format!("output '{name}' has shape {:?}", o.shape)))?;
        ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| {
            ClientError::Decode(format!(
                "output '{name}': shape {:?} does not fit its values: {e}",
                o.shape
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::one_output;
    use bytes::Bytes;
    use troupe_proto::DataType;

    #[test]
    fn arrays_round_trip_in_row_major_order() {
        let a = ndarray::arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        // A transposed view is not contiguous in row-major order: it is copied in order.
        let t = InputTensor::from_array("x", &a.t());
        assert_eq!(t.shape, vec![3, 2]);
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&t.data);
        assert_eq!(got, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let data = Bytes::copy_from_slice(bytemuck::cast_slice(a.as_slice().unwrap()));
        let r = one_output("y", DataType::F32, vec![2, 3], data);
        let back = r.array::<f32>("y").unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back, a.into_dyn());
        assert!(r.array::<i64>("y").is_err(), "datatype is checked");
    }
}
