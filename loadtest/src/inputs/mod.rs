//! What each request carries: random tensors in the model's declared shapes, or the
//! tensors of a JSON input file.

mod file;
mod generate;
mod random;
mod shape;
mod workload;

pub use file::InputFile;
pub use generate::{DataType, Generate};
pub use workload::{ModelWorkload, Workload};
