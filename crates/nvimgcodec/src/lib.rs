//! # cxr-nvimgcodec: JPEG 2000 / HTJ2K decoding on the GPU
//!
//! A thin, safe wrapper over NVIDIA nvImageCodec's C API, for decoding
//! batches of greyscale JPEG 2000 and HTJ2K codestreams with nvJPEG2000 on a
//! CUDA device. Nothing is linked at build time: the library is found and
//! loaded when [`NvImageCodec::load`] is called, so this crate builds, and
//! its tests pass, on a machine without the library or a GPU.
//!
//! **In:** codestreams in host memory (the bytes of a DICOM JPEG 2000 / HTJ2K
//! fragment; anything nvImageCodec parses is accepted, JPEG included), one
//! batch at a time.
//!
//! **Out:** per input, in order, either the decoded samples exactly as
//! stored ([`Decoded`]: no scaling, no colour conversion, 8- and 16-bit
//! widened to `u16`, signed samples as their two's-complement bits) or an
//! [`Error`] saying why that one image failed. One bad image never fails its
//! batch-mates, and nothing here panics on bad input.
//!
//! ```no_run
//! use cxr_nvimgcodec::{Kind, NvImageCodec};
//! let site_packages = vec!["/opt/venv/lib/python3.12/site-packages".into()];
//! let codec = NvImageCodec::load(None, &site_packages, Kind::Gpu)?;
//! let stream: &[u8] = &[]; // a JPEG 2000 codestream
//! for result in codec.decode_batch(&[stream], 40_000_000) {
//!     match result {
//!         Ok(image) => println!("{}x{} at {} bits", image.width, image.height, image.precision),
//!         Err(why) => println!("not decoded: {why}"),
//!     }
//! }
//! # Ok::<(), cxr_nvimgcodec::Error>(())
//! ```
//!
//! ## What must be installed
//!
//! | piece | from | found at |
//! | --- | --- | --- |
//! | `libnvimgcodec.so.0` | wheel `nvidia-nvimgcodec-cu13` | see [`NvImageCodec::load`] |
//! | `extensions/` (`libnvjpeg2k_ext.so.0.9.0`, `libjpeg_turbo_ext…`) | same wheel | beside the library, always |
//! | `libnvjpeg2k.so.0` ([`Kind::Gpu`]) | wheel `nvidia-nvjpeg2k-cu13` | `<library dir>/../nvjpeg2k/lib`, `site-packages/nvidia/nvjpeg2k/lib`, or the system loader |
//! | `libcuda.so.1` ([`Kind::Gpu`]) | the NVIDIA driver | the system loader |
//!
//! nvImageCodec and nvJPEG2000 carry the CUDA runtime statically; no
//! `libcudart` is needed.
//!
//! ## Where decoded samples land
//!
//! nvJPEG2000's decoder (`extensions/nvjpeg2k/cuda_decoder.cpp`) only writes
//! device memory: given a host buffer it fails the image ("Unexpected buffer
//! kind"). The generic decoder above it bridges that by decoding into a
//! temporary device buffer and copying back, but this crate does not lean on
//! it by default: with [`Kind::Gpu`] the decoder writes one device buffer per
//! batch (reused across batches), which is copied back here after a device
//! synchronisation ([`Output::Device`]). [`Output::Host`] is available with
//! the GPU too, as a cross-check. [`Kind::Cpu`] always uses host buffers.

#![warn(missing_docs)]

mod cuda;
mod decode;
mod ffi;
mod locate;
mod messages;
mod status;

use std::ffi::{c_int, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use locate::ENV_LIBRARY;
pub use status::{ProcessingStatus, Status};

use cuda::{CudaDriver, DeviceArena};
use locate::Loaded;
use messages::MessageLog;

/// Held while any instance or decoder is created or destroyed, process-wide.
///
/// nvImageCodec 0.9's instance creation is not safe to run concurrently: the
/// built-in parser module's descriptor is a function-static vector filled on
/// first use without a lock (`src/builtin_modules.cpp`), and two instances
/// created at once can register it half-filled ("Extension id cannot be
/// null"), after which that instance recognises no codestream at all.
/// Seen here with four threads creating instances; serialising the
/// lifecycle calls removes it at no cost worth measuring.
static LIFECYCLE: Mutex<()> = Mutex::new(());

fn lifecycle_lock() -> std::sync::MutexGuard<'static, ()> {
    LIFECYCLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The header version this crate's declarations were checked against
/// (`NVIMGCODEC_VER` of nvimgcodec.h 0.9.0: major·1000 + minor·100 + patch).
pub(crate) const HEADER_VERSION: u32 = 900;

/// Which nvImageCodec backends may decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GPU decoders only (`GPU_ONLY` and `HYBRID_CPU_GPU` backends) on CUDA
    /// device 0: nvJPEG2000 for JPEG 2000 / HTJ2K. Needs a CUDA device,
    /// nvJPEG2000 and the driver.
    Gpu,
    /// CPU decoders only (`CPU_ONLY` backend, `NVIMGCODEC_DEVICE_CPU_ONLY`):
    /// libjpeg-turbo for JPEG, OpenCV (with its own OpenJPEG) for JPEG 2000.
    /// Needs no GPU.
    Cpu,
}

impl Kind {
    /// Where this kind decodes to unless told otherwise: device memory for
    /// the GPU, host memory for the CPU.
    pub fn default_output(self) -> Output {
        match self {
            Kind::Gpu => Output::Device,
            Kind::Cpu => Output::Host,
        }
    }
}

/// The memory the decoder writes into, before the samples are returned in a
/// `Vec` (see the crate docs, "Where decoded samples land").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A device buffer allocated here; copied to the host after the decode.
    /// GPU only.
    Device,
    /// A host buffer per image; with the GPU, nvImageCodec stages it through
    /// device memory itself.
    Host,
}

/// A piece of the installation that [`NvImageCodec::load`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `libnvimgcodec.so.0`.
    NvImageCodec,
    /// The `extensions/` directory beside it (the actual decoders).
    Extensions,
    /// `libnvjpeg2k.so.0` (GPU only).
    NvJpeg2k,
    /// `libcuda.so.1`, the NVIDIA driver (GPU only).
    CudaDriver,
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Component::NvImageCodec => "nvImageCodec library (libnvimgcodec.so.0)",
            Component::Extensions => "nvImageCodec extensions directory",
            Component::NvJpeg2k => "nvJPEG2000 library (libnvjpeg2k.so.0)",
            Component::CudaDriver => "CUDA driver library (libcuda.so.1)",
        })
    }
}

/// Why loading failed, or why one image did not decode.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// A library or directory is in none of the places searched.
    #[error("{component} not found (tried: {})", .tried.join(", "))]
    NotFound {
        /// What was looked for.
        component: Component,
        /// Every place looked, in order.
        tried: Vec<String>,
    },
    /// The file exists but the dynamic loader refused it.
    #[error("{component} at {} could not be loaded: {reason}", .path.display())]
    Load {
        /// What was loaded.
        component: Component,
        /// From where.
        path: PathBuf,
        /// The loader's message (often a missing dependency).
        reason: String,
    },
    /// The library lacks an entry point this crate calls (wrong version).
    #[error("{component} lacks the symbol {symbol}")]
    MissingSymbol {
        /// Which library.
        component: Component,
        /// The missing function.
        symbol: &'static str,
    },
    /// [`Kind::Gpu`] was asked for and the driver sees no CUDA device.
    #[error("no CUDA device: {detail}")]
    NoCudaDevice {
        /// What the driver said.
        detail: String,
    },
    /// The NVIDIA driver is older than the CUDA major version nvImageCodec
    /// was built with (its static runtime would fail every GPU call).
    #[error(
        "the NVIDIA driver supports CUDA {}.{}, but nvImageCodec needs CUDA {}.x",
        .driver / 1000, (.driver % 1000) / 10, .runtime / 1000
    )]
    CudaDriverTooOld {
        /// `cuDriverGetVersion`, e.g. 12080 for 12.8.
        driver: u32,
        /// nvImageCodec's `cudart_version`, e.g. 13030.
        runtime: u32,
    },
    /// The options given cannot work together.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// An nvImageCodec call returned a failure status.
    #[error("{call} failed: {status}{}", suffix(.detail))]
    Call {
        /// The C function.
        call: &'static str,
        /// What it returned.
        status: Status,
        /// The library's own warnings and errors logged so far, if any.
        detail: String,
    },
    /// A CUDA driver call failed (device-output path).
    #[error("CUDA {call} failed: {name} ({code})")]
    Cuda {
        /// The driver function.
        call: &'static str,
        /// Its `CUresult`.
        code: i32,
        /// The driver's name for it (`CUDA_ERROR_…`).
        name: String,
    },
    /// The stream is empty.
    #[error("empty codestream")]
    Empty,
    /// More than one component (colour, or several planes/channels).
    #[error("{components} components (codec {codec}); only greyscale (1 component) is decoded")]
    MultiComponent {
        /// Planes × channels per plane, as parsed.
        components: u32,
        /// The codec nvImageCodec recognised.
        codec: String,
    },
    /// Zero width or height in the header.
    #[error("image has no pixels ({width}x{height})")]
    NoPixels {
        /// Header width.
        width: u32,
        /// Header height.
        height: u32,
    },
    /// Larger than the caller's pixel limit; nothing was allocated.
    #[error("{width}x{height} exceeds the limit of {max_pixels} pixels")]
    TooLarge {
        /// Header width.
        width: u32,
        /// Header height.
        height: u32,
        /// The limit passed to [`NvImageCodec::decode_batch`].
        max_pixels: u64,
    },
    /// A sample type this crate cannot return exactly in a `u16`, or that
    /// nvJPEG2000 refuses (signed samples of 8 bits or fewer).
    #[error("unsupported samples: nvimgcodecSampleDataType_t 0x{sample_type:x}, {precision} bits (codec {codec})")]
    UnsupportedSamples {
        /// The parsed `nvimgcodecSampleDataType_t`.
        sample_type: i32,
        /// Bits per sample as parsed (0 = the type's full width).
        precision: u8,
        /// The codec nvImageCodec recognised.
        codec: String,
    },
    /// The decoder reported failure for this image.
    #[error("decode failed: {status}{}", suffix(.detail))]
    Processing {
        /// The per-image processing status.
        status: ProcessingStatus,
        /// The library's own warnings and errors logged during the batch.
        detail: String,
    },
}

fn suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" [nvImageCodec: {detail}]")
    }
}

/// One decoded greyscale image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bits per sample in the codestream (e.g. 8, 12, 16).
    pub precision: u8,
    /// Whether the codestream's samples are signed; if so each `u16` holds
    /// the two's-complement bits of an `i16`.
    pub signed: bool,
    /// Row-major samples, `width * height` of them, exactly as decoded.
    pub samples: Vec<u16>,
}

/// What [`NvImageCodec::decode_batch`] mutates, behind one lock: the
/// decoder object is not documented as safe for concurrent decodes.
struct State {
    decoder: ffi::Decoder,
    arena: DeviceArena,
}

/// A loaded nvImageCodec: library, instance and one decoder.
///
/// `Send + Sync`: the instance is only used while the decoder lock is held,
/// so concurrent callers of [`decode_batch`](Self::decode_batch) take turns.
/// The libraries stay loaded for the rest of the process after this is
/// dropped (unloading C++/CUDA libraries mid-process is not safe).
pub struct NvImageCodec {
    api: ffi::Api,
    instance: ffi::Instance,
    state: Mutex<State>,
    kind: Kind,
    output: Output,
    version: String,
    library: PathBuf,
    /// Present for [`Kind::Gpu`]; owns the retained primary context.
    cuda: Option<CudaDriver>,
    /// The library's log; its address is the messenger's `user_data`, so it
    /// is boxed and dropped only after the instance is destroyed.
    log: Box<MessageLog>,
    _messenger: Box<ffi::DebugMessengerDesc>,
    _nvimgcodec: Loaded,
    _nvjpeg2k: Option<Loaded>,
}

// SAFETY: the raw handles are used only through `&self` methods that take
// the `state` lock (the instance is also touched in `Drop`, with `&mut`).
unsafe impl Send for NvImageCodec {}
// SAFETY: as above.
unsafe impl Sync for NvImageCodec {}

impl NvImageCodec {
    /// Loads nvImageCodec and creates an instance and a decoder for `kind`,
    /// decoding into [`Kind::default_output`].
    ///
    /// The library is taken from `path` when given (only there); else from
    /// `$CXR_NVIMGCODEC` when set (only there); else from
    /// `<dir>/nvidia/nvimgcodec/libnvimgcodec.so.0` for each site-packages
    /// `dir` in `search`, in order; else `libnvimgcodec.so.0` through the
    /// system loader. Its extension modules are loaded from the
    /// `extensions/` directory beside the file actually loaded.
    ///
    /// For [`Kind::Gpu`] it also loads nvJPEG2000 (see the crate docs) and
    /// the CUDA driver, and checks that a device exists.
    pub fn load(path: Option<&Path>, search: &[PathBuf], kind: Kind) -> Result<Self, Error> {
        Self::load_with_output(path, search, kind, kind.default_output())
    }

    /// As [`load`](Self::load), choosing where the decoder writes.
    /// [`Output::Device`] needs [`Kind::Gpu`].
    pub fn load_with_output(
        path: Option<&Path>,
        search: &[PathBuf],
        kind: Kind,
        output: Output,
    ) -> Result<Self, Error> {
        if kind == Kind::Cpu && output == Output::Device {
            return Err(Error::Config(
                "Output::Device needs Kind::Gpu (the CPU decoders write host memory)",
            ));
        }
        let nvimgcodec = locate::nvimgcodec(path, search)?;
        let api = ffi::Api::resolve(&nvimgcodec.lib)?;
        let (version_code, cudart_version, version) = library_version(&api)?;
        let extensions = locate::extensions_dir(&nvimgcodec.file)?;
        let (nvjpeg2k, cuda) = match kind {
            Kind::Gpu => {
                let dir = nvimgcodec.file.parent().unwrap_or_else(|| Path::new("."));
                (
                    Some(locate::nvjpeg2k(dir, search)?),
                    Some(CudaDriver::load(cudart_version)?),
                )
            }
            Kind::Cpu => (None, None),
        };

        let lifecycle = lifecycle_lock();
        let log = Box::new(MessageLog::new());
        if version_code / 100 != HEADER_VERSION / 100 {
            log.push(format!(
                "WARNING [cxr-nvimgcodec] library {version} is not the 0.9 release whose header these bindings were checked against"
            ));
        }
        let messenger = Box::new(log.messenger_desc());
        let instance = create_instance(&api, &extensions, &messenger, &log)?;
        let decoder = match create_decoder(&api, instance, kind) {
            Ok(decoder) => decoder,
            Err(e) => {
                // SAFETY: created above, destroyed once.
                unsafe { (api.instance_destroy)(instance) };
                return Err(with_detail(e, &log));
            }
        };
        drop(lifecycle);
        Ok(NvImageCodec {
            api,
            instance,
            state: Mutex::new(State {
                decoder,
                arena: DeviceArena::new(),
            }),
            kind,
            output,
            version,
            library: nvimgcodec.file.clone(),
            cuda,
            log,
            _messenger: messenger,
            _nvimgcodec: nvimgcodec,
            _nvjpeg2k: nvjpeg2k,
        })
    }

    /// Decodes a batch of greyscale codestreams with one
    /// `nvimgcodecDecoderDecode` call, returning one result per input, in
    /// order. Images whose header says more than `max_pixels` pixels are
    /// refused before anything is allocated for them.
    pub fn decode_batch(&self, streams: &[&[u8]], max_pixels: u64) -> Vec<Result<Decoded, Error>> {
        // A poisoned lock means a panic in an earlier batch; the handles it
        // guards are still valid (every failure path destroys what it made).
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        decode::Batch {
            api: &self.api,
            instance: self.instance,
            output: self.output,
            cuda: self.cuda.as_ref(),
            log: &self.log,
        }
        .run(&mut state, streams, max_pixels)
    }

    /// nvImageCodec's version and the CUDA runtime it was built with, from
    /// `nvimgcodecGetProperties`, e.g. `0.9.0 (CUDA 13.0)`.
    pub fn version(&self) -> String {
        self.version.clone()
    }

    /// The backends this instance decodes with.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where the decoder writes.
    pub fn output(&self) -> Output {
        self.output
    }

    /// The library file loaded (as the loader reports it).
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The library's recent log (INFO and above, oldest first, at most 256
    /// lines): which extensions registered, why a decoder refused an image.
    pub fn messages(&self) -> Vec<String> {
        self.log.snapshot()
    }
}

impl Drop for NvImageCodec {
    fn drop(&mut self) {
        let _lifecycle = lifecycle_lock();
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        // SAFETY: each handle was created in `load` and is destroyed once,
        // decoder before instance; the device buffer is freed while the
        // driver (and its retained context) is still alive.
        unsafe {
            (self.api.decoder_destroy)(state.decoder);
            if let Some(cuda) = &self.cuda {
                state.arena.release(cuda);
            }
            (self.api.instance_destroy)(self.instance);
        }
    }
}

/// The packed library and CUDA runtime versions, and their rendering.
fn library_version(api: &ffi::Api) -> Result<(u32, u32, String), Error> {
    let mut props = ffi::Properties {
        struct_type: ffi::STRUCTURE_TYPE_PROPERTIES,
        struct_size: size_of::<ffi::Properties>(),
        struct_next: std::ptr::null_mut(),
        version: 0,
        cudart_version: 0,
    };
    // SAFETY: a correctly headed out-struct.
    let status = Status(unsafe { (api.get_properties)(&mut props) });
    if !status.is_success() {
        return Err(Error::Call {
            call: "nvimgcodecGetProperties",
            status,
            detail: String::new(),
        });
    }
    Ok((
        props.version,
        props.cudart_version,
        format_version(props.version, props.cudart_version),
    ))
}

/// `major·1000 + minor·100 + patch` and CUDA's `major·1000 + minor·10`.
fn format_version(version: u32, cudart: u32) -> String {
    format!(
        "{}.{}.{} (CUDA {}.{})",
        version / 1000,
        (version % 1000) / 100,
        version % 100,
        cudart / 1000,
        (cudart % 1000) / 10
    )
}

fn create_instance(
    api: &ffi::Api,
    extensions: &Path,
    messenger: &ffi::DebugMessengerDesc,
    log: &MessageLog,
) -> Result<ffi::Instance, Error> {
    let path = CString::new(extensions.as_os_str().as_bytes())
        .map_err(|_| Error::Config("the extensions path contains a NUL byte"))?;
    let info = ffi::InstanceCreateInfo {
        struct_type: ffi::STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        struct_size: size_of::<ffi::InstanceCreateInfo>(),
        struct_next: std::ptr::null_mut(),
        load_builtin_modules: 1,
        load_extension_modules: 1,
        extension_modules_path: path.as_ptr(),
        create_debug_messenger: 1,
        debug_messenger_desc: messenger,
        message_severity: MessageLog::SEVERITIES,
        message_category: ffi::DEBUG_MESSAGE_CATEGORY_ALL,
    };
    let mut instance: ffi::Instance = std::ptr::null_mut();
    // SAFETY: `info` and everything it points to outlive the call; the
    // messenger's user_data (`log`) outlives the instance (see NvImageCodec).
    let status = Status(unsafe { (api.instance_create)(&mut instance, &info) });
    if !status.is_success() || instance.is_null() {
        if !instance.is_null() {
            // SAFETY: returned by the failed call; destroyed once.
            unsafe { (api.instance_destroy)(instance) };
        }
        return Err(Error::Call {
            call: "nvimgcodecInstanceCreate",
            status,
            detail: log.problems(),
        });
    }
    Ok(instance)
}

fn create_decoder(
    api: &ffi::Api,
    instance: ffi::Instance,
    kind: Kind,
) -> Result<ffi::Decoder, Error> {
    let backends: Vec<ffi::Backend> = match kind {
        Kind::Gpu => vec![
            ffi::Backend::whole(ffi::BACKEND_KIND_GPU_ONLY),
            ffi::Backend::whole(ffi::BACKEND_KIND_HYBRID_CPU_GPU),
        ],
        Kind::Cpu => vec![ffi::Backend::whole(ffi::BACKEND_KIND_CPU_ONLY)],
    };
    let params = ffi::ExecutionParams {
        struct_type: ffi::STRUCTURE_TYPE_EXECUTION_PARAMS,
        struct_size: size_of::<ffi::ExecutionParams>(),
        struct_next: std::ptr::null_mut(),
        device_allocator: std::ptr::null_mut(),
        pinned_allocator: std::ptr::null_mut(),
        max_num_cpu_threads: 0,
        executor: std::ptr::null_mut(),
        device_id: match kind {
            // device 0: the one whose primary context cuda.rs retains
            Kind::Gpu => 0,
            Kind::Cpu => ffi::DEVICE_CPU_ONLY,
        },
        pre_init: 0,
        skip_pre_sync: 0,
        num_backends: backends.len() as c_int,
        backends: backends.as_ptr(),
    };
    let mut decoder: ffi::Decoder = std::ptr::null_mut();
    // SAFETY: `params` and `backends` outlive the call; no options string.
    let status =
        Status(unsafe { (api.decoder_create)(instance, &mut decoder, &params, std::ptr::null()) });
    if !status.is_success() || decoder.is_null() {
        if !decoder.is_null() {
            // SAFETY: returned by the failed call; destroyed once.
            unsafe { (api.decoder_destroy)(decoder) };
        }
        return Err(Error::Call {
            call: "nvimgcodecDecoderCreate",
            status,
            detail: String::new(),
        });
    }
    Ok(decoder)
}

fn with_detail(error: Error, log: &MessageLog) -> Error {
    match error {
        Error::Call { call, status, .. } => Error::Call {
            call,
            status,
            detail: log.problems(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_render_from_their_packed_form() {
        assert_eq!(format_version(900, 13000), "0.9.0 (CUDA 13.0)");
        assert_eq!(format_version(1203, 12080), "1.2.3 (CUDA 12.8)");
    }

    #[test]
    fn a_missing_explicit_path_is_not_found_without_searching_further() {
        let missing = Path::new("/nonexistent/libnvimgcodec.so.0");
        match NvImageCodec::load(Some(missing), &[PathBuf::from("/also/missing")], Kind::Cpu) {
            Err(Error::NotFound { component, tried }) => {
                assert_eq!(component, Component::NvImageCodec);
                assert_eq!(tried, vec![missing.display().to_string()]);
            }
            Err(other) => panic!("expected NotFound, got {other}"),
            Ok(_) => panic!("loaded a file that does not exist"),
        }
    }

    #[test]
    fn device_output_needs_the_gpu() {
        let r = NvImageCodec::load_with_output(None, &[], Kind::Cpu, Output::Device);
        assert!(matches!(r, Err(Error::Config(_))));
    }

    #[test]
    fn errors_carry_the_library_log_when_there_is_one() {
        let e = Error::Processing {
            status: ProcessingStatus(0xb),
            detail: "ERROR [x] nope".into(),
        };
        assert_eq!(
            e.to_string(),
            "decode failed: CODEC_UNSUPPORTED (0xb) [nvImageCodec: ERROR [x] nope]"
        );
        let e = Error::Processing {
            status: ProcessingStatus(0x7),
            detail: String::new(),
        };
        assert_eq!(e.to_string(), "decode failed: IMAGE_CORRUPTED (0x7)");
    }

    #[test]
    fn an_old_driver_is_named_with_both_versions() {
        let e = Error::CudaDriverTooOld {
            driver: 12080,
            runtime: 13030,
        };
        assert_eq!(
            e.to_string(),
            "the NVIDIA driver supports CUDA 12.8, but nvImageCodec needs CUDA 13.x"
        );
    }

    #[test]
    fn the_handle_is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<NvImageCodec>();
    }
}
