//! The few CUDA driver calls the device-output path needs, from
//! `libcuda.so.1` loaded at run time.
//!
//! Why the driver API and not the runtime (`libcudart`): nvImageCodec and
//! nvJPEG2000 link the CUDA runtime statically and need only the driver
//! library, which every machine with an NVIDIA driver has (nvImageCodec
//! itself `dlopen`s it). The wheels do not bring a `libcudart.so.13`, so
//! depending on one would add a package for five functions. The runtime that
//! nvImageCodec carries works in each device's *primary* context; this module
//! retains that same context, so memory allocated here is memory the decoder
//! can write.
//!
//! Signatures follow `cuda.h` (CUDA 12/13): `CUresult` is an `int`-sized
//! enum, `CUdevice` an `int`, `CUdeviceptr` an `unsigned long long`, and the
//! `_v2` names are the symbols `cuda.h` maps the plain names to.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::ManuallyDrop;

use libloading::Library;

use crate::ffi::symbol;
use crate::{Component, Error};

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;
/// `CUdeviceptr`: a device address.
pub(crate) type DevicePtr = u64;

const CUDA_SUCCESS: CuResult = 0;
const CUDA_ERROR_NO_DEVICE: CuResult = 100;

/// The soname the driver installs.
const DRIVER_SONAME: &str = "libcuda.so.1";

#[derive(Clone, Copy)]
struct DriverFns {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    driver_get_version: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    primary_ctx_release: unsafe extern "C" fn(CuDevice) -> CuResult,
    ctx_push: unsafe extern "C" fn(CuContext) -> CuResult,
    ctx_pop: unsafe extern "C" fn(*mut CuContext) -> CuResult,
    ctx_synchronize: unsafe extern "C" fn() -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut DevicePtr, usize) -> CuResult,
    mem_free: unsafe extern "C" fn(DevicePtr) -> CuResult,
    memcpy_dtoh: unsafe extern "C" fn(*mut c_void, DevicePtr, usize) -> CuResult,
    get_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
}

/// The driver, initialised, with device 0's primary context retained.
pub(crate) struct CudaDriver {
    fns: DriverFns,
    device: CuDevice,
    context: CuContext,
    /// Never unloaded: the driver outlives every context user in the process.
    _lib: ManuallyDrop<Library>,
}

// SAFETY: the context handle is a process-wide object the driver lets any
// thread make current; every call here pushes it first and pops it after.
unsafe impl Send for CudaDriver {}
// SAFETY: as above; the driver API is thread-safe.
unsafe impl Sync for CudaDriver {}

impl CudaDriver {
    /// Loads `libcuda.so.1` through the system loader, checks that it
    /// supports the CUDA major version `runtime` (nvImageCodec's
    /// `cudart_version`, e.g. 13030) was built with, initialises the driver
    /// and retains device 0's primary context (the one the CUDA runtime
    /// inside nvImageCodec uses for `device_id` 0).
    pub(crate) fn load(runtime: u32) -> Result<CudaDriver, Error> {
        // SAFETY: loading the NVIDIA driver library runs no initialisers
        // beyond its own.
        let lib = unsafe { Library::new(DRIVER_SONAME) }.map_err(|e| Error::NotFound {
            component: Component::CudaDriver,
            tried: vec![format!(
                "{DRIVER_SONAME} (system loader: {})",
                crate::locate::loader_error(&e)
            )],
        })?;
        let c = Component::CudaDriver;
        // SAFETY: each type is the cuda.h prototype of that symbol.
        let fns = unsafe {
            DriverFns {
                init: symbol(&lib, c, "cuInit")?,
                driver_get_version: symbol(&lib, c, "cuDriverGetVersion")?,
                device_get_count: symbol(&lib, c, "cuDeviceGetCount")?,
                device_get: symbol(&lib, c, "cuDeviceGet")?,
                primary_ctx_retain: symbol(&lib, c, "cuDevicePrimaryCtxRetain")?,
                primary_ctx_release: symbol(&lib, c, "cuDevicePrimaryCtxRelease_v2")?,
                ctx_push: symbol(&lib, c, "cuCtxPushCurrent_v2")?,
                ctx_pop: symbol(&lib, c, "cuCtxPopCurrent_v2")?,
                ctx_synchronize: symbol(&lib, c, "cuCtxSynchronize")?,
                mem_alloc: symbol(&lib, c, "cuMemAlloc_v2")?,
                mem_free: symbol(&lib, c, "cuMemFree_v2")?,
                memcpy_dtoh: symbol(&lib, c, "cuMemcpyDtoH_v2")?,
                get_error_name: symbol(&lib, c, "cuGetErrorName")?,
            }
        };
        let check = |call: &'static str, code: CuResult| cuda_result(&fns, call, code);

        // SAFETY: plain driver calls with valid out-pointers.
        unsafe {
            let mut driver: c_int = 0;
            check("cuDriverGetVersion", (fns.driver_get_version)(&mut driver))?;
            // CUDA's minor-version compatibility: any driver of the same
            // major version runs a newer-minor runtime.
            if (driver.max(0) as u32) / 1000 < runtime / 1000 {
                return Err(Error::CudaDriverTooOld {
                    driver: driver.max(0) as u32,
                    runtime,
                });
            }
            let code = (fns.init)(0);
            if code == CUDA_ERROR_NO_DEVICE {
                return Err(Error::NoCudaDevice {
                    detail: "cuInit: CUDA_ERROR_NO_DEVICE".to_owned(),
                });
            }
            check("cuInit", code)?;
            let mut count: c_int = 0;
            check("cuDeviceGetCount", (fns.device_get_count)(&mut count))?;
            if count < 1 {
                return Err(Error::NoCudaDevice {
                    detail: format!("cuDeviceGetCount reported {count}"),
                });
            }
            let mut device: CuDevice = 0;
            check("cuDeviceGet", (fns.device_get)(&mut device, 0))?;
            let mut context: CuContext = std::ptr::null_mut();
            check(
                "cuDevicePrimaryCtxRetain",
                (fns.primary_ctx_retain)(&mut context, device),
            )?;
            Ok(CudaDriver {
                fns,
                device,
                context,
                _lib: ManuallyDrop::new(lib),
            })
        }
    }

    /// Runs `f` with the primary context current on this thread, restoring
    /// whatever was current before.
    fn in_context<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        // SAFETY: the context is retained for as long as `self` lives.
        self.check("cuCtxPushCurrent", unsafe {
            (self.fns.ctx_push)(self.context)
        })?;
        let out = f();
        let mut popped: CuContext = std::ptr::null_mut();
        // SAFETY: pops the context pushed above.
        let pop = self.check("cuCtxPopCurrent", unsafe {
            (self.fns.ctx_pop)(&mut popped)
        });
        let value = out?;
        pop?;
        Ok(value)
    }

    /// Waits for all work queued on the device by anyone in this process
    /// (the decoder's own streams included).
    pub(crate) fn synchronize(&self) -> Result<(), Error> {
        self.in_context(|| {
            // SAFETY: no arguments; a context is current.
            self.check("cuCtxSynchronize", unsafe { (self.fns.ctx_synchronize)() })
        })
    }

    /// Copies `bytes` bytes from device address `src` into `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `bytes` bytes of writes, and `src..src+bytes`
    /// inside one allocation made by [`DeviceArena`].
    pub(crate) unsafe fn copy_to_host(
        &self,
        dst: *mut u8,
        src: DevicePtr,
        bytes: usize,
    ) -> Result<(), Error> {
        self.in_context(|| {
            // SAFETY: forwarded to the caller.
            self.check("cuMemcpyDtoH", unsafe {
                (self.fns.memcpy_dtoh)(dst.cast(), src, bytes)
            })
        })
    }

    fn check(&self, call: &'static str, code: CuResult) -> Result<(), Error> {
        cuda_result(&self.fns, call, code)
    }
}

impl Drop for CudaDriver {
    fn drop(&mut self) {
        // SAFETY: releases the retain taken in `load`; errors are moot here.
        unsafe { (self.fns.primary_ctx_release)(self.device) };
    }
}

fn cuda_result(fns: &DriverFns, call: &'static str, code: CuResult) -> Result<(), Error> {
    if code == CUDA_SUCCESS {
        return Ok(());
    }
    let mut name: *const c_char = std::ptr::null();
    // SAFETY: the driver writes a pointer to a static string, or leaves null.
    let known = unsafe { (fns.get_error_name)(code, &mut name) } == CUDA_SUCCESS;
    let name = if known && !name.is_null() {
        // SAFETY: cuGetErrorName returns a NUL-terminated static string.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    } else {
        "unknown CUresult".to_owned()
    };
    Err(Error::Cuda { call, code, name })
}

/// One device allocation reused across batches, grown when a batch needs
/// more (the decoder writes every image of a batch into it, each at its own
/// offset).
pub(crate) struct DeviceArena {
    ptr: DevicePtr,
    bytes: usize,
}

/// Offsets inside the arena are rounded up to this (cudaMalloc's own
/// alignment), so every image starts on an aligned address.
pub(crate) const ARENA_ALIGN: usize = 256;

impl DeviceArena {
    /// An arena with nothing allocated yet.
    pub(crate) fn new() -> DeviceArena {
        DeviceArena { ptr: 0, bytes: 0 }
    }

    /// Makes the arena at least `bytes` long (contents not kept) and returns
    /// its base address.
    pub(crate) fn reserve(&mut self, cuda: &CudaDriver, bytes: usize) -> Result<DevicePtr, Error> {
        if bytes <= self.bytes && self.ptr != 0 {
            return Ok(self.ptr);
        }
        self.release(cuda);
        let bytes = bytes.max(1);
        cuda.in_context(|| {
            let mut ptr: DevicePtr = 0;
            // SAFETY: valid out-pointer; a context is current.
            cuda.check("cuMemAlloc", unsafe {
                (cuda.fns.mem_alloc)(&mut ptr, bytes)
            })?;
            self.ptr = ptr;
            self.bytes = bytes;
            Ok(ptr)
        })
    }

    /// Frees the allocation, if any. Must be called before the driver is
    /// dropped (the arena does not hold a reference to it).
    pub(crate) fn release(&mut self, cuda: &CudaDriver) {
        if self.ptr != 0 {
            let ptr = self.ptr;
            // SAFETY: `ptr` came from cuMemAlloc and is freed once; a failure
            // here leaks device memory, which is all that can be done.
            let _ =
                cuda.in_context(|| cuda.check("cuMemFree", unsafe { (cuda.fns.mem_free)(ptr) }));
            self.ptr = 0;
            self.bytes = 0;
        }
    }
}
