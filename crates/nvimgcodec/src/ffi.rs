//! The slice of the nvImageCodec C API (`nvimgcodec.h`, 0.9.0) this crate
//! calls, declared by hand and resolved at run time.
//!
//! Every `#[repr(C)]` struct mirrors its C namesake field for field; the
//! `layout` test below compares each size and offset with what
//! `layout/check_layout.c` prints when compiled against the real header
//! (`layout/check_layout.expected`). C enums cross the ABI as 4-byte ints, so
//! they are plain `i32`/`u32` aliases with the values used spelled as
//! constants (also checked by that test).
//!
//! Hand-written rather than generated: bindgen would need libclang and the
//! CUDA headers at build time, and the crate must build where neither exists.

use std::ffi::{c_char, c_int, c_void};

use libloading::Library;

use crate::{Component, Error};

// ---- handles (opaque pointers) ----

/// `nvimgcodecInstance_t`.
pub(crate) type Instance = *mut c_void;
/// `nvimgcodecDecoder_t`.
pub(crate) type Decoder = *mut c_void;
/// `nvimgcodecCodeStream_t`.
pub(crate) type CodeStream = *mut c_void;
/// `nvimgcodecImage_t`.
pub(crate) type Image = *mut c_void;
/// `nvimgcodecFuture_t`.
pub(crate) type Future = *mut c_void;
/// `cudaStream_t` (`struct CUstream_st*`); always null (the legacy default stream) here.
pub(crate) type CudaStream = *mut c_void;

// ---- enums ----

/// `nvimgcodecStructureType_t`.
pub(crate) type StructureType = i32;
pub(crate) const STRUCTURE_TYPE_PROPERTIES: StructureType = 1;
pub(crate) const STRUCTURE_TYPE_INSTANCE_CREATE_INFO: StructureType = 2;
pub(crate) const STRUCTURE_TYPE_DECODE_PARAMS: StructureType = 5;
pub(crate) const STRUCTURE_TYPE_ORIENTATION: StructureType = 7;
pub(crate) const STRUCTURE_TYPE_IMAGE_INFO: StructureType = 11;
pub(crate) const STRUCTURE_TYPE_IMAGE_PLANE_INFO: StructureType = 12;
pub(crate) const STRUCTURE_TYPE_BACKEND: StructureType = 17;
pub(crate) const STRUCTURE_TYPE_DEBUG_MESSENGER_DESC: StructureType = 25;
/// The header of the data the debug callback receives (checked, not used).
#[allow(dead_code)]
pub(crate) const STRUCTURE_TYPE_DEBUG_MESSAGE_DATA: StructureType = 26;
pub(crate) const STRUCTURE_TYPE_BACKEND_PARAMS: StructureType = 29;
pub(crate) const STRUCTURE_TYPE_EXECUTION_PARAMS: StructureType = 30;

/// `nvimgcodecStatus_t`.
pub(crate) type StatusCode = i32;
pub(crate) const STATUS_SUCCESS: StatusCode = 0;

/// `nvimgcodecSampleDataType_t`.
pub(crate) type SampleDataType = i32;
pub(crate) const SAMPLE_DATA_TYPE_INT8: SampleDataType = 0x0801;
pub(crate) const SAMPLE_DATA_TYPE_UINT8: SampleDataType = 0x0802;
pub(crate) const SAMPLE_DATA_TYPE_INT16: SampleDataType = 0x1003;
pub(crate) const SAMPLE_DATA_TYPE_UINT16: SampleDataType = 0x1004;

/// `nvimgcodecChromaSubsampling_t`.
pub(crate) type ChromaSubsampling = i32;
pub(crate) const SAMPLING_GRAY: ChromaSubsampling = 7;

/// `nvimgcodecSampleFormat_t`.
pub(crate) type SampleFormat = i32;
pub(crate) const SAMPLEFORMAT_P_Y: SampleFormat = 3;

/// `nvimgcodecColorSpec_t`.
pub(crate) type ColorSpec = i32;
pub(crate) const COLORSPEC_GRAY: ColorSpec = 2;

/// `nvimgcodecImageBufferKind_t`.
pub(crate) type ImageBufferKind = i32;
pub(crate) const IMAGE_BUFFER_KIND_STRIDED_DEVICE: ImageBufferKind = 1;
pub(crate) const IMAGE_BUFFER_KIND_STRIDED_HOST: ImageBufferKind = 2;

/// `nvimgcodecBackendKind_t`.
pub(crate) type BackendKind = i32;
pub(crate) const BACKEND_KIND_CPU_ONLY: BackendKind = 1;
pub(crate) const BACKEND_KIND_GPU_ONLY: BackendKind = 2;
pub(crate) const BACKEND_KIND_HYBRID_CPU_GPU: BackendKind = 3;

/// `nvimgcodecLoadHintPolicy_t`.
pub(crate) type LoadHintPolicy = i32;
pub(crate) const LOAD_HINT_POLICY_FIXED: LoadHintPolicy = 2;

/// `nvimgcodecProcessingStatus_t` (a `uint32_t` bitmask).
pub(crate) type ProcessingStatusBits = u32;
pub(crate) const PROCESSING_STATUS_SUCCESS: ProcessingStatusBits = 0x1;

/// `nvimgcodecDebugMessageSeverity_t` bits.
pub(crate) const DEBUG_MESSAGE_SEVERITY_INFO: u32 = 0x0000_0100;
pub(crate) const DEBUG_MESSAGE_SEVERITY_WARNING: u32 = 0x0000_1000;
pub(crate) const DEBUG_MESSAGE_SEVERITY_ERROR: u32 = 0x0001_0000;
pub(crate) const DEBUG_MESSAGE_SEVERITY_FATAL: u32 = 0x0010_0000;
/// `nvimgcodecDebugMessageCategory_t`: every category.
pub(crate) const DEBUG_MESSAGE_CATEGORY_ALL: u32 = 0x0FFF_FFFF;

/// `NVIMGCODEC_DEVICE_CPU_ONLY`.
pub(crate) const DEVICE_CPU_ONLY: c_int = -99999;
/// `NVIMGCODEC_MAX_CODEC_NAME_SIZE`.
pub(crate) const MAX_CODEC_NAME_SIZE: usize = 256;
/// `NVIMGCODEC_MAX_NUM_PLANES`.
pub(crate) const MAX_NUM_PLANES: usize = 32;

// ---- structs ----

/// `nvimgcodecProperties_t`.
#[repr(C)]
pub(crate) struct Properties {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub version: u32,
    pub cudart_version: u32,
}

/// `nvimgcodecDebugMessageData_t`.
#[repr(C)]
pub(crate) struct DebugMessageData {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub message: *const c_char,
    pub internal_status_id: u32,
    pub codec: *const c_char,
    pub codec_id: *const c_char,
    pub codec_version: u32,
}

/// `nvimgcodecDebugCallback_t`.
pub(crate) type DebugCallback = unsafe extern "C" fn(
    message_severity: u32,
    message_category: u32,
    callback_data: *const DebugMessageData,
    user_data: *mut c_void,
) -> c_int;

/// `nvimgcodecDebugMessengerDesc_t`.
#[repr(C)]
pub(crate) struct DebugMessengerDesc {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub message_severity: u32,
    pub message_category: u32,
    pub user_callback: Option<DebugCallback>,
    pub user_data: *mut c_void,
}

/// `nvimgcodecInstanceCreateInfo_t`.
#[repr(C)]
pub(crate) struct InstanceCreateInfo {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub load_builtin_modules: c_int,
    pub load_extension_modules: c_int,
    pub extension_modules_path: *const c_char,
    pub create_debug_messenger: c_int,
    pub debug_messenger_desc: *const DebugMessengerDesc,
    pub message_severity: u32,
    pub message_category: u32,
}

/// `nvimgcodecBackendParams_t`.
#[repr(C)]
pub(crate) struct BackendParams {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub load_hint: f32,
    pub load_hint_policy: LoadHintPolicy,
}

/// `nvimgcodecBackend_t`.
#[repr(C)]
pub(crate) struct Backend {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub kind: BackendKind,
    pub params: BackendParams,
}

impl Backend {
    /// A backend of `kind` that takes every sample it can (load hint 1, fixed).
    pub(crate) fn whole(kind: BackendKind) -> Self {
        Backend {
            struct_type: STRUCTURE_TYPE_BACKEND,
            struct_size: size_of::<Backend>(),
            struct_next: std::ptr::null_mut(),
            kind,
            params: BackendParams {
                struct_type: STRUCTURE_TYPE_BACKEND_PARAMS,
                struct_size: size_of::<BackendParams>(),
                struct_next: std::ptr::null_mut(),
                load_hint: 1.0,
                load_hint_policy: LOAD_HINT_POLICY_FIXED,
            },
        }
    }
}

/// `nvimgcodecExecutionParams_t`.
#[repr(C)]
pub(crate) struct ExecutionParams {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    /// `nvimgcodecDeviceAllocator_t*`; null = the library's own.
    pub device_allocator: *mut c_void,
    /// `nvimgcodecPinnedAllocator_t*`; null = the library's own.
    pub pinned_allocator: *mut c_void,
    pub max_num_cpu_threads: c_int,
    /// `nvimgcodecExecutorDesc_t*`; null = the default executor.
    pub executor: *mut c_void,
    pub device_id: c_int,
    pub pre_init: c_int,
    pub skip_pre_sync: c_int,
    pub num_backends: c_int,
    pub backends: *const Backend,
}

/// `nvimgcodecOrientation_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Orientation {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub rotated: c_int,
    pub flip_x: c_int,
    pub flip_y: c_int,
}

/// `nvimgcodecImagePlaneInfo_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ImagePlaneInfo {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub width: u32,
    pub height: u32,
    pub row_stride: usize,
    pub num_channels: u32,
    pub sample_type: SampleDataType,
    /// Bits per sample; 0 means "the sample type's full width".
    pub precision: u8,
}

/// `nvimgcodecImageInfo_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ImageInfo {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub codec_name: [c_char; MAX_CODEC_NAME_SIZE],
    pub color_spec: ColorSpec,
    pub chroma_subsampling: ChromaSubsampling,
    pub sample_format: SampleFormat,
    pub orientation: Orientation,
    pub num_planes: u32,
    pub plane_info: [ImagePlaneInfo; MAX_NUM_PLANES],
    pub buffer: *mut c_void,
    pub buffer_kind: ImageBufferKind,
    pub cuda_stream: CudaStream,
}

impl ImageInfo {
    /// An all-zero info with its header (and its nested headers) filled in,
    /// ready to be passed to a `Get…ImageInfo` call.
    pub(crate) fn empty() -> Self {
        let plane = ImagePlaneInfo {
            struct_type: STRUCTURE_TYPE_IMAGE_PLANE_INFO,
            struct_size: size_of::<ImagePlaneInfo>(),
            struct_next: std::ptr::null_mut(),
            width: 0,
            height: 0,
            row_stride: 0,
            num_channels: 0,
            sample_type: 0,
            precision: 0,
        };
        ImageInfo {
            struct_type: STRUCTURE_TYPE_IMAGE_INFO,
            struct_size: size_of::<ImageInfo>(),
            struct_next: std::ptr::null_mut(),
            codec_name: [0; MAX_CODEC_NAME_SIZE],
            color_spec: 0,
            chroma_subsampling: 0,
            sample_format: 0,
            orientation: Orientation::none(),
            num_planes: 0,
            plane_info: [plane; MAX_NUM_PLANES],
            buffer: std::ptr::null_mut(),
            buffer_kind: 0,
            cuda_stream: std::ptr::null_mut(),
        }
    }

    /// The codec name the parser wrote (e.g. `jpeg2k`, `jpeg`), lossily.
    pub(crate) fn codec_name(&self) -> String {
        let bytes: Vec<u8> = self
            .codec_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Orientation {
    /// No rotation, no flips.
    pub(crate) fn none() -> Self {
        Orientation {
            struct_type: STRUCTURE_TYPE_ORIENTATION,
            struct_size: size_of::<Orientation>(),
            struct_next: std::ptr::null_mut(),
            rotated: 0,
            flip_x: 0,
            flip_y: 0,
        }
    }
}

/// `nvimgcodecDecodeParams_t`.
#[repr(C)]
pub(crate) struct DecodeParams {
    pub struct_type: StructureType,
    pub struct_size: usize,
    pub struct_next: *mut c_void,
    pub apply_exif_orientation: c_int,
}

// ---- functions ----

type GetPropertiesFn = unsafe extern "C" fn(*mut Properties) -> StatusCode;
type InstanceCreateFn =
    unsafe extern "C" fn(*mut Instance, *const InstanceCreateInfo) -> StatusCode;
type InstanceDestroyFn = unsafe extern "C" fn(Instance) -> StatusCode;
type DecoderCreateFn = unsafe extern "C" fn(
    Instance,
    *mut Decoder,
    *const ExecutionParams,
    *const c_char,
) -> StatusCode;
type DecoderDestroyFn = unsafe extern "C" fn(Decoder) -> StatusCode;
type CodeStreamCreateFromHostMemFn = unsafe extern "C" fn(
    Instance,
    *mut CodeStream,
    *const u8,
    usize,
    // `const nvimgcodecCodeStreamView_t*`; always null here.
    *const c_void,
) -> StatusCode;
type CodeStreamDestroyFn = unsafe extern "C" fn(CodeStream) -> StatusCode;
type CodeStreamGetImageInfoFn = unsafe extern "C" fn(CodeStream, *mut ImageInfo) -> StatusCode;
type ImageCreateFn = unsafe extern "C" fn(Instance, *mut Image, *const ImageInfo) -> StatusCode;
type ImageDestroyFn = unsafe extern "C" fn(Image) -> StatusCode;
type DecoderDecodeFn = unsafe extern "C" fn(
    Decoder,
    *const CodeStream,
    *const Image,
    c_int,
    *const DecodeParams,
    *mut Future,
) -> StatusCode;
type FutureWaitForAllFn = unsafe extern "C" fn(Future) -> StatusCode;
type FutureGetProcessingStatusFn =
    unsafe extern "C" fn(Future, *mut ProcessingStatusBits, *mut usize) -> StatusCode;
type FutureDestroyFn = unsafe extern "C" fn(Future) -> StatusCode;

/// The entry points, copied out of the library. Valid for as long as the
/// library stays mapped, which is for the rest of the process (see
/// [`crate::NvImageCodec`]).
#[derive(Clone, Copy)]
pub(crate) struct Api {
    pub get_properties: GetPropertiesFn,
    pub instance_create: InstanceCreateFn,
    pub instance_destroy: InstanceDestroyFn,
    pub decoder_create: DecoderCreateFn,
    pub decoder_destroy: DecoderDestroyFn,
    pub code_stream_create_from_host_mem: CodeStreamCreateFromHostMemFn,
    pub code_stream_destroy: CodeStreamDestroyFn,
    pub code_stream_get_image_info: CodeStreamGetImageInfoFn,
    pub image_create: ImageCreateFn,
    pub image_destroy: ImageDestroyFn,
    pub decoder_decode: DecoderDecodeFn,
    pub future_wait_for_all: FutureWaitForAllFn,
    pub future_get_processing_status: FutureGetProcessingStatusFn,
    pub future_destroy: FutureDestroyFn,
}

/// Copies one symbol out of `lib` as a plain function pointer.
///
/// # Safety
/// `T` must be the symbol's true C signature.
pub(crate) unsafe fn symbol<T: Copy>(
    lib: &Library,
    component: Component,
    name: &'static str,
) -> Result<T, Error> {
    // SAFETY: forwarded to the caller (the type is the symbol's signature).
    match unsafe { lib.get::<T>(name.as_bytes()) } {
        Ok(sym) => Ok(*sym),
        Err(_) => Err(Error::MissingSymbol {
            component,
            symbol: name,
        }),
    }
}

impl Api {
    /// Resolves every entry point, failing on the first one missing.
    pub(crate) fn resolve(lib: &Library) -> Result<Api, Error> {
        let c = Component::NvImageCodec;
        // SAFETY: each type above is transcribed from nvimgcodec.h 0.9.0 and
        // checked against it by layout/check_layout.c (the signature block).
        unsafe {
            Ok(Api {
                get_properties: symbol(lib, c, "nvimgcodecGetProperties")?,
                instance_create: symbol(lib, c, "nvimgcodecInstanceCreate")?,
                instance_destroy: symbol(lib, c, "nvimgcodecInstanceDestroy")?,
                decoder_create: symbol(lib, c, "nvimgcodecDecoderCreate")?,
                decoder_destroy: symbol(lib, c, "nvimgcodecDecoderDestroy")?,
                code_stream_create_from_host_mem: symbol(
                    lib,
                    c,
                    "nvimgcodecCodeStreamCreateFromHostMem",
                )?,
                code_stream_destroy: symbol(lib, c, "nvimgcodecCodeStreamDestroy")?,
                code_stream_get_image_info: symbol(lib, c, "nvimgcodecCodeStreamGetImageInfo")?,
                image_create: symbol(lib, c, "nvimgcodecImageCreate")?,
                image_destroy: symbol(lib, c, "nvimgcodecImageDestroy")?,
                decoder_decode: symbol(lib, c, "nvimgcodecDecoderDecode")?,
                future_wait_for_all: symbol(lib, c, "nvimgcodecFutureWaitForAll")?,
                future_get_processing_status: symbol(
                    lib,
                    c,
                    "nvimgcodecFutureGetProcessingStatus",
                )?,
                future_destroy: symbol(lib, c, "nvimgcodecFutureDestroy")?,
            })
        }
    }
}

#[cfg(test)]
mod layout {
    //! Sizes, offsets and enum values, compared with the output of
    //! `layout/check_layout.c` compiled against nvimgcodec.h 0.9.0 (the
    //! wheel nvidia-nvimgcodec-cu13 0.9.0.20) on x86_64 Linux, gcc 12,
    //! committed as `layout/check_layout.expected`. Any difference fails with
    //! the offending line.

    use super::*;
    use std::mem::offset_of;

    const EXPECTED: &str = include_str!("../layout/check_layout.expected");

    macro_rules! size {
        ($out:ident, $c:literal, $t:ty) => {
            $out.push(format!("{}.size {}", $c, size_of::<$t>()))
        };
    }
    macro_rules! off {
        ($out:ident, $c:literal, $t:ty, $($f:ident),+) => {
            $( $out.push(format!("{}.{} {}", $c, stringify!($f), offset_of!($t, $f))); )+
        };
    }
    macro_rules! val {
        ($out:ident, $c:literal, $v:expr) => {
            $out.push(format!("{} {}", $c, $v as i64))
        };
    }

    #[rustfmt::skip]
    fn rust_lines() -> Vec<String> {
        let mut o = Vec::new();
        size!(o, "nvimgcodecProperties_t", Properties);
        off!(o, "nvimgcodecProperties_t", Properties, struct_type, struct_size, struct_next, version, cudart_version);
        size!(o, "nvimgcodecDebugMessageData_t", DebugMessageData);
        off!(o, "nvimgcodecDebugMessageData_t", DebugMessageData, struct_type, struct_size, struct_next, message, internal_status_id, codec, codec_id, codec_version);
        size!(o, "nvimgcodecDebugMessengerDesc_t", DebugMessengerDesc);
        off!(o, "nvimgcodecDebugMessengerDesc_t", DebugMessengerDesc, struct_type, struct_size, struct_next, message_severity, message_category, user_callback, user_data);
        size!(o, "nvimgcodecInstanceCreateInfo_t", InstanceCreateInfo);
        off!(o, "nvimgcodecInstanceCreateInfo_t", InstanceCreateInfo, struct_type, struct_size, struct_next, load_builtin_modules, load_extension_modules, extension_modules_path, create_debug_messenger, debug_messenger_desc, message_severity, message_category);
        size!(o, "nvimgcodecBackendParams_t", BackendParams);
        off!(o, "nvimgcodecBackendParams_t", BackendParams, struct_type, struct_size, struct_next, load_hint, load_hint_policy);
        size!(o, "nvimgcodecBackend_t", Backend);
        off!(o, "nvimgcodecBackend_t", Backend, struct_type, struct_size, struct_next, kind, params);
        size!(o, "nvimgcodecExecutionParams_t", ExecutionParams);
        off!(o, "nvimgcodecExecutionParams_t", ExecutionParams, struct_type, struct_size, struct_next, device_allocator, pinned_allocator, max_num_cpu_threads, executor, device_id, pre_init, skip_pre_sync, num_backends, backends);
        size!(o, "nvimgcodecOrientation_t", Orientation);
        off!(o, "nvimgcodecOrientation_t", Orientation, struct_type, struct_size, struct_next, rotated, flip_x, flip_y);
        size!(o, "nvimgcodecImagePlaneInfo_t", ImagePlaneInfo);
        off!(o, "nvimgcodecImagePlaneInfo_t", ImagePlaneInfo, struct_type, struct_size, struct_next, width, height, row_stride, num_channels, sample_type, precision);
        size!(o, "nvimgcodecImageInfo_t", ImageInfo);
        off!(o, "nvimgcodecImageInfo_t", ImageInfo, struct_type, struct_size, struct_next, codec_name, color_spec, chroma_subsampling, sample_format, orientation, num_planes, plane_info, buffer, buffer_kind, cuda_stream);
        size!(o, "nvimgcodecDecodeParams_t", DecodeParams);
        off!(o, "nvimgcodecDecodeParams_t", DecodeParams, struct_type, struct_size, struct_next, apply_exif_orientation);

        size!(o, "nvimgcodecStructureType_t", StructureType);
        size!(o, "nvimgcodecStatus_t", StatusCode);
        size!(o, "nvimgcodecSampleDataType_t", SampleDataType);
        size!(o, "nvimgcodecBackendKind_t", BackendKind);
        size!(o, "nvimgcodecLoadHintPolicy_t", LoadHintPolicy);
        size!(o, "nvimgcodecImageBufferKind_t", ImageBufferKind);
        size!(o, "nvimgcodecColorSpec_t", ColorSpec);
        size!(o, "nvimgcodecSampleFormat_t", SampleFormat);
        size!(o, "nvimgcodecChromaSubsampling_t", ChromaSubsampling);
        size!(o, "nvimgcodecProcessingStatus_t", ProcessingStatusBits);
        size!(o, "nvimgcodecDebugMessageSeverity_t", u32);
        size!(o, "nvimgcodecDebugMessageCategory_t", u32);

        val!(o, "NVIMGCODEC_MAX_CODEC_NAME_SIZE", MAX_CODEC_NAME_SIZE);
        val!(o, "NVIMGCODEC_MAX_NUM_PLANES", MAX_NUM_PLANES);
        val!(o, "NVIMGCODEC_DEVICE_CURRENT", -1);
        val!(o, "NVIMGCODEC_DEVICE_CPU_ONLY", DEVICE_CPU_ONLY);
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_PROPERTIES",
            STRUCTURE_TYPE_PROPERTIES
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_INSTANCE_CREATE_INFO",
            STRUCTURE_TYPE_INSTANCE_CREATE_INFO
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_DECODE_PARAMS",
            STRUCTURE_TYPE_DECODE_PARAMS
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_ORIENTATION",
            STRUCTURE_TYPE_ORIENTATION
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_IMAGE_INFO",
            STRUCTURE_TYPE_IMAGE_INFO
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_IMAGE_PLANE_INFO",
            STRUCTURE_TYPE_IMAGE_PLANE_INFO
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_BACKEND",
            STRUCTURE_TYPE_BACKEND
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_DEBUG_MESSENGER_DESC",
            STRUCTURE_TYPE_DEBUG_MESSENGER_DESC
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_DEBUG_MESSAGE_DATA",
            STRUCTURE_TYPE_DEBUG_MESSAGE_DATA
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_BACKEND_PARAMS",
            STRUCTURE_TYPE_BACKEND_PARAMS
        );
        val!(
            o,
            "NVIMGCODEC_STRUCTURE_TYPE_EXECUTION_PARAMS",
            STRUCTURE_TYPE_EXECUTION_PARAMS
        );
        val!(o, "NVIMGCODEC_SAMPLE_DATA_TYPE_UNKNOWN", 0);
        val!(o, "NVIMGCODEC_SAMPLE_DATA_TYPE_INT8", SAMPLE_DATA_TYPE_INT8);
        val!(
            o,
            "NVIMGCODEC_SAMPLE_DATA_TYPE_UINT8",
            SAMPLE_DATA_TYPE_UINT8
        );
        val!(
            o,
            "NVIMGCODEC_SAMPLE_DATA_TYPE_INT16",
            SAMPLE_DATA_TYPE_INT16
        );
        val!(
            o,
            "NVIMGCODEC_SAMPLE_DATA_TYPE_UINT16",
            SAMPLE_DATA_TYPE_UINT16
        );
        val!(o, "NVIMGCODEC_SAMPLING_GRAY", SAMPLING_GRAY);
        val!(o, "NVIMGCODEC_SAMPLEFORMAT_P_Y", SAMPLEFORMAT_P_Y);
        val!(o, "NVIMGCODEC_COLORSPEC_GRAY", COLORSPEC_GRAY);
        val!(
            o,
            "NVIMGCODEC_IMAGE_BUFFER_KIND_STRIDED_DEVICE",
            IMAGE_BUFFER_KIND_STRIDED_DEVICE
        );
        val!(
            o,
            "NVIMGCODEC_IMAGE_BUFFER_KIND_STRIDED_HOST",
            IMAGE_BUFFER_KIND_STRIDED_HOST
        );
        val!(o, "NVIMGCODEC_BACKEND_KIND_CPU_ONLY", BACKEND_KIND_CPU_ONLY);
        val!(o, "NVIMGCODEC_BACKEND_KIND_GPU_ONLY", BACKEND_KIND_GPU_ONLY);
        val!(
            o,
            "NVIMGCODEC_BACKEND_KIND_HYBRID_CPU_GPU",
            BACKEND_KIND_HYBRID_CPU_GPU
        );
        val!(
            o,
            "NVIMGCODEC_LOAD_HINT_POLICY_FIXED",
            LOAD_HINT_POLICY_FIXED
        );
        val!(
            o,
            "NVIMGCODEC_PROCESSING_STATUS_SUCCESS",
            PROCESSING_STATUS_SUCCESS
        );
        val!(
            o,
            "NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_INFO",
            DEBUG_MESSAGE_SEVERITY_INFO
        );
        val!(
            o,
            "NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_WARNING",
            DEBUG_MESSAGE_SEVERITY_WARNING
        );
        val!(
            o,
            "NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_ERROR",
            DEBUG_MESSAGE_SEVERITY_ERROR
        );
        val!(
            o,
            "NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_FATAL",
            DEBUG_MESSAGE_SEVERITY_FATAL
        );
        val!(
            o,
            "NVIMGCODEC_DEBUG_MESSAGE_CATEGORY_ALL",
            DEBUG_MESSAGE_CATEGORY_ALL
        );
        val!(o, "NVIMGCODEC_VER", crate::HEADER_VERSION);
        o.extend(crate::status::header_lines());
        o
    }

    #[test]
    fn every_struct_offset_and_enum_value_matches_the_c_header() {
        let expected: Vec<&str> = EXPECTED.lines().filter(|l| !l.trim().is_empty()).collect();
        let actual = rust_lines();
        for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
            assert_eq!(e, a, "line {} of check_layout.expected", i + 1);
        }
        assert_eq!(expected.len(), actual.len(), "line count");
    }

    #[test]
    fn image_info_header_sizes_are_filled_in() {
        let info = ImageInfo::empty();
        assert_eq!(info.struct_size, 2160);
        assert_eq!(info.plane_info[31].struct_size, 56);
        assert_eq!(info.orientation.struct_size, 40);
    }
}
