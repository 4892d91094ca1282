//! Probing the CUDA driver, NCCL and the GPUs *before* anything touches cudarc.
//!
//! cudarc (feature `dynamic-loading`) loads its libraries lazily, on the first call of any
//! function, and **panics** when none of its candidate names loads
//! (`cudarc::panic_no_lib_found`). symmem therefore probes first, with the very names cudarc
//! tries (`cudarc::get_lib_name_candidates`, for `["cuda", "nvcuda"]` and `["nccl"]`), loaded
//! the way cudarc loads them (`libloading::Library::new(name)`, i.e. `dlopen(name, RTLD_LAZY |
//! RTLD_LOCAL)`): if the probe succeeds, cudarc's own load of the same name succeeds too.
//!
//! The names are bare file names, so the dynamic loader searches `LD_LIBRARY_PATH` (as it was
//! when the process started: changing it from inside the program has no effect), the
//! executable's RUNPATH, the `ldconfig` cache and `/lib`, `/usr/lib`. cudarc reads no
//! environment variable of its own at run time (`CUDA_HOME`, `CUDA_PATH`, ... are only used by
//! its build script for linking).
//!
//! A catch: cudarc's NCCL names are `libnccl.so` (and `libnccl.so.{13,12,11,10,9,1}` and a few
//! Windows-style names) but **not `libnccl.so.2`**, the only name the pip package
//! (`nvidia-nccl-cu12`/`-cu13`) and the runtime packages ship. The probe also tries
//! `libnccl.so.2`, only to explain: when that one loads but no cudarc name does, the error
//! ([`ProbeError::NameNotTried`]) says where it is and which symlink to create.
//!
//! Loaded libraries stay loaded for the life of the process (the CUDA driver in particular
//! must never be unloaded after `cuInit`).

mod driver;
mod error;
mod gpu;
mod library;
mod nccl;
mod spec;
#[cfg(test)]
mod tests;

pub use driver::{cuda_has_symbol, probe_cuda};
pub use error::ProbeError;
pub use gpu::{gpu_count, require_gpus};
pub use library::{probe_cublas, probe_cublas_lt, probe_library, probe_nvrtc, LibInfo};
pub use nccl::{nccl_has_symbol, nccl_version, probe_nccl};
pub use spec::{LibSpec, NCCL_PIP_HINT};
