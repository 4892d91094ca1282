//! The CUDA driver library (`libcuda`): probed once with cudarc's names; its version and symbols.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use super::error::ProbeError;
use super::library::{cached, LibInfo, Loaded};
use super::spec::LibSpec;

static CUDA: OnceLock<Loaded> = OnceLock::new();

/// `CUresult f(int*)` (`cuDriverGetVersion`, `cuDeviceGetCount`), also `ncclGetVersion`'s shape.
// The C signatures of driver entry points looked up before cudarc may touch the driver;
// calling one needs its C contract, stated at each call site (`SAFETY`).
pub type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;

/// The CUDA driver, loaded once with its version read (a failure is not cached).
pub fn cuda_loaded() -> Result<&'static Loaded, ProbeError> {
    cached(&CUDA, LibSpec::cuda, |lib, info| {
        // SAFETY: `cuDriverGetVersion(int*)` is the driver's signature; it needs no cuInit.
        if let Ok(f) = unsafe { lib.get::<CuIntOut>("cuDriverGetVersion") } {
            let mut v: c_int = 0;
            // SAFETY: valid out-parameter.
            if unsafe { f(&mut v) } == 0 && v > 0 {
                info.version_code = Some(v);
                info.version = Some(format!("{}.{}", v / 1000, (v % 1000) / 10));
            }
        }
        Ok(())
    })
}

/// Probe the CUDA driver library with cudarc's names, without cudarc (no panic). On success the
/// library stays loaded; the version is `cuDriverGetVersion`'s (the newest CUDA the driver
/// supports).
///
/// Errors: [`ProbeError::LibraryNotFound`] (the message lists every name tried and what to
/// set), [`ProbeError::MissingSymbol`].
pub fn probe_cuda() -> Result<LibInfo, ProbeError> {
    cuda_loaded().map(|l| l.info.clone())
}

/// Whether the probed CUDA driver exports `symbol` (false when it cannot be loaded); see
/// [`nccl_has_symbol`](super::nccl_has_symbol).
pub fn cuda_has_symbol(symbol: &str) -> bool {
    // SAFETY: only looking the symbol up, not calling it.
    cuda_loaded().is_ok_and(|l| unsafe { l.lib.get::<*mut c_void>(symbol) }.is_ok())
}
