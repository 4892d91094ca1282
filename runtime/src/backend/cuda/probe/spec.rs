//! What to look for: the specs (`LibSpec`) of the libraries symmem probes.
//!
//! With cudarc's names, and the folders to search when nothing loads.

use std::path::{Path, PathBuf};

/// How to look for one library. [`probe_cuda`](super::probe_cuda) and
/// [`probe_nccl`](super::probe_nccl) use the specs of [`LibSpec::cuda`] and [`LibSpec::nccl`];
/// [`probe_library`](super::probe_library) takes any spec (for tests and
/// diagnostics).
#[derive(Clone, Debug)]
pub struct LibSpec {
    /// Which library, for messages ("CUDA driver").
    pub library: &'static str,
    /// The names to load, in order (cudarc's names for the real libraries; for NCCL
    /// `libnccl.so.2` first).
    pub candidates: Vec<String>,
    /// Names cudarc does not try, tried last only to explain a failure
    /// ([`ProbeError::NameNotTried`](super::ProbeError::NameNotTried)).
    pub diagnostic_names: Vec<String>,
    /// A symbol the library must export.
    pub required_symbol: &'static str,
    /// Folders to look into (without loading anything) when nothing loads, to point at files
    /// that exist but are not on the search path.
    pub scan_dirs: Vec<PathBuf>,
    /// File-name prefix of those files, e.g. `libnccl.so`.
    pub file_prefix: String,
    /// What to do when nothing loads.
    pub hint: String,
}

/// How to put NCCL's pip package on the search path (the command line the hints print).
pub const NCCL_PIP_HINT: &str = "export LD_LIBRARY_PATH=\"$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], \"lib\"))'):$LD_LIBRARY_PATH\"";

/// The file names cudarc (0.19.10, `get_lib_name_candidates`) loads library `lib_name` under
/// when it loads at run time, for the CUDA version of cudarc's bindings
/// (`cudarc::driver::sys::CUDA_VERSION`). A copy, because cudarc defines that function only
/// under its `dynamic-loading` feature, and symmem must also build when another crate (candle)
/// gives cudarc `dynamic-linking`; the unit test `our_names_are_cudarcs` keeps it equal to
/// cudarc's in every build where cudarc has the function.
pub fn lib_name_candidates(lib_name: &str) -> Vec<String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let pointer_width = if cfg!(target_pointer_width = "32") {
        "32"
    } else {
        "64"
    };
    let version = cudarc::driver::sys::CUDA_VERSION;
    let major = version / 1000;
    let minor = (version % 1000) / 10;
    vec![
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_{major}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_{major}{minor}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_{major}{minor}_0{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_{major}0_{minor}{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_10{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_11{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_12{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_{major}0_0{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{pointer_width}_9{DLL_SUFFIX}"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.{major}"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.12"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.11"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.10"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.9"),
        format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}.1"),
    ]
}

/// `names` in order, each once.
fn dedup(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// `$var/<suffix>` for each suffix, when `var` is set.
fn env_dirs(var: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => suffixes.iter().map(|s| Path::new(&v).join(s)).collect(),
        _ => Vec::new(),
    }
}

/// The folders where CUDA and NVIDIA libraries are usually installed.
fn common_lib_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "CONDA_PREFIX"] {
        dirs.extend(env_dirs(
            var,
            &[
                "lib64",
                "lib",
                "targets/x86_64-linux/lib",
                "targets/sbsa-linux/lib",
            ],
        ));
    }
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/local/cuda/targets/sbsa-linux/lib",
            "/usr/local/nvidia/lib64",
            "/usr/local/nvidia/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/local/lib",
            "/usr/lib/wsl/lib",
            "/opt/cuda/lib64",
        ]
        .iter()
        .map(PathBuf::from),
    );
    dirs
}

impl LibSpec {
    /// The CUDA driver (`libcuda`), with cudarc's names for `["cuda", "nvcuda"]`.
    pub fn cuda() -> Self {
        let candidates = dedup(
            ["cuda", "nvcuda"]
                .iter()
                .flat_map(|n| lib_name_candidates(n)),
        );
        LibSpec {
            library: "CUDA driver",
            candidates,
            diagnostic_names: Vec::new(),
            required_symbol: "cuInit",
            scan_dirs: common_lib_dirs(),
            file_prefix: format!("{}cuda.so", std::env::consts::DLL_PREFIX),
            hint: "Install the NVIDIA driver: libcuda comes with the NVIDIA driver (not with the CUDA toolkit); in a container start it with GPUs (`docker run --gpus all`, NVIDIA container runtime); if libcuda.so.1 lives in a folder the loader does not search, add that folder to LD_LIBRARY_PATH before starting the program (the toolkit's `stubs/libcuda.so` is not a driver)".to_string(),
        }
    }

    /// NCCL (`libnccl`): `libnccl.so.2` first (the library's soname, and the only name the pip
    /// wheels, PyTorch and the runtime packages ship), then cudarc's names for `["nccl"]`.
    pub fn nccl() -> Self {
        let so2 = format!(
            "{}nccl{}.2",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let candidates = dedup(std::iter::once(so2).chain(lib_name_candidates("nccl")));
        let diagnostic_names = Vec::new();
        let mut scan_dirs = common_lib_dirs();
        if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
            scan_dirs.extend(python_nccl_dirs(Path::new(&venv)));
        }
        if let Some(conda) = std::env::var_os("CONDA_PREFIX") {
            scan_dirs.extend(python_nccl_dirs(Path::new(&conda)));
        }
        LibSpec {
            library: "NCCL",
            candidates,
            diagnostic_names,
            required_symbol: "ncclGetVersion",
            scan_dirs,
            file_prefix: format!("{}nccl{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX),
            hint: format!(
                "Install NCCL 2.27.3 or later (2.30.7 or later recommended), e.g. `pip install nvidia-nccl-cu13` (or -cu12), and put the folder holding it on LD_LIBRARY_PATH before starting the program; for the pip package: {NCCL_PIP_HINT}"
            ),
        }
    }
}

impl LibSpec {
    /// NVRTC (`libnvrtc`), with cudarc's names for `["nvrtc"]` (`cudarc::nvrtc` panics without
    /// it).
    pub fn nvrtc() -> Self {
        LibSpec {
            library: "NVRTC",
            candidates: dedup(lib_name_candidates("nvrtc")),
            diagnostic_names: Vec::new(),
            required_symbol: "nvrtcCompileProgram",
            scan_dirs: common_lib_dirs(),
            file_prefix: format!("{}nvrtc.so", std::env::consts::DLL_PREFIX),
            hint: "Install the CUDA runtime compiler (NVRTC) of the CUDA toolkit, or `pip install nvidia-cuda-nvrtc-cu13`, and put its lib folder on LD_LIBRARY_PATH before starting the program".to_string(),
        }
    }

    /// cuBLAS (`libcublas`, which needs `libcublasLt` next to it), with cudarc's names for
    /// `["cublas"]` (`cudarc::cublas` panics without it).
    pub fn cublas() -> Self {
        LibSpec {
            library: "cuBLAS",
            candidates: dedup(lib_name_candidates("cublas")),
            diagnostic_names: Vec::new(),
            required_symbol: "cublasCreate_v2",
            scan_dirs: common_lib_dirs(),
            file_prefix: format!("{}cublas.so", std::env::consts::DLL_PREFIX),
            hint: "Install cuBLAS of the CUDA toolkit, or `pip install nvidia-cublas-cu13`, and put its lib folder on LD_LIBRARY_PATH before starting the program".to_string(),
        }
    }
}

impl LibSpec {
    /// cuBLASLt (`libcublasLt`), with cudarc's names for `["cublasLt"]` (`cudarc::cublaslt`
    /// panics without it).
    pub fn cublas_lt() -> Self {
        LibSpec {
            library: "cuBLASLt",
            candidates: dedup(lib_name_candidates("cublasLt")),
            diagnostic_names: Vec::new(),
            required_symbol: "cublasLtMatmul",
            scan_dirs: common_lib_dirs(),
            file_prefix: format!("{}cublasLt.so", std::env::consts::DLL_PREFIX),
            hint: "Install cuBLAS of the CUDA toolkit (it ships libcublasLt), or `pip install nvidia-cublas-cu13`, and put its lib folder on LD_LIBRARY_PATH before starting the program".to_string(),
        }
    }
}

/// `<prefix>/lib/python3.*/site-packages/nvidia/nccl/lib` folders (pip's NCCL in a virtual or
/// conda environment).
fn python_nccl_dirs(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
        return out;
    };
    for e in entries.flatten().take(64) {
        let name = e.file_name();
        if name.to_string_lossy().starts_with("python") {
            out.push(e.path().join("site-packages/nvidia/nccl/lib"));
        }
    }
    out
}
