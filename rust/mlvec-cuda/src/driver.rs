//! The CUDA driver side: the device's primary context, loaded modules, kernel launches.

use crate::error::{Error, Result};
use crate::nvrtc;
use crate::sources::UNITS;
use cudarc::driver::sys::{self, CUresult};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Mutex, OnceLock};

fn check(call: &'static str, r: CUresult) -> Result<()> {
    if r == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(Error::Driver {
            call,
            msg: format!("{r:?}"),
        })
    }
}

/// Open the driver library and initialise it (once).
fn init() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: only probes whether the library can be opened.
        if !unsafe { sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda.so.1) could be loaded".to_string());
        }
        // SAFETY: the driver library is present.
        let r = unsafe { sys::cuInit(0) };
        if r != CUresult::CUDA_SUCCESS {
            return Err(format!("cuInit failed: {r:?}"));
        }
        Ok(())
    })
    .clone()
    .map_err(Error::Unavailable)
}

/// Number of CUDA devices (an error when there is no usable driver).
pub fn device_count() -> Result<i32> {
    init()?;
    let mut n = 0;
    // SAFETY: driver initialised; valid out-pointer.
    check("cuDeviceGetCount", unsafe { sys::cuDeviceGetCount(&mut n) })?;
    Ok(n)
}

/// Compute capability `(major, minor)` of device `ordinal`.
pub fn compute_capability(ordinal: i32) -> Result<(i32, i32)> {
    let dev = device(ordinal)?;
    let attr = |a| {
        let mut v = 0;
        // SAFETY: valid device and out-pointer.
        check("cuDeviceGetAttribute", unsafe {
            sys::cuDeviceGetAttribute(&mut v, a, dev)
        })
        .map(|()| v)
    };
    Ok((
        attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
    ))
}

fn device(ordinal: i32) -> Result<sys::CUdevice> {
    let n = device_count()?;
    if ordinal < 0 || ordinal >= n {
        return Err(Error::invalid(
            "device",
            format!("CUDA device {ordinal} does not exist ({n} devices)"),
        ));
    }
    let mut dev = 0;
    // SAFETY: valid ordinal and out-pointer.
    check("cuDeviceGet", unsafe { sys::cuDeviceGet(&mut dev, ordinal) })?;
    Ok(dev)
}

/// The kernels of one device, loaded into its primary context.
struct Loaded {
    ctx: sys::CUcontext,
    functions: HashMap<&'static str, sys::CUfunction>,
}

// SAFETY: context and function handles are process-wide driver objects, usable from any thread.
unsafe impl Send for Loaded {}

fn loaded() -> &'static Mutex<HashMap<i32, Loaded>> {
    static LOADED: OnceLock<Mutex<HashMap<i32, Loaded>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn load_device(ordinal: i32) -> Result<Loaded> {
    let dev = device(ordinal)?;
    let (major, minor) = compute_capability(ordinal)?;
    let arch = format!("sm_{major}{minor}");
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // The primary context is the one the CUDA runtime, hence torch, uses on this device.
    // SAFETY: valid device and out-pointer.
    check("cuDevicePrimaryCtxRetain", unsafe {
        sys::cuDevicePrimaryCtxRetain(&mut ctx, dev)
    })?;
    // SAFETY: a retained context.
    check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(ctx) })?;
    let mut functions = HashMap::new();
    for unit in UNITS {
        let image = nvrtc::cubin(unit, &arch)?;
        let mut module: sys::CUmodule = std::ptr::null_mut();
        // SAFETY: `image` is a cubin for this device's architecture; the driver copies it.
        check("cuModuleLoadData", unsafe {
            sys::cuModuleLoadData(&mut module, image.as_ptr() as *const c_void)
        })?;
        for &k in unit.kernels {
            let name = CString::new(k).expect("kernel names hold no NUL byte");
            let mut f: sys::CUfunction = std::ptr::null_mut();
            // SAFETY: loaded module, NUL-terminated name.
            check("cuModuleGetFunction", unsafe {
                sys::cuModuleGetFunction(&mut f, module, name.as_ptr())
            })?;
            functions.insert(k, f);
        }
    }
    Ok(Loaded { ctx, functions })
}

/// A kernel argument, passed by value.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device pointer (0 for "none").
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}

/// Launch geometry: grid `(x, y, z)`, threads per block (1-D), dynamic shared memory bytes.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub shared: u32,
}

/// Launch `kernel` on device `ordinal`, on the CUDA stream handle `stream` (0: the legacy default
/// stream), compiling and loading the kernels on first use. Asynchronous, like any launch.
pub fn launch(ordinal: i32, stream: u64, kernel: &'static str, grid: Grid, args: &[Arg]) -> Result<()> {
    if grid.grid.0 == 0 || grid.grid.1 == 0 || grid.grid.2 == 0 {
        return Ok(());
    }
    if grid.grid.1 > 65_535 || grid.grid.2 > 65_535 || grid.grid.0 > i32::MAX as u32 {
        return Err(Error::invalid(
            "shape",
            format!("launch grid {:?} of {kernel} exceeds CUDA's limits", grid.grid),
        ));
    }
    let mut map = loaded().lock().unwrap_or_else(|e| e.into_inner());
    if let std::collections::hash_map::Entry::Vacant(e) = map.entry(ordinal) {
        e.insert(load_device(ordinal)?);
    }
    let l = &map[&ordinal];
    let f = *l.functions.get(kernel).ok_or_else(|| Error::Driver {
        call: "launch",
        msg: format!("unknown kernel {kernel}"),
    })?;
    // SAFETY: the device's primary context, retained in load_device.
    check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(l.ctx) })?;
    if grid.shared > 48 * 1024 {
        // SAFETY: valid function; the attribute value is checked by the driver.
        check("cuFuncSetAttribute", unsafe {
            sys::cuFuncSetAttribute(
                f,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                grid.shared as i32,
            )
        })?;
    }
    // Every argument is stored in an 8-byte slot; the kernel reads the first 4 or 8 bytes
    // (little-endian targets only).
    let mut slots: Vec<u64> = args
        .iter()
        .map(|a| match *a {
            Arg::Ptr(p) => p,
            Arg::I32(v) => u64::from(v as u32),
            Arg::I64(v) => v as u64,
            Arg::F32(v) => u64::from(v.to_bits()),
        })
        .collect();
    let mut params: Vec<*mut c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect();
    // SAFETY: `params` matches the kernel's parameter list (the typed wrappers in `kernels`
    // build it); the caller guarantees the pointers are live device memory of the right sizes.
    check("cuLaunchKernel", unsafe {
        sys::cuLaunchKernel(
            f,
            grid.grid.0,
            grid.grid.1,
            grid.grid.2,
            grid.block,
            1,
            1,
            grid.shared,
            stream as sys::CUstream,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    })
}

#[cfg(not(target_endian = "little"))]
compile_error!("mlvec-cuda passes kernel arguments in little-endian slots");
