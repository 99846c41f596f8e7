//! Finding and loading ONNX Runtime's shared library (`ort`'s
//! `load-dynamic`): nothing is linked at build time, so one binary runs with
//! the CPU wheel in CI and with the `onnxruntime-gpu` wheel on a GPU host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use super::EngineError;

/// The process-wide ONNX Runtime environment, created on first use.
static ENVIRONMENT: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();

/// The ONNX Runtime environment, loading the library on first call from
/// `library` (config), else `ORT_DYLIB_PATH`, else the project's `.venv`
/// (next to the working directory or the executable), else the system's
/// `libonnxruntime.so`. Later calls return the same environment whatever
/// they pass.
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = find_library(library);
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}. Run `make setup-run` (installs the \
                 onnxruntime wheel into .venv) or set ORT_DYLIB_PATH to libonnxruntime.so",
                path.display()
            )
        })?;
        let env = builder
            .with_name("cxr-triage")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime ({}): {e}", path.display()))?;
        tracing::info!(library = %path.display(), "ONNX Runtime loaded");
        Ok((env, path))
    });
    match result {
        Ok((env, _)) => Ok(env),
        Err(message) => Err(EngineError::Runtime(message.clone())),
    }
}

/// The library file in use, once [`environment`] has succeeded.
pub fn library_path() -> Option<&'static Path> {
    ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|(_, p)| p.as_path())
}

/// The Python `site-packages` folders where NVIDIA's runtime wheels may
/// sit beside ONNX Runtime: the one holding the ONNX Runtime library in use
/// (or the one that would be loaded), then the project's `.venv`. Other
/// libraries loaded at run time (nvImageCodec) are looked for there.
pub fn site_packages_candidates() -> Vec<PathBuf> {
    let library = library_path()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| find_library(None));
    // SITE/onnxruntime/capi/libonnxruntime.so.N
    let mut found: Vec<PathBuf> = library
        .ancestors()
        .nth(3)
        .filter(|p| p.join("onnxruntime").is_dir())
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    for root in roots {
        if let Some(site) = site_packages(&root.join(".venv")) {
            if !found.contains(&site) {
                found.push(site);
            }
        }
    }
    found
}

/// Where ONNX Runtime is looked for, in order.
fn find_library(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots
        .iter()
        .find_map(|root| venv_library(&root.join(".venv")))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

/// `VENV/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*`.
pub(crate) fn venv_library(venv: &Path) -> Option<PathBuf> {
    let capi = site_packages(venv)?.join("onnxruntime").join("capi");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// `VENV/lib/python3*/site-packages`.
pub(crate) fn site_packages(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .map(|p| p.join("site-packages"))
        .find(|p| p.is_dir())
}
