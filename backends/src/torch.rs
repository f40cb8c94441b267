//! TorchScript models through libtorch (`tch`).
//!
//! TorchScript has no input names: declared inputs are passed positionally, and the
//! module's result (a tensor, or a tuple/list of tensors) maps to declared outputs in order.

use std::path::Path;

use bytes::Bytes;
use tch::{CModule, IValue, Kind};

use crate::error::BackendError;
use crate::spec::Signature;
use crate::tensor::{DataType, Tensor};
use crate::{Backend, BackendKind, Device, LoadOptions, check_targets, resolve_artifact};

fn kind_of(d: DataType) -> Result<Kind, BackendError> {
    Ok(match d {
        DataType::Bool => Kind::Bool,
        DataType::U8 => Kind::Uint8,
        DataType::I8 => Kind::Int8,
        DataType::I16 => Kind::Int16,
        DataType::I32 => Kind::Int,
        DataType::I64 => Kind::Int64,
        DataType::F16 => Kind::Half,
        DataType::BF16 => Kind::BFloat16,
        DataType::F32 => Kind::Float,
        DataType::F64 => Kind::Double,
        DataType::U16 | DataType::U32 | DataType::U64 | DataType::Bytes => {
            return Err(BackendError::UnsupportedType(format!(
                "{d} is not supported by the torch backend{}",
                crate::bytes_hint(d)
            )));
        }
    })
}

fn dtype_of(k: Kind) -> Result<DataType, BackendError> {
    Ok(match k {
        Kind::Bool => DataType::Bool,
        Kind::Uint8 => DataType::U8,
        Kind::Int8 => DataType::I8,
        Kind::Int16 => DataType::I16,
        Kind::Int => DataType::I32,
        Kind::Int64 => DataType::I64,
        Kind::Half => DataType::F16,
        Kind::BFloat16 => DataType::BF16,
        Kind::Float => DataType::F32,
        Kind::Double => DataType::F64,
        other => {
            return Err(BackendError::OutputMismatch(format!(
                "torch produced unsupported kind {other:?}"
            )));
        }
    })
}

/// Loads `libtorch_cuda.so` once, as PyTorch's Python package does before first use: tch
/// links only `libtorch_cpu`, since nothing references the CUDA half, so the linker drops
/// it (tch-rs issue 980), and a CPU machine needs no CUDA library to start. Found by the
/// binary's run path (libtorch's `lib/`), `RTLD_GLOBAL` so that libtorch sees its CUDA
/// hooks. The outcome sticks.
fn load_libtorch_cuda() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: libtorch_cuda's initialisers only register CUDA with libtorch, which
            // this process has already loaded; the library stays loaded for good.
            let lib = unsafe { Library::open(Some("libtorch_cuda.so"), RTLD_NOW | RTLD_GLOBAL) }
                .map_err(|e| e.to_string())?;
            std::mem::forget(lib);
            Ok(())
        })
        .clone()
}

/// A TorchScript module on one device.
pub struct TorchBackend {
    module: CModule,
    device: tch::Device,
    out_device: Device,
}

impl TorchBackend {
    pub fn load(path: &Path, sig: &Signature, opts: &LoadOptions) -> Result<Self, BackendError> {
        let file = resolve_artifact(BackendKind::Torch, path)?;
        let device = match opts.device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => {
                load_libtorch_cuda().map_err(|e| {
                    BackendError::Device(format!(
                        "cuda:{i}: libtorch's CUDA library could not be loaded: {e} (the CUDA \
                         runtime wheels: scripts/setup.sh --gpu installs them)"
                    ))
                })?;
                if !tch::Cuda::is_available() {
                    return Err(BackendError::Device(format!(
                        "cuda:{i}: libtorch_cuda.so is loaded but CUDA finds no device: no \
                         NVIDIA driver (libcuda.so.1) or no GPU on this machine"
                    )));
                }
                tch::Device::Cuda(i)
            }
        };
        for s in sig.inputs.iter().chain(&sig.outputs) {
            kind_of(s.dtype)?;
        }
        let mut module = CModule::load_on_device(&file, device)
            .map_err(|e| BackendError::Load(format!("{}: {e}", file.display())))?;
        module
            .f_set_eval()
            .map_err(|e| BackendError::Load(format!("{}: {e}", file.display())))?;
        Ok(Self {
            module,
            device,
            out_device: opts.device,
        })
    }
}

/// A libtorch tensor over `t`'s bytes. On CPU with aligned bytes it borrows them (no
/// copy): the borrowed tensor lives only inside `infer`, whose outputs are copied out
/// before it returns. Otherwise the bytes are copied once.
fn to_torch(t: &Tensor, device: tch::Device) -> Result<tch::Tensor, BackendError> {
    let kind = kind_of(t.dtype)?;
    let shape = t.shape_i64();
    let elem = t.dtype.size().ok_or_else(|| {
        BackendError::UnsupportedType(format!("{} tensors cannot enter libtorch", t.dtype))
    })?;
    let aligned = (t.data.as_ptr() as usize).is_multiple_of(elem);
    if device == tch::Device::Cpu && aligned && !t.data.is_empty() && t.dtype != DataType::Bool {
        let mut strides = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1].max(1);
        }
        // SAFETY: `t.data` holds numel * element-size bytes (checked by `Tensor::new` and
        // the signature checks), is aligned for the element type, and outlives the
        // returned tensor, which is dropped before `infer` returns.
        return Ok(unsafe {
            tch::Tensor::f_from_blob(t.data.as_ptr(), &shape, &strides, kind, device)?
        });
    }
    let x = tch::Tensor::f_from_data_size(&t.data, &shape, kind)?;
    Ok(if device == tch::Device::Cpu {
        x
    } else {
        x.f_to_device(device)?
    })
}

fn from_torch(t: &tch::Tensor) -> Result<Tensor, BackendError> {
    let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let dtype = dtype_of(t.kind())?;
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let len = dtype
        .dense_len(&shape)
        .ok_or_else(|| BackendError::OutputMismatch(format!("torch output shape {shape:?}")))?;
    let mut buf = vec![0u8; len];
    t.f_copy_data_u8(&mut buf, numel)?;
    Tensor::new(dtype, shape, Bytes::from(buf))
}

fn collect(v: IValue, out: &mut Vec<tch::Tensor>) -> Result<(), BackendError> {
    match v {
        IValue::Tensor(t) => out.push(t),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            for i in items {
                collect(i, out)?;
            }
        }
        IValue::TensorList(ts) => out.extend(ts),
        other => {
            return Err(BackendError::OutputMismatch(format!(
                "TorchScript module returned {other:?}; expected tensors"
            )));
        }
    }
    Ok(())
}

impl Backend for TorchBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Torch
    }

    fn device(&self) -> Device {
        self.out_device
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        tch::no_grad(|| {
            let args = inputs
                .iter()
                .map(|t| to_torch(t, self.device).map(IValue::Tensor))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self.module.forward_is(&args)?;
            let mut tensors = Vec::new();
            collect(out, &mut tensors)?;
            tensors.iter().map(from_torch).collect()
        })
    }

    fn has_gradients(&self) -> bool {
        true
    }

    fn gradients(
        &self,
        inputs: &[Tensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        // Inputs are copied (never borrowed) so autograd owns them.
        let xs = inputs
            .iter()
            .map(|t| {
                let shape = t.shape_i64();
                let x = tch::Tensor::f_from_data_size(&t.data, &shape, kind_of(t.dtype)?)?
                    .f_to_device(self.device)?;
                Ok(if t.dtype.is_float() {
                    x.set_requires_grad(true)
                } else {
                    x
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let args: Vec<IValue> = xs
            .iter()
            .map(|x| IValue::Tensor(x.shallow_clone()))
            .collect();
        let out = self.module.forward_is(&args)?;
        let mut tensors = Vec::new();
        collect(out, &mut tensors)?;
        let y = tensors.get(output).ok_or_else(|| {
            BackendError::OutputMismatch(format!("the module returned no output {output}"))
        })?;
        let rows = y.size().first().copied().unwrap_or(1).max(1);
        let y = y.f_reshape([rows, -1])?.f_to_kind(Kind::Float)?;
        let features = y.size()[1] as usize;
        check_targets(rows as usize, features, targets)?;
        let idx =
            tch::Tensor::f_from_slice(&targets.iter().map(|&t| t as i64).collect::<Vec<_>>())?
                .f_to_device(self.device)?
                .f_unsqueeze(1)?;
        let picked = y.f_gather(1, &idx, false)?.f_sum(Kind::Float)?;
        picked.f_backward()?;
        xs.iter()
            .zip(inputs)
            .map(|(x, t)| {
                let g = x.grad();
                let g = if g.defined() {
                    g.f_to_kind(Kind::Float)?
                } else {
                    tch::Tensor::f_zeros(t.shape_i64(), (Kind::Float, tch::Device::Cpu))?
                };
                from_torch(&g)
            })
            .collect()
    }
}
