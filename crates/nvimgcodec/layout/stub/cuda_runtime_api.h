/* Stand-in for the CUDA toolkit header so nvimgcodec.h compiles without CUDA:
 * nvimgcodec.h needs only cudaStream_t, which driver_types.h declares as this
 * opaque pointer. */
#ifndef CXR_STUB_CUDA_RUNTIME_API_H
#define CXR_STUB_CUDA_RUNTIME_API_H
typedef struct CUstream_st* cudaStream_t;
#endif
