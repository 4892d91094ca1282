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
//! NCCL is the exception: symmem calls it through its own handle (`nccl_api`), not through
//! cudarc, and loads it as **`libnccl.so.2`** first (its soname, and the only name the pip
//! package `nvidia-nccl-cu12`/`-cu13`, PyTorch and the runtime packages ship; cudarc's names,
//! `libnccl.so` and a few versioned and Windows-style ones, do not include it), then under
//! cudarc's names. No symlink is needed.
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
pub(crate) use nccl::nccl_library;
pub use nccl::{nccl_has_symbol, nccl_version, probe_nccl};
pub use spec::{LibSpec, NCCL_PIP_HINT};
