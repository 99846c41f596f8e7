/*
 * Prints sizeof/offsetof of every nvImageCodec struct that cxr-nvimgcodec
 * declares in Rust (src/ffi.rs), and the enum values it uses, so the Rust
 * layout test (src/ffi.rs, `layout`) can compare against it; and checks at
 * compile time that every function signature ffi.rs declares matches the
 * header. Not built by cargo. From this directory:
 *
 *   SITE=/path/to/site-packages/nvidia/nvimgcodec
 *   gcc -std=c11 -Wall -Wextra -Werror -I stub -I $SITE/include check_layout.c \
 *       -L $SITE -l:libnvimgcodec.so.0 -o /tmp/check_layout
 *   LD_LIBRARY_PATH=$SITE /tmp/check_layout > check_layout.expected
 *
 * (Nothing in the library is called; it is linked only to resolve the
 * function-pointer checks. `stub/` stands in for the CUDA header.)
 *
 * Output format: one "name value" per line (TYPE.size, TYPE.field offset).
 */
#include <stddef.h>
#include <stdio.h>
#include <nvimgcodec.h>

#define SIZE(T) printf("%s.size %zu\n", #T, sizeof(T))
#define OFF(T, f) printf("%s.%s %zu\n", #T, #f, offsetof(T, f))
#define VAL(v) printf("%s %lld\n", #v, (long long)(v))

/*
 * Function signatures as src/ffi.rs declares them (same parameter order and
 * types, opaque handles as their typedefs). Compiled with -Werror, an
 * assignment fails if the header's prototype differs.
 */
typedef nvimgcodecStatus_t (*get_properties_fn)(nvimgcodecProperties_t*);
typedef nvimgcodecStatus_t (*instance_create_fn)(nvimgcodecInstance_t*, const nvimgcodecInstanceCreateInfo_t*);
typedef nvimgcodecStatus_t (*instance_destroy_fn)(nvimgcodecInstance_t);
typedef nvimgcodecStatus_t (*decoder_create_fn)(nvimgcodecInstance_t, nvimgcodecDecoder_t*, const nvimgcodecExecutionParams_t*, const char*);
typedef nvimgcodecStatus_t (*decoder_destroy_fn)(nvimgcodecDecoder_t);
typedef nvimgcodecStatus_t (*code_stream_create_from_host_mem_fn)(nvimgcodecInstance_t, nvimgcodecCodeStream_t*, const unsigned char*, size_t, const nvimgcodecCodeStreamView_t*);
typedef nvimgcodecStatus_t (*code_stream_destroy_fn)(nvimgcodecCodeStream_t);
typedef nvimgcodecStatus_t (*code_stream_get_image_info_fn)(nvimgcodecCodeStream_t, nvimgcodecImageInfo_t*);
typedef nvimgcodecStatus_t (*image_create_fn)(nvimgcodecInstance_t, nvimgcodecImage_t*, const nvimgcodecImageInfo_t*);
typedef nvimgcodecStatus_t (*image_destroy_fn)(nvimgcodecImage_t);
typedef nvimgcodecStatus_t (*decoder_decode_fn)(nvimgcodecDecoder_t, const nvimgcodecCodeStream_t*, const nvimgcodecImage_t*, int, const nvimgcodecDecodeParams_t*, nvimgcodecFuture_t*);
typedef nvimgcodecStatus_t (*future_wait_for_all_fn)(nvimgcodecFuture_t);
typedef nvimgcodecStatus_t (*future_get_processing_status_fn)(nvimgcodecFuture_t, nvimgcodecProcessingStatus_t*, size_t*);
typedef nvimgcodecStatus_t (*future_destroy_fn)(nvimgcodecFuture_t);
typedef int (*debug_callback_fn)(const nvimgcodecDebugMessageSeverity_t, const nvimgcodecDebugMessageCategory_t, const nvimgcodecDebugMessageData_t*, void*);

static get_properties_fn check_get_properties = nvimgcodecGetProperties;
static instance_create_fn check_instance_create = nvimgcodecInstanceCreate;
static instance_destroy_fn check_instance_destroy = nvimgcodecInstanceDestroy;
static decoder_create_fn check_decoder_create = nvimgcodecDecoderCreate;
static decoder_destroy_fn check_decoder_destroy = nvimgcodecDecoderDestroy;
static code_stream_create_from_host_mem_fn check_code_stream_create_from_host_mem = nvimgcodecCodeStreamCreateFromHostMem;
static code_stream_destroy_fn check_code_stream_destroy = nvimgcodecCodeStreamDestroy;
static code_stream_get_image_info_fn check_code_stream_get_image_info = nvimgcodecCodeStreamGetImageInfo;
static image_create_fn check_image_create = nvimgcodecImageCreate;
static image_destroy_fn check_image_destroy = nvimgcodecImageDestroy;
static decoder_decode_fn check_decoder_decode = nvimgcodecDecoderDecode;
static future_wait_for_all_fn check_future_wait_for_all = nvimgcodecFutureWaitForAll;
static future_get_processing_status_fn check_future_get_processing_status = nvimgcodecFutureGetProcessingStatus;
static future_destroy_fn check_future_destroy = nvimgcodecFutureDestroy;
/* the debug callback type is a typedef in the header, not a function */
static debug_callback_fn check_debug_callback_type(nvimgcodecDebugCallback_t f) { return f; }

int main(void)
{
    /* keep the checks referenced (no unused warnings); nothing is called */
    const void* checks[] = {
        (const void*)&check_get_properties, (const void*)&check_instance_create, (const void*)&check_instance_destroy,
        (const void*)&check_decoder_create, (const void*)&check_decoder_destroy,
        (const void*)&check_code_stream_create_from_host_mem, (const void*)&check_code_stream_destroy,
        (const void*)&check_code_stream_get_image_info, (const void*)&check_image_create, (const void*)&check_image_destroy,
        (const void*)&check_decoder_decode, (const void*)&check_future_wait_for_all,
        (const void*)&check_future_get_processing_status, (const void*)&check_future_destroy,
        (const void*)&check_debug_callback_type,
    };
    (void)checks;
    SIZE(nvimgcodecProperties_t);
    OFF(nvimgcodecProperties_t, struct_type);
    OFF(nvimgcodecProperties_t, struct_size);
    OFF(nvimgcodecProperties_t, struct_next);
    OFF(nvimgcodecProperties_t, version);
    OFF(nvimgcodecProperties_t, cudart_version);

    SIZE(nvimgcodecDebugMessageData_t);
    OFF(nvimgcodecDebugMessageData_t, struct_type);
    OFF(nvimgcodecDebugMessageData_t, struct_size);
    OFF(nvimgcodecDebugMessageData_t, struct_next);
    OFF(nvimgcodecDebugMessageData_t, message);
    OFF(nvimgcodecDebugMessageData_t, internal_status_id);
    OFF(nvimgcodecDebugMessageData_t, codec);
    OFF(nvimgcodecDebugMessageData_t, codec_id);
    OFF(nvimgcodecDebugMessageData_t, codec_version);

    SIZE(nvimgcodecDebugMessengerDesc_t);
    OFF(nvimgcodecDebugMessengerDesc_t, struct_type);
    OFF(nvimgcodecDebugMessengerDesc_t, struct_size);
    OFF(nvimgcodecDebugMessengerDesc_t, struct_next);
    OFF(nvimgcodecDebugMessengerDesc_t, message_severity);
    OFF(nvimgcodecDebugMessengerDesc_t, message_category);
    OFF(nvimgcodecDebugMessengerDesc_t, user_callback);
    OFF(nvimgcodecDebugMessengerDesc_t, user_data);

    SIZE(nvimgcodecInstanceCreateInfo_t);
    OFF(nvimgcodecInstanceCreateInfo_t, struct_type);
    OFF(nvimgcodecInstanceCreateInfo_t, struct_size);
    OFF(nvimgcodecInstanceCreateInfo_t, struct_next);
    OFF(nvimgcodecInstanceCreateInfo_t, load_builtin_modules);
    OFF(nvimgcodecInstanceCreateInfo_t, load_extension_modules);
    OFF(nvimgcodecInstanceCreateInfo_t, extension_modules_path);
    OFF(nvimgcodecInstanceCreateInfo_t, create_debug_messenger);
    OFF(nvimgcodecInstanceCreateInfo_t, debug_messenger_desc);
    OFF(nvimgcodecInstanceCreateInfo_t, message_severity);
    OFF(nvimgcodecInstanceCreateInfo_t, message_category);

    SIZE(nvimgcodecBackendParams_t);
    OFF(nvimgcodecBackendParams_t, struct_type);
    OFF(nvimgcodecBackendParams_t, struct_size);
    OFF(nvimgcodecBackendParams_t, struct_next);
    OFF(nvimgcodecBackendParams_t, load_hint);
    OFF(nvimgcodecBackendParams_t, load_hint_policy);

    SIZE(nvimgcodecBackend_t);
    OFF(nvimgcodecBackend_t, struct_type);
    OFF(nvimgcodecBackend_t, struct_size);
    OFF(nvimgcodecBackend_t, struct_next);
    OFF(nvimgcodecBackend_t, kind);
    OFF(nvimgcodecBackend_t, params);

    SIZE(nvimgcodecExecutionParams_t);
    OFF(nvimgcodecExecutionParams_t, struct_type);
    OFF(nvimgcodecExecutionParams_t, struct_size);
    OFF(nvimgcodecExecutionParams_t, struct_next);
    OFF(nvimgcodecExecutionParams_t, device_allocator);
    OFF(nvimgcodecExecutionParams_t, pinned_allocator);
    OFF(nvimgcodecExecutionParams_t, max_num_cpu_threads);
    OFF(nvimgcodecExecutionParams_t, executor);
    OFF(nvimgcodecExecutionParams_t, device_id);
    OFF(nvimgcodecExecutionParams_t, pre_init);
    OFF(nvimgcodecExecutionParams_t, skip_pre_sync);
    OFF(nvimgcodecExecutionParams_t, num_backends);
    OFF(nvimgcodecExecutionParams_t, backends);

    SIZE(nvimgcodecOrientation_t);
    OFF(nvimgcodecOrientation_t, struct_type);
    OFF(nvimgcodecOrientation_t, struct_size);
    OFF(nvimgcodecOrientation_t, struct_next);
    OFF(nvimgcodecOrientation_t, rotated);
    OFF(nvimgcodecOrientation_t, flip_x);
    OFF(nvimgcodecOrientation_t, flip_y);

    SIZE(nvimgcodecImagePlaneInfo_t);
    OFF(nvimgcodecImagePlaneInfo_t, struct_type);
    OFF(nvimgcodecImagePlaneInfo_t, struct_size);
    OFF(nvimgcodecImagePlaneInfo_t, struct_next);
    OFF(nvimgcodecImagePlaneInfo_t, width);
    OFF(nvimgcodecImagePlaneInfo_t, height);
    OFF(nvimgcodecImagePlaneInfo_t, row_stride);
    OFF(nvimgcodecImagePlaneInfo_t, num_channels);
    OFF(nvimgcodecImagePlaneInfo_t, sample_type);
    OFF(nvimgcodecImagePlaneInfo_t, precision);

    SIZE(nvimgcodecImageInfo_t);
    OFF(nvimgcodecImageInfo_t, struct_type);
    OFF(nvimgcodecImageInfo_t, struct_size);
    OFF(nvimgcodecImageInfo_t, struct_next);
    OFF(nvimgcodecImageInfo_t, codec_name);
    OFF(nvimgcodecImageInfo_t, color_spec);
    OFF(nvimgcodecImageInfo_t, chroma_subsampling);
    OFF(nvimgcodecImageInfo_t, sample_format);
    OFF(nvimgcodecImageInfo_t, orientation);
    OFF(nvimgcodecImageInfo_t, num_planes);
    OFF(nvimgcodecImageInfo_t, plane_info);
    OFF(nvimgcodecImageInfo_t, buffer);
    OFF(nvimgcodecImageInfo_t, buffer_kind);
    OFF(nvimgcodecImageInfo_t, cuda_stream);

    SIZE(nvimgcodecDecodeParams_t);
    OFF(nvimgcodecDecodeParams_t, struct_type);
    OFF(nvimgcodecDecodeParams_t, struct_size);
    OFF(nvimgcodecDecodeParams_t, struct_next);
    OFF(nvimgcodecDecodeParams_t, apply_exif_orientation);

    /* enum sizes: every enum crosses the ABI as a 4-byte int */
    SIZE(nvimgcodecStructureType_t);
    SIZE(nvimgcodecStatus_t);
    SIZE(nvimgcodecSampleDataType_t);
    SIZE(nvimgcodecBackendKind_t);
    SIZE(nvimgcodecLoadHintPolicy_t);
    SIZE(nvimgcodecImageBufferKind_t);
    SIZE(nvimgcodecColorSpec_t);
    SIZE(nvimgcodecSampleFormat_t);
    SIZE(nvimgcodecChromaSubsampling_t);
    SIZE(nvimgcodecProcessingStatus_t);
    SIZE(nvimgcodecDebugMessageSeverity_t);
    SIZE(nvimgcodecDebugMessageCategory_t);

    VAL(NVIMGCODEC_MAX_CODEC_NAME_SIZE);
    VAL(NVIMGCODEC_MAX_NUM_PLANES);
    VAL(NVIMGCODEC_DEVICE_CURRENT);
    VAL(NVIMGCODEC_DEVICE_CPU_ONLY);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_PROPERTIES);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_DECODE_PARAMS);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_ORIENTATION);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_IMAGE_INFO);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_IMAGE_PLANE_INFO);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_BACKEND);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_DEBUG_MESSENGER_DESC);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_DEBUG_MESSAGE_DATA);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_BACKEND_PARAMS);
    VAL(NVIMGCODEC_STRUCTURE_TYPE_EXECUTION_PARAMS);
    VAL(NVIMGCODEC_SAMPLE_DATA_TYPE_UNKNOWN);
    VAL(NVIMGCODEC_SAMPLE_DATA_TYPE_INT8);
    VAL(NVIMGCODEC_SAMPLE_DATA_TYPE_UINT8);
    VAL(NVIMGCODEC_SAMPLE_DATA_TYPE_INT16);
    VAL(NVIMGCODEC_SAMPLE_DATA_TYPE_UINT16);
    VAL(NVIMGCODEC_SAMPLING_GRAY);
    VAL(NVIMGCODEC_SAMPLEFORMAT_P_Y);
    VAL(NVIMGCODEC_COLORSPEC_GRAY);
    VAL(NVIMGCODEC_IMAGE_BUFFER_KIND_STRIDED_DEVICE);
    VAL(NVIMGCODEC_IMAGE_BUFFER_KIND_STRIDED_HOST);
    VAL(NVIMGCODEC_BACKEND_KIND_CPU_ONLY);
    VAL(NVIMGCODEC_BACKEND_KIND_GPU_ONLY);
    VAL(NVIMGCODEC_BACKEND_KIND_HYBRID_CPU_GPU);
    VAL(NVIMGCODEC_LOAD_HINT_POLICY_FIXED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SUCCESS);
    VAL(NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_INFO);
    VAL(NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_WARNING);
    VAL(NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_ERROR);
    VAL(NVIMGCODEC_DEBUG_MESSAGE_SEVERITY_FATAL);
    VAL(NVIMGCODEC_DEBUG_MESSAGE_CATEGORY_ALL);
    VAL(NVIMGCODEC_VER);
    /* the names status.rs renders, in its order */
    VAL(NVIMGCODEC_STATUS_SUCCESS);
    VAL(NVIMGCODEC_STATUS_NOT_INITIALIZED);
    VAL(NVIMGCODEC_STATUS_INVALID_PARAMETER);
    VAL(NVIMGCODEC_STATUS_BAD_CODESTREAM);
    VAL(NVIMGCODEC_STATUS_CODESTREAM_UNSUPPORTED);
    VAL(NVIMGCODEC_STATUS_ALLOCATOR_FAILURE);
    VAL(NVIMGCODEC_STATUS_EXECUTION_FAILED);
    VAL(NVIMGCODEC_STATUS_ARCH_MISMATCH);
    VAL(NVIMGCODEC_STATUS_INTERNAL_ERROR);
    VAL(NVIMGCODEC_STATUS_IMPLEMENTATION_UNSUPPORTED);
    VAL(NVIMGCODEC_STATUS_MISSED_DEPENDENCIES);
    VAL(NVIMGCODEC_STATUS_EXTENSION_NOT_INITIALIZED);
    VAL(NVIMGCODEC_STATUS_EXTENSION_INVALID_PARAMETER);
    VAL(NVIMGCODEC_STATUS_EXTENSION_BAD_CODE_STREAM);
    VAL(NVIMGCODEC_STATUS_EXTENSION_CODESTREAM_UNSUPPORTED);
    VAL(NVIMGCODEC_STATUS_EXTENSION_ALLOCATOR_FAILURE);
    VAL(NVIMGCODEC_STATUS_EXTENSION_ARCH_MISMATCH);
    VAL(NVIMGCODEC_STATUS_EXTENSION_INTERNAL_ERROR);
    VAL(NVIMGCODEC_STATUS_EXTENSION_IMPLEMENTATION_NOT_SUPPORTED);
    VAL(NVIMGCODEC_STATUS_EXTENSION_INCOMPLETE_BITSTREAM);
    VAL(NVIMGCODEC_STATUS_EXTENSION_EXECUTION_FAILED);
    VAL(NVIMGCODEC_STATUS_EXTENSION_CUDA_CALL_ERROR);
    VAL(NVIMGCODEC_PROCESSING_STATUS_UNKNOWN);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SUCCESS);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SATURATED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_FAIL);
    VAL(NVIMGCODEC_PROCESSING_STATUS_IMAGE_CORRUPTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_CODEC_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_BACKEND_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_ENCODING_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_RESOLUTION_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_CODESTREAM_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_COLOR_SPEC_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_ORIENTATION_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_ROI_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SAMPLING_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SAMPLE_TYPE_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_SAMPLE_FORMAT_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_NUM_IMAGES_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_NUM_PLANES_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_NUM_CHANNELS_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_QUALITY_TYPE_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_QUALITY_VALUE_UNSUPPORTED);
    VAL(NVIMGCODEC_PROCESSING_STATUS_TILING_UNSUPPORTED);
    return 0;
}
