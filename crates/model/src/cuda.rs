//! Making the CUDA execution provider find CUDA and cuDNN when they come
//! from NVIDIA's PyPI wheels (the extras of `onnxruntime-gpu`) rather than a
//! system install: their libraries sit under `site-packages/nvidia/*/lib`,
//! which the dynamic loader does not search. Preloading them by full path
//! lets the provider's own `dlopen` by soname find them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Sonames the CUDA provider needs, dependencies first.
const LIBRARIES: &[&str] = &[
    "libcudart.so",
    "libcublasLt.so",
    "libcublas.so",
    "libnvrtc.so",
    "libcurand.so",
    "libcufft.so",
    "libnvJitLink.so",
    "libcudnn_graph.so",
    "libcudnn_engines_precompiled.so",
    "libcudnn_engines_runtime_compiled.so",
    "libcudnn_heuristic.so",
    "libcudnn_ops.so",
    "libcudnn_cnn.so",
    "libcudnn_adv.so",
    "libcudnn.so",
];

static PRELOADED: OnceLock<usize> = OnceLock::new();

/// Preloads CUDA/cuDNN from the NVIDIA wheels next to the loaded ONNX
/// Runtime, once. Failures are only logged: registering the provider is the
/// test of whether CUDA works, and its error is what gets reported.
pub fn preload_wheel_libraries() {
    PRELOADED.get_or_init(|| {
        let Some(site) = super::runtime::library_path().and_then(|p| p.ancestors().nth(3)) else {
            return 0;
        };
        let dirs = wheel_library_dirs(&site.join("nvidia"));
        let mut loaded = 0;
        for soname in LIBRARIES {
            for dir in &dirs {
                let Some(file) = versioned(dir, soname) else {
                    continue;
                };
                match ort::util::preload_dylib(&file) {
                    Ok(()) => loaded += 1,
                    Err(e) => tracing::debug!(file = %file.display(), error = %e, "preload failed"),
                }
            }
        }
        if loaded > 0 {
            tracing::info!(
                libraries = loaded,
                "preloaded CUDA/cuDNN from NVIDIA wheels"
            );
        }
        loaded
    });
}

/// `nvidia/*/lib` (and one level deeper, e.g. `nvidia/cu13/lib`).
fn wheel_library_dirs(nvidia: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let Ok(entries) = std::fs::read_dir(nvidia) else {
        return dirs;
    };
    let mut packages: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    packages.sort();
    for package in packages {
        let lib = package.join("lib");
        if lib.is_dir() {
            dirs.push(lib);
        }
    }
    dirs
}

/// `dir/soname.N` (the versioned file the wheels ship), if present.
fn versioned(dir: &Path, soname: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n == soname || n.strip_prefix(soname).is_some_and(|v| v.starts_with('.'))
            })
        })
        .collect();
    found.sort();
    found.into_iter().next()
}
