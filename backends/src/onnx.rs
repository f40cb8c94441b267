//! ONNX models through ONNX Runtime, loaded from a shared library at run time.
//!
//! ONNX Runtime allows one environment per process; it is created on first use from
//! [`LoadOptions::onnxruntime_lib`] or `ORT_DYLIB_PATH`. `Session::run` needs `&mut`,
//! so each instance owns one session behind a mutex (one instance = one session).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use parking_lot::Mutex;

use crate::error::BackendError;
use crate::spec::{FullSpec, Signature};
use crate::tensor::{DataType, Tensor, pod};
use crate::{Backend, BackendKind, Device, LoadOptions, resolve_artifact};

static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
/// The ONNX Runtime library the process loaded (set with `ORT_ENV`).
static ORT_LIB: OnceLock<PathBuf> = OnceLock::new();

/// Where libonnxruntime is looked for, in order, with what each place is: the node's
/// flag or `TROUPE_ONNXRUNTIME_LIB` (`lib`), `ORT_DYLIB_PATH`, the path recorded when
/// this binary was built, next to the executable, and a project `.venv` above it (as
/// `scripts/setup.sh` makes it).
pub fn runtime_candidates(lib: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    if let Some(p) = lib {
        return vec![(
            p.to_path_buf(),
            "--onnxruntime-lib / TROUPE_ONNXRUNTIME_LIB",
        )];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH"));
    }
    let built = env!("TROUPE_BUILD_ONNXRUNTIME");
    if !built.is_empty() {
        out.push((PathBuf::from(built), "recorded at build time"));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push((dir.join("libonnxruntime.so"), "next to the executable"));
        for up in dir.ancestors().take(4) {
            if let Ok(libs) = std::fs::read_dir(up.join(".venv/lib")) {
                for py in libs.flatten() {
                    let capi = py.path().join("site-packages/onnxruntime/capi");
                    if let Ok(files) = std::fs::read_dir(&capi) {
                        for f in files.flatten() {
                            let name = f.file_name().to_string_lossy().into_owned();
                            if name.starts_with("libonnxruntime.so") {
                                out.push((f.path(), "the project's .venv"));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Loads ONNX Runtime once per process, from the first of [`runtime_candidates`] that
/// exists. Later calls return the first outcome.
pub fn init_runtime(
    lib: Option<&Path>,
) -> Result<&'static ort::environment::Environment, BackendError> {
    let outcome = ORT_ENV.get_or_init(|| {
        let candidates = runtime_candidates(lib);
        let Some((path, _)) = candidates.iter().find(|(p, _)| p.is_file()) else {
            let tried = candidates
                .iter()
                .map(|(p, what)| format!("{} ({what})", p.display()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "no ONNX Runtime library found (tried: {}); run scripts/setup.sh, or pass \
                 --onnxruntime-lib / set TROUPE_ONNXRUNTIME_LIB to libonnxruntime.so",
                if tried.is_empty() { "nothing" } else { &tried }
            ));
        };
        let path = path.clone();
        let _ = ORT_LIB.set(path.clone());
        let builder = ort::init_from(&path)
            .map_err(|e| format!("cannot open ONNX Runtime library {}: {e}", path.display()))?;
        builder
            .with_name("troupe")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    });
    outcome
        .as_ref()
        .map_err(|e| BackendError::Library(e.clone()))
}

fn element_type(d: DataType) -> TensorElementType {
    match d {
        DataType::Bool => TensorElementType::Bool,
        DataType::U8 => TensorElementType::Uint8,
        DataType::U16 => TensorElementType::Uint16,
        DataType::U32 => TensorElementType::Uint32,
        DataType::U64 => TensorElementType::Uint64,
        DataType::I8 => TensorElementType::Int8,
        DataType::I16 => TensorElementType::Int16,
        DataType::I32 => TensorElementType::Int32,
        DataType::I64 => TensorElementType::Int64,
        DataType::F16 => TensorElementType::Float16,
        DataType::BF16 => TensorElementType::Bfloat16,
        DataType::F32 => TensorElementType::Float32,
        DataType::F64 => TensorElementType::Float64,
        DataType::Bytes => TensorElementType::String,
    }
}

fn from_element_type(t: TensorElementType) -> Option<DataType> {
    DataType::ALL.into_iter().find(|d| element_type(*d) == t)
}

fn open_session(path: &Path, opts: &LoadOptions) -> Result<(Session, PathBuf), BackendError> {
    let env = init_runtime(opts.onnxruntime_lib.as_deref())?;
    let file = resolve_artifact(BackendKind::Onnx, path)?;
    let load_err = |e: ort::Error| BackendError::Load(format!("{}: {e}", file.display()));
    let mut builder = Session::builder(env)
        .map_err(load_err)?
        .with_intra_threads(opts.threads.max(1))
        .map_err(|e| load_err(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| load_err(e.into()))?;
    if let Device::Cuda(i) = opts.device {
        builder = builder
            .with_execution_providers([cuda_provider(i)?])
            .map_err(|e| {
                let e: ort::Error = e.into();
                BackendError::Device(format!(
                    "cuda:{i}: ONNX Runtime's CUDA execution provider did not start: {e}"
                ))
            })?;
    }
    let session = builder.commit_from_file(&file).map_err(load_err)?;
    Ok((session, file))
}

/// The CUDA execution provider on GPU `index`, if the loaded ONNX Runtime library has it
/// (PyPI's `onnxruntime-gpu` does, `onnxruntime` does not); an error naming the library
/// otherwise. It must start: no silent fall-back to the CPU.
fn cuda_provider(index: usize) -> Result<ort::ep::ExecutionProviderDispatch, BackendError> {
    use ort::ep::ExecutionProvider;
    let lib = ORT_LIB
        .get()
        .map_or_else(|| "(none loaded)".to_string(), |p| p.display().to_string());
    match ort::ep::CUDA::is_available() {
        Ok(true) => Ok(ort::ep::CUDA::default()
            .with_device_id(index as i32)
            .build()
            .error_on_failure()),
        Ok(false) => Err(BackendError::Device(format!(
            "cuda:{index}: the ONNX Runtime library {lib} has no CUDA execution provider \
             (PyPI's onnxruntime-gpu has it; scripts/setup.sh --gpu installs it)"
        ))),
        Err(e) => Err(BackendError::Device(format!(
            "cuda:{index}: cannot ask the ONNX Runtime library {lib} for its providers: {e}"
        ))),
    }
}

/// Reads a model's inputs and outputs from the file (auto-complete): names, types and
/// dims as the exporter wrote them, dynamic dims as -1, symbolic names kept.
pub fn describe(path: &Path, opts: &LoadOptions) -> Result<Vec<FullSpec>, BackendError> {
    let (session, file) = open_session(path, opts)?;
    let one = |name: &str, vt: &ValueType, input: bool| -> Result<FullSpec, BackendError> {
        let (ty, shape, symbols) = match vt {
            ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } => (ty, shape, dimension_symbols),
            other => {
                return Err(BackendError::Load(format!(
                    "{}: '{name}' is a {other:?}, not a tensor: write a config.toml for this model",
                    file.display()
                )));
            }
        };
        let dtype = from_element_type(*ty).ok_or_else(|| {
            BackendError::Load(format!(
                "{}: '{name}' has element type {ty:?}, which Troupe does not serve",
                file.display()
            ))
        })?;
        Ok(FullSpec {
            name: name.to_string(),
            dtype,
            dims: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            input,
        })
    };
    let mut out = Vec::new();
    for o in session.inputs() {
        out.push(one(o.name(), o.dtype(), true)?);
    }
    for o in session.outputs() {
        out.push(one(o.name(), o.dtype(), false)?);
    }
    Ok(out)
}

/// One ONNX Runtime session.
pub struct OnnxBackend {
    session: Mutex<Session>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    /// Where the session runs (the CUDA execution provider on a GPU).
    device: Device,
}

impl OnnxBackend {
    pub fn load(path: &Path, sig: &Signature, opts: &LoadOptions) -> Result<Self, BackendError> {
        let (session, file) = open_session(path, opts)?;

        // The config must describe the model that is really in the file.
        for spec in &sig.inputs {
            let outlet = session
                .inputs()
                .iter()
                .find(|o| o.name() == spec.name)
                .ok_or_else(|| {
                    BackendError::Load(format!(
                        "config declares input '{}' but {} has inputs {:?}",
                        spec.name,
                        file.display(),
                        session
                            .inputs()
                            .iter()
                            .map(|o| o.name())
                            .collect::<Vec<_>>()
                    ))
                })?;
            check_outlet_type(outlet.dtype(), spec.dtype, &spec.name)?;
        }
        for spec in &sig.outputs {
            let outlet = session
                .outputs()
                .iter()
                .find(|o| o.name() == spec.name)
                .ok_or_else(|| {
                    BackendError::Load(format!(
                        "config declares output '{}' but {} has outputs {:?}",
                        spec.name,
                        file.display(),
                        session
                            .outputs()
                            .iter()
                            .map(|o| o.name())
                            .collect::<Vec<_>>()
                    ))
                })?;
            check_outlet_type(outlet.dtype(), spec.dtype, &spec.name)?;
        }
        if session.inputs().len() != sig.inputs.len() {
            return Err(BackendError::Load(format!(
                "{} has {} inputs but the config declares {}",
                file.display(),
                session.inputs().len(),
                sig.inputs.len()
            )));
        }
        Ok(Self {
            session: Mutex::new(session),
            input_names: sig.inputs.iter().map(|s| s.name.clone()).collect(),
            output_names: sig.outputs.iter().map(|s| s.name.clone()).collect(),
            device: opts.device,
        })
    }
}

fn check_outlet_type(vt: &ValueType, want: DataType, name: &str) -> Result<(), BackendError> {
    match vt.tensor_type() {
        Some(t) if t == element_type(want) => Ok(()),
        Some(t) => Err(BackendError::Load(format!(
            "tensor '{name}' is {t:?} in the model but {want} in the config"
        ))),
        None => Err(BackendError::Load(format!(
            "tensor '{name}' is not a tensor in the model"
        ))),
    }
}

/// A session input for `t`: a zero-copy view of its bytes when they are aligned for the
/// element type (the usual case for request buffers), else one copy.
fn to_input(t: &Tensor) -> Result<SessionInputValue<'_>, BackendError> {
    let shape: Vec<i64> = t.shape_i64();
    macro_rules! mk {
        ($ty:ty) => {
            match bytemuck::try_cast_slice::<u8, $ty>(&t.data) {
                Ok(view) => SessionInputValue::from(ort::value::TensorRef::<$ty>::from_array_view(
                    (shape, view),
                )?),
                Err(_) => SessionInputValue::from(
                    ort::value::Tensor::<$ty>::from_array((shape, pod::<$ty>(&t.data)))?.into_dyn(),
                ),
            }
        };
    }
    Ok(match t.dtype {
        DataType::Bool => SessionInputValue::from(
            ort::value::Tensor::<bool>::from_array((
                shape,
                t.data.iter().map(|&b| b != 0).collect::<Vec<_>>(),
            ))?
            .into_dyn(),
        ),
        DataType::U8 => mk!(u8),
        DataType::U16 => mk!(u16),
        DataType::U32 => mk!(u32),
        DataType::U64 => mk!(u64),
        DataType::I8 => mk!(i8),
        DataType::I16 => mk!(i16),
        DataType::I32 => mk!(i32),
        DataType::I64 => mk!(i64),
        DataType::F16 => mk!(half::f16),
        DataType::BF16 => mk!(half::bf16),
        DataType::F32 => mk!(f32),
        DataType::F64 => mk!(f64),
        DataType::Bytes => {
            let strings = t
                .bytes_elements()?
                .into_iter()
                .map(|e| {
                    std::str::from_utf8(e).map(str::to_owned).map_err(|_| {
                        BackendError::InvalidInput(
                            "ONNX string tensors hold UTF-8 text; an element is not UTF-8".into(),
                        )
                    })
                })
                .collect::<Result<Vec<String>, _>>()?;
            SessionInputValue::from(
                ort::value::Tensor::<String>::from_string_array((shape, strings.as_slice()))?
                    .into_dyn(),
            )
        }
    })
}

fn from_value(name: &str, v: &DynValue) -> Result<Tensor, BackendError> {
    let ty = v
        .dtype()
        .tensor_type()
        .and_then(from_element_type)
        .ok_or_else(|| {
            BackendError::OutputMismatch(format!("output '{name}' has an unsupported type"))
        })?;
    macro_rules! ex {
        ($ty:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$ty>()?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                Bytes::copy_from_slice(bytemuck::cast_slice(data)),
            )
        }};
    }
    let (shape, data) = match ty {
        DataType::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>()?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                Bytes::from(data.iter().map(|&b| b as u8).collect::<Vec<u8>>()),
            )
        }
        DataType::U8 => ex!(u8),
        DataType::U16 => ex!(u16),
        DataType::U32 => ex!(u32),
        DataType::U64 => ex!(u64),
        DataType::I8 => ex!(i8),
        DataType::I16 => ex!(i16),
        DataType::I32 => ex!(i32),
        DataType::I64 => ex!(i64),
        DataType::F16 => ex!(half::f16),
        DataType::BF16 => ex!(half::bf16),
        DataType::F32 => ex!(f32),
        DataType::F64 => ex!(f64),
        DataType::Bytes => {
            let (shape, strings) = v.try_extract_strings()?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                crate::tensor::encode_bytes(strings.iter().map(|s| s.as_bytes())),
            )
        }
    };
    Tensor::new(ty, shape, data)
}

impl Backend for OnnxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Onnx
    }

    fn device(&self) -> Device {
        self.device
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (name, t) in self.input_names.iter().zip(inputs) {
            values.push((name.as_str(), to_input(t)?));
        }
        let mut session = self.session.lock();
        let outputs = session.run(values)?;
        self.output_names
            .iter()
            .map(|name| {
                let v = outputs.get(name).ok_or_else(|| {
                    BackendError::OutputMismatch(format!("model did not produce output '{name}'"))
                })?;
                from_value(name, v)
            })
            .collect()
    }
}
