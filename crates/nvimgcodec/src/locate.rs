//! Where the shared libraries are looked for, in the order documented on
//! [`crate::NvImageCodec::load`].
//!
//! The PyPI wheels lay a site-packages directory out as
//!
//! ```text
//! site-packages/nvidia/nvimgcodec/libnvimgcodec.so.0
//! site-packages/nvidia/nvimgcodec/extensions/libnvjpeg2k_ext.so.0.9.0, …
//! site-packages/nvidia/nvjpeg2k/lib/libnvjpeg2k.so.0
//! ```
//!
//! and the extensions' RUNPATH (`$ORIGIN/../../nvjpeg2k/lib`) finds
//! nvJPEG2000 from there; preloading it ([`nvjpeg2k`]) also covers other
//! layouts, since a later `dlopen("libnvjpeg2k.so.0")` by the extension
//! matches the already-loaded soname.

use std::ffi::{c_void, CStr};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::{Component, Error};

/// The environment variable naming the nvImageCodec library file.
pub const ENV_LIBRARY: &str = "CXR_NVIMGCODEC";
/// The library's soname (0.x releases).
pub(crate) const SONAME: &str = "libnvimgcodec.so.0";
/// nvJPEG2000's soname, the one `libnvjpeg2k_ext` opens.
const NVJPEG2K_SONAME: &str = "libnvjpeg2k.so.0";

/// A loaded library that is never unloaded (unloading a C++ library with
/// CUDA state and worker threads mid-process is not safe), and the file it
/// was loaded from.
pub(crate) struct Loaded {
    pub lib: ManuallyDrop<Library>,
    pub file: PathBuf,
}

/// Finds and loads nvImageCodec: `explicit` alone when given; otherwise
/// `$CXR_NVIMGCODEC` alone when set; otherwise each site-packages directory
/// in `search`, then the soname through the system loader.
pub(crate) fn nvimgcodec(explicit: Option<&Path>, search: &[PathBuf]) -> Result<Loaded, Error> {
    let env = std::env::var_os(ENV_LIBRARY).filter(|v| !v.is_empty());
    let only = explicit
        .map(Path::to_path_buf)
        .or_else(|| env.map(PathBuf::from));
    if let Some(file) = only {
        if !file.is_file() {
            return Err(not_found(
                Component::NvImageCodec,
                vec![file.display().to_string()],
            ));
        }
        return open_file(&file, Component::NvImageCodec);
    }
    let mut tried = Vec::new();
    for dir in search {
        let file = dir.join("nvidia").join("nvimgcodec").join(SONAME);
        if file.is_file() {
            return open_file(&file, Component::NvImageCodec);
        }
        tried.push(file.display().to_string());
    }
    // SAFETY: loading nvImageCodec runs only its own static initialisers.
    match unsafe { Library::new(SONAME) } {
        Ok(lib) => {
            let file = loaded_path(&lib, "nvimgcodecGetProperties")
                .unwrap_or_else(|| PathBuf::from(SONAME));
            Ok(Loaded {
                lib: ManuallyDrop::new(lib),
                file,
            })
        }
        Err(e) => {
            tried.push(format!("{SONAME} (system loader: {})", loader_error(&e)));
            Err(not_found(Component::NvImageCodec, tried))
        }
    }
}

/// Finds and loads nvJPEG2000: beside the nvImageCodec wheel
/// (`<nvimgcodec dir>/../nvjpeg2k/lib`), then in each site-packages
/// directory, then by soname.
pub(crate) fn nvjpeg2k(nvimgcodec_dir: &Path, search: &[PathBuf]) -> Result<Loaded, Error> {
    let mut candidates = vec![nvimgcodec_dir.join("../nvjpeg2k/lib").join(NVJPEG2K_SONAME)];
    candidates.extend(
        search
            .iter()
            .map(|dir| dir.join("nvidia/nvjpeg2k/lib").join(NVJPEG2K_SONAME)),
    );
    let mut tried = Vec::new();
    for file in candidates {
        if file.is_file() {
            return open_file(&file, Component::NvJpeg2k);
        }
        tried.push(file.display().to_string());
    }
    // SAFETY: as for nvImageCodec.
    match unsafe { Library::new(NVJPEG2K_SONAME) } {
        Ok(lib) => Ok(Loaded {
            lib: ManuallyDrop::new(lib),
            file: PathBuf::from(NVJPEG2K_SONAME),
        }),
        Err(e) => {
            tried.push(format!(
                "{NVJPEG2K_SONAME} (system loader: {})",
                loader_error(&e)
            ));
            Err(not_found(Component::NvJpeg2k, tried))
        }
    }
}

/// The extension modules' directory for a library loaded from `file`.
pub(crate) fn extensions_dir(file: &Path) -> Result<PathBuf, Error> {
    let dir = file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("extensions");
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(not_found(
            Component::Extensions,
            vec![dir.display().to_string()],
        ))
    }
}

fn open_file(file: &Path, component: Component) -> Result<Loaded, Error> {
    // SAFETY: as for the soname loads above; the path was checked to exist.
    match unsafe { Library::new(file) } {
        Ok(lib) => Ok(Loaded {
            lib: ManuallyDrop::new(lib),
            // the real file, so that a symlinked library still finds the
            // extensions installed beside it
            file: std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()),
        }),
        Err(e) => Err(Error::Load {
            component,
            path: file.to_path_buf(),
            reason: loader_error(&e),
        }),
    }
}

/// The loader's whole message: libloading puts `dlerror()`'s text (which
/// names the missing file or dependency) in the error's source.
pub(crate) fn loader_error(e: &libloading::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn not_found(component: Component, tried: Vec<String>) -> Error {
    Error::NotFound { component, tried }
}

/// The file the dynamic loader mapped `lib` from, found through one of its
/// symbols (`dladdr`), so a library found by soname still tells where its
/// `extensions/` directory is.
fn loaded_path(lib: &Library, symbol: &str) -> Option<PathBuf> {
    // SAFETY: the symbol is only used as an address, never called.
    let addr: *const c_void = unsafe { lib.get::<*const c_void>(symbol.as_bytes()) }
        .ok()
        .map(|s| *s)?;
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the address and fills `info`.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is the loader's NUL-terminated name of the object.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}
