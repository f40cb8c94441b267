//! Records where the native libraries were at build time, so the binaries find them
//! afterwards without environment variables (see `docs/ARCHITECTURE.md`, "Native libraries"):
//! * libtorch's lib directory goes into the rpath (libtorch_cpu.so is linked);
//! * the path of libonnxruntime (opened at run time) becomes `TROUPE_BUILD_ONNXRUNTIME`,
//!   one of the places `onnx::init_runtime` looks.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&dir).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    let ort = std::env::var("ORT_DYLIB_PATH")
        .ok()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=TROUPE_BUILD_ONNXRUNTIME={ort}");
}
