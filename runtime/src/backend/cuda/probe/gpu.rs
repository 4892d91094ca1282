//! The GPUs the driver sees: `cuInit` and `cuDeviceGetCount` through the probed libcuda.

use std::ffi::{c_char, c_int, c_uint, CStr};

use libloading::Library;

use super::driver::{cuda_loaded, CuIntOut};
use super::error::ProbeError;

// The C signatures of driver entry points looked up before cudarc may touch the driver;
// calling one needs its C contract, stated at each call site (`SAFETY`).
type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuErrText = unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int;

/// A driver `CUresult` as (name, description), through `cuGetErrorName`/`cuGetErrorString`
/// when present, else from a small table.
fn cu_error_text(lib: &Library, code: c_int) -> (String, String) {
    let ask = |sym: &str| -> Option<String> {
        // SAFETY: `CUresult cuGetErrorName(CUresult, const char**)` (same for
        // cuGetErrorString); both work before cuInit and return static strings.
        let f = unsafe { lib.get::<CuErrText>(sym) }.ok()?;
        let mut p: *const c_char = std::ptr::null();
        // SAFETY: valid out-parameter.
        if unsafe { f(code, &mut p) } != 0 || p.is_null() {
            return None;
        }
        // SAFETY: NUL-terminated static string owned by the driver.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let fallback = match code {
        3 => "CUDA_ERROR_NOT_INITIALIZED",
        34 => "CUDA_ERROR_STUB_LIBRARY",
        35 => "CUDA_ERROR_INSUFFICIENT_DRIVER",
        46 => "CUDA_ERROR_DEVICES_UNAVAILABLE",
        100 => "CUDA_ERROR_NO_DEVICE",
        101 => "CUDA_ERROR_INVALID_DEVICE",
        304 => "CUDA_ERROR_OPERATING_SYSTEM",
        803 => "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        804 => "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        999 => "CUDA_ERROR_UNKNOWN",
        _ => "CUDA error",
    };
    let name = ask("cuGetErrorName").unwrap_or_else(|| fallback.to_string());
    let description = ask("cuGetErrorString").unwrap_or_else(|| "no description".to_string());
    (name, description)
}

/// What to check for a failed driver call with `code`.
fn driver_hint(code: c_int) -> &'static str {
    match code {
        34 => "the loaded libcuda is the CUDA toolkit's stub (for linking only): put the driver's libcuda.so.1 first, i.e. remove `.../stubs` from LD_LIBRARY_PATH",
        35 | 803 | 804 => "the driver is older than the CUDA version in use or mismatches its kernel module: update the NVIDIA driver (and check `nvidia-smi`)",
        46 => "the GPUs are busy in exclusive-process mode (check `nvidia-smi -q -d COMPUTE`)",
        _ => "check `nvidia-smi` (driver and kernel module loaded, GPUs healthy) and CUDA_VISIBLE_DEVICES",
    }
}

/// Number of GPUs the driver sees: `cuInit(0)` then `cuDeviceGetCount`, called through the
/// probed libcuda (never through cudarc, so nothing panics). `Ok(0)` when the driver reports
/// `CUDA_ERROR_NO_DEVICE` (e.g. `CUDA_VISIBLE_DEVICES=""`).
///
/// Errors: the errors of [`probe_cuda`](super::probe_cuda); [`ProbeError::Driver`] when `cuInit` or
/// `cuDeviceGetCount` fails otherwise (stub library, driver too old, ...).
pub fn gpu_count() -> Result<usize, ProbeError> {
    let l = cuda_loaded()?;
    let missing = |symbol: &'static str| ProbeError::MissingSymbol {
        library: "CUDA driver",
        name: l.info.name.clone(),
        path: l.info.path.clone(),
        symbol,
    };
    // SAFETY: `CUresult cuInit(unsigned int Flags)`.
    let init = unsafe { l.lib.get::<CuInit>("cuInit") }.map_err(|_| missing("cuInit"))?;
    // SAFETY: `CUresult cuDeviceGetCount(int* count)`.
    let count = unsafe { l.lib.get::<CuIntOut>("cuDeviceGetCount") }
        .map_err(|_| missing("cuDeviceGetCount"))?;
    // SAFETY: flags must be 0; cuInit is thread-safe and idempotent.
    let r = unsafe { init(0) };
    if r == 100 {
        return Ok(0);
    }
    if r != 0 {
        let (name, description) = cu_error_text(&l.lib, r);
        return Err(ProbeError::Driver {
            call: "cuInit",
            code: r,
            name,
            description,
            hint: driver_hint(r),
        });
    }
    let mut n: c_int = 0;
    // SAFETY: valid out-parameter; the driver is initialised.
    let r = unsafe { count(&mut n) };
    if r != 0 {
        let (name, description) = cu_error_text(&l.lib, r);
        return Err(ProbeError::Driver {
            call: "cuDeviceGetCount",
            code: r,
            name,
            description,
            hint: driver_hint(r),
        });
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Check that at least `needed` GPUs are visible (one per rank), returning how many are.
///
/// Errors: the errors of [`gpu_count`]; [`ProbeError::NotEnoughGpus`].
pub fn require_gpus(needed: usize) -> Result<usize, ProbeError> {
    let found = gpu_count()?;
    if found < needed {
        return Err(ProbeError::NotEnoughGpus {
            needed,
            found,
            visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        });
    }
    Ok(found)
}
