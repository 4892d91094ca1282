//! The NCCL library (`libnccl`): probed and loaded once (`libnccl.so.2` first); its version and
//! symbols.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use super::driver::CuIntOut;
use super::error::ProbeError;
use super::library::{cached, LibInfo, Loaded};
use super::spec::LibSpec;
use crate::backend::cuda::version::NcclVersion;

static NCCL: OnceLock<Loaded> = OnceLock::new();

/// NCCL, loaded once with its version read (a failure is not cached).
fn nccl_loaded() -> Result<&'static Loaded, ProbeError> {
    cached(&NCCL, LibSpec::nccl, |lib, info| {
        // SAFETY: `ncclResult_t ncclGetVersion(int*)`; it only writes the compiled-in code.
        let f = unsafe { lib.get::<CuIntOut>("ncclGetVersion") }.map_err(|_| {
            ProbeError::MissingSymbol {
                library: "NCCL",
                name: info.name.clone(),
                path: info.path.clone(),
                symbol: "ncclGetVersion",
            }
        })?;
        let mut v: c_int = 0;
        // SAFETY: valid out-parameter.
        let r = unsafe { f(&mut v) };
        if r != 0 {
            return Err(ProbeError::Nccl {
                call: "ncclGetVersion",
                code: r,
            });
        }
        let ver = NcclVersion::from_code(v)?;
        info.version_code = Some(v);
        info.version = Some(ver.to_string());
        Ok(())
    })
}

/// Probe NCCL (`libnccl.so.2`, then cudarc's names), without cudarc (no panic), and read its version
/// (`ncclGetVersion`). On success the library stays loaded.
///
/// Errors: [`ProbeError::LibraryNotFound`], [`ProbeError::MissingSymbol`],
/// [`ProbeError::Nccl`], [`ProbeError::Version`].
pub fn probe_nccl() -> Result<LibInfo, ProbeError> {
    nccl_loaded().map(|l| l.info.clone())
}

/// Whether the probed NCCL exports `symbol` (false when NCCL cannot be loaded), e.g.
/// `ncclCommWindowRegister`, which NCCL < 2.27 lacks.
pub fn nccl_has_symbol(symbol: &str) -> bool {
    // SAFETY: only looking the symbol up, not calling it.
    nccl_loaded().is_ok_and(|l| unsafe { l.lib.get::<*mut c_void>(symbol) }.is_ok())
}

/// The NCCL library itself, probed as in [`probe_nccl`] and kept loaded for the life of the
/// process: symmem's own NCCL handle (`nccl_api`) resolves its entry points from it.
pub(crate) fn nccl_library() -> Result<&'static libloading::Library, ProbeError> {
    nccl_loaded().map(|l| &l.lib)
}

/// The NCCL version, probed as in [`probe_nccl`].
pub fn nccl_version() -> Result<NcclVersion, ProbeError> {
    let l = nccl_loaded()?;
    let code = l.info.version_code.ok_or(ProbeError::Nccl {
        call: "ncclGetVersion",
        code: -1,
    })?;
    Ok(NcclVersion::from_code(code)?)
}
