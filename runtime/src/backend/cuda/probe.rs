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

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libloading::Library;

use super::version::{NcclVersion, VersionError};

/// Errors of the library and device probes. Every message names what was looked for, where,
/// and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// None of the candidate names of a library could be loaded.
    #[error("symmem: the {library} library could not be loaded: tried the names {} (the names cudarc loads), searched by the dynamic loader in LD_LIBRARY_PATH ({}), the executable's RUNPATH, the ldconfig cache, /lib and /usr/lib{diagnosis}. {hint}", list(.tried), ld_path_text(.ld_library_path))]
    LibraryNotFound {
        /// Which library ("CUDA driver", "NCCL").
        library: &'static str,
        /// Every name tried, in cudarc's order.
        tried: Vec<String>,
        /// `LD_LIBRARY_PATH` as this process sees it (`None` when unset).
        ld_library_path: Option<String>,
        /// What else was found out, starting with "; " (or empty): names tried that cudarc does
        /// not load, files that exist but failed to load (with the loader's message), files in
        /// well-known folders that are not on the search path.
        diagnosis: String,
        /// What to do.
        hint: String,
    },

    /// The library exists under a name cudarc does not try (e.g. only `libnccl.so.2`), so
    /// cudarc would panic although the library is installed.
    #[error("symmem: the {library} library is installed as `{loaded}`{}, but cudarc only loads the names {} and none of them is on the loader's search path. {hint}", .path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default(), list(.tried))]
    NameNotTried {
        /// Which library.
        library: &'static str,
        /// The name that did load.
        loaded: String,
        /// Where that file is, when known.
        path: Option<PathBuf>,
        /// The names cudarc tries.
        tried: Vec<String>,
        /// What to do (names the folder and the symlink to create).
        hint: String,
    },

    /// A library loaded but lacks a symbol it must have: it is not the library expected (or
    /// too old).
    #[error("symmem: `{name}`{} was loaded as the {library} library but has no symbol `{symbol}`: it is not a usable {library} library (or too old); put the right one first on LD_LIBRARY_PATH", .path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    MissingSymbol {
        /// Which library.
        library: &'static str,
        /// The name that loaded.
        name: String,
        /// Where that file is, when known.
        path: Option<PathBuf>,
        /// The symbol that is missing.
        symbol: &'static str,
    },

    /// A CUDA driver call made by the probe failed.
    #[error("symmem: {call} failed with {name} ({code}): {description}. {hint}")]
    Driver {
        /// The driver function.
        call: &'static str,
        /// The `CUresult` code.
        code: i32,
        /// The code's name, e.g. `CUDA_ERROR_NO_DEVICE`.
        name: String,
        /// The driver's description of the code.
        description: String,
        /// What to check.
        hint: &'static str,
    },

    /// An NCCL call made by the probe failed.
    #[error("symmem: {call} failed with NCCL result {code}; the NCCL library may be broken")]
    Nccl {
        /// The NCCL function.
        call: &'static str,
        /// The `ncclResult_t` code.
        code: i32,
    },

    /// Fewer GPUs are visible than needed.
    #[error("symmem: {needed} GPU(s) needed (one per rank) but {found} {} visible (CUDA_VISIBLE_DEVICES={}); check `nvidia-smi`, CUDA_VISIBLE_DEVICES, and that the container was started with GPUs (`--gpus all`)", if *.found == 1 { "is" } else { "are" }, .visible_devices.as_deref().unwrap_or("<unset>"))]
    NotEnoughGpus {
        /// GPUs needed.
        needed: usize,
        /// GPUs visible.
        found: usize,
        /// `CUDA_VISIBLE_DEVICES` (`None` when unset).
        visible_devices: Option<String>,
    },

    /// The NCCL version code could not be decoded.
    #[error(transparent)]
    Version(#[from] VersionError),
}

fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

fn ld_path_text(p: &Option<String>) -> String {
    match p {
        Some(p) if !p.is_empty() => format!("`{p}`"),
        _ => "unset".to_string(),
    }
}

/// The diagnosis part of [`ProbeError::LibraryNotFound`].
fn diagnosis_text(extra_tried: &[String], failures: &[String], on_disk: &[PathBuf]) -> String {
    let mut d = String::new();
    if !extra_tried.is_empty() {
        d.push_str(&format!(
            "; also tried {} (not loaded by cudarc, for the diagnosis only)",
            list(extra_tried)
        ));
    }
    if !failures.is_empty() {
        d.push_str(&format!(
            "; these were found but failed to load: {}",
            failures.join("; ")
        ));
    }
    if !on_disk.is_empty() {
        let paths: Vec<String> = on_disk.iter().map(|p| p.display().to_string()).collect();
        d.push_str(&format!(
            "; found on disk but not on the search path: {} (add the folder to LD_LIBRARY_PATH)",
            paths.join(", ")
        ));
    }
    d
}

/// What a successful probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibInfo {
    /// Which library ("CUDA driver", "NCCL").
    pub library: &'static str,
    /// The name that loaded (one of cudarc's names), e.g. `libnccl.so`.
    pub name: String,
    /// The file it resolved to, when the platform can tell.
    pub path: Option<PathBuf>,
    /// The raw version code: `cuDriverGetVersion` (e.g. 13000) for the driver, `ncclGetVersion`
    /// (e.g. 22803) for NCCL; `None` when the call failed.
    pub version_code: Option<i32>,
    /// The version in words: "13.0" for the driver, "2.28.3" for NCCL.
    pub version: Option<String>,
}

/// How to look for one library. [`probe_cuda`] and [`probe_nccl`] use the specs of
/// [`LibSpec::cuda`] and [`LibSpec::nccl`]; [`probe_library`] takes any spec (for tests and
/// diagnostics).
#[derive(Clone, Debug)]
pub struct LibSpec {
    /// Which library, for messages ("CUDA driver").
    pub library: &'static str,
    /// The names to load, in order (cudarc's names for the real libraries).
    pub candidates: Vec<String>,
    /// Names cudarc does not try, tried last only to explain a failure
    /// ([`ProbeError::NameNotTried`]).
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

fn dedup(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn env_dirs(var: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => suffixes.iter().map(|s| Path::new(&v).join(s)).collect(),
        _ => Vec::new(),
    }
}

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
                .flat_map(|n| cudarc::get_lib_name_candidates(n)),
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

    /// NCCL (`libnccl`), with cudarc's names for `["nccl"]`, plus `libnccl.so.2` for the
    /// diagnosis.
    pub fn nccl() -> Self {
        let candidates = dedup(cudarc::get_lib_name_candidates("nccl"));
        let so2 = format!(
            "{}nccl{}.2",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let diagnostic_names = if candidates.contains(&so2) {
            Vec::new()
        } else {
            vec![so2]
        };
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
                "Install NCCL 2.27.3 or later (2.30.7 or later recommended), e.g. `pip install nvidia-nccl-cu13` (or -cu12), and put the folder holding it on LD_LIBRARY_PATH before starting the program; for the pip package: {NCCL_PIP_HINT}; the pip package ships only `libnccl.so.2`, a name cudarc does not load: also create `libnccl.so` next to it (`ln -s libnccl.so.2 libnccl.so` in that folder, or in any folder on LD_LIBRARY_PATH)"
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
            candidates: dedup(cudarc::get_lib_name_candidates("nvrtc")),
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
            candidates: dedup(cudarc::get_lib_name_candidates("cublas")),
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
            candidates: dedup(cudarc::get_lib_name_candidates("cublasLt")),
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

/// The loader's message for a failed load (libloading's `Display` only says "dlopen failed").
fn load_error_text(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(src) => src.to_string(),
        None => e.to_string(),
    }
}

/// Whether a failed load of `name` just means "no file of that name" (glibc words it
/// `<name>: cannot open shared object file: No such file or directory`). A missing
/// *dependency* of a file that exists names the dependency instead, and is reported.
fn is_not_found(name: &str, msg: &str) -> bool {
    msg.contains("No such file or directory") && msg.starts_with(name)
}

/// Look for files named `<prefix>*` in `dirs` (no loading), skipping `stubs` folders.
fn scan(dirs: &[PathBuf], prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for d in dirs {
        if d.components().any(|c| c.as_os_str() == "stubs") {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten().take(10_000) {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let p = e.path();
                if !found.contains(&p) {
                    found.push(p);
                }
            }
        }
        if found.len() >= 16 {
            break;
        }
    }
    found
}

/// Where the shared object holding `addr` lives (`dladdr`), when the platform can tell.
#[cfg(unix)]
fn path_of_address(addr: *const c_void) -> Option<PathBuf> {
    #[repr(C)]
    struct DlInfo {
        dli_fname: *const c_char,
        dli_fbase: *mut c_void,
        dli_sname: *const c_char,
        dli_saddr: *mut c_void,
    }
    extern "C" {
        fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    }
    if addr.is_null() {
        return None;
    }
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: `info` is a valid out-parameter; dladdr only reads `addr` as a number.
    let ok = unsafe { dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: on success dli_fname is a NUL-terminated string owned by the loader, valid while
    // the object stays loaded (we copy it at once).
    let s = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    let p = PathBuf::from(s);
    Some(std::fs::canonicalize(&p).unwrap_or(p))
}

#[cfg(not(unix))]
fn path_of_address(_addr: *const c_void) -> Option<PathBuf> {
    None
}

/// Where the loaded library `lib` lives, found through the address of `symbol`.
fn library_path(lib: &Library, symbol: &str) -> Option<PathBuf> {
    // SAFETY: we only read the symbol's address, never call or dereference it.
    let sym = unsafe { lib.get::<*mut c_void>(symbol) }.ok()?;
    path_of_address(*sym as *const c_void)
}

/// Load the first candidate of `spec` that loads and check its required symbol; the library
/// is returned open.
fn load(spec: &LibSpec) -> Result<(Library, LibInfo), ProbeError> {
    let mut failures = Vec::new();
    for name in &spec.candidates {
        // SAFETY: loading a shared library runs its initialisers. These are the vendor libraries
        // cudarc would load under the same names anyway.
        match unsafe { Library::new(name) } {
            Ok(lib) => {
                // SAFETY: only looking the symbol up, not calling it.
                if unsafe { lib.get::<*mut c_void>(spec.required_symbol) }.is_err() {
                    return Err(ProbeError::MissingSymbol {
                        library: spec.library,
                        name: name.clone(),
                        path: library_path(&lib, spec.required_symbol),
                        symbol: spec.required_symbol,
                    });
                }
                let info = LibInfo {
                    library: spec.library,
                    name: name.clone(),
                    path: library_path(&lib, spec.required_symbol),
                    version_code: None,
                    version: None,
                };
                return Ok((lib, info));
            }
            Err(e) => {
                let msg = load_error_text(&e);
                if !is_not_found(name, &msg) {
                    failures.push(format!("`{name}`: {msg}"));
                }
            }
        }
    }
    for name in &spec.diagnostic_names {
        // SAFETY: as above; the handle is dropped (unloaded) at once.
        if let Ok(lib) = unsafe { Library::new(name) } {
            let path = library_path(&lib, spec.required_symbol);
            let fix = match path.as_ref().and_then(|p| p.parent()) {
                Some(dir) => format!(
                    "create the name cudarc loads next to it: `ln -s {name} {dir}/{first}` (if that folder is not writable, make the link in a folder of your own and add that folder to LD_LIBRARY_PATH), then start the program again",
                    dir = dir.display(),
                    first = spec.candidates.first().map(String::as_str).unwrap_or("?"),
                ),
                None => format!(
                    "create a symlink named `{first}` to it in a folder on LD_LIBRARY_PATH, then start the program again",
                    first = spec.candidates.first().map(String::as_str).unwrap_or("?"),
                ),
            };
            return Err(ProbeError::NameNotTried {
                library: spec.library,
                loaded: name.clone(),
                path,
                tried: spec.candidates.clone(),
                hint: fix,
            });
        }
    }
    Err(ProbeError::LibraryNotFound {
        library: spec.library,
        tried: spec.candidates.clone(),
        ld_library_path: std::env::var("LD_LIBRARY_PATH").ok(),
        diagnosis: diagnosis_text(
            &spec.diagnostic_names,
            &failures,
            &scan(&spec.scan_dirs, &spec.file_prefix),
        ),
        hint: spec.hint.clone(),
    })
}

/// Probe any library described by `spec` (load it, check its required symbol, unload it).
///
/// Errors: [`ProbeError::LibraryNotFound`], [`ProbeError::NameNotTried`],
/// [`ProbeError::MissingSymbol`].
pub fn probe_library(spec: &LibSpec) -> Result<LibInfo, ProbeError> {
    load(spec).map(|(_lib, info)| info)
}

/// The loaded CUDA driver, kept loaded for the life of the process.
struct Loaded {
    lib: Library,
    info: LibInfo,
}

static CUDA: OnceLock<Loaded> = OnceLock::new();
static NCCL: OnceLock<Loaded> = OnceLock::new();

/// Return the cached library, or load it with `spec` and `finish` (which fills in the version)
/// and cache it. Failures are not cached.
fn cached(
    cell: &'static OnceLock<Loaded>,
    spec: impl FnOnce() -> LibSpec,
    finish: impl FnOnce(&Library, &mut LibInfo) -> Result<(), ProbeError>,
) -> Result<&'static Loaded, ProbeError> {
    if let Some(l) = cell.get() {
        return Ok(l);
    }
    let (lib, mut info) = load(&spec())?;
    finish(&lib, &mut info)?;
    let loaded = Loaded { lib, info };
    // A concurrent prober may have won; its handle is kept and ours is dropped (which only
    // lowers the loader's reference count).
    Ok(cell.get_or_init(move || loaded))
}

type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuErrText = unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int;

fn cuda_loaded() -> Result<&'static Loaded, ProbeError> {
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

/// Probe the CUDA driver library with cudarc's names, without cudarc (no panic). On success the
/// library stays loaded; the version is `cuDriverGetVersion`'s (the newest CUDA the driver
/// supports).
///
/// Errors: [`ProbeError::LibraryNotFound`] (the message lists every name tried and what to
/// set), [`ProbeError::MissingSymbol`].
pub fn probe_cuda() -> Result<LibInfo, ProbeError> {
    cuda_loaded().map(|l| l.info.clone())
}

/// Probe NCCL with cudarc's names, without cudarc (no panic), and read its version
/// (`ncclGetVersion`). On success the library stays loaded.
///
/// Errors: [`ProbeError::LibraryNotFound`], [`ProbeError::NameNotTried`] (only `libnccl.so.2`
/// is installed: the message says which symlink to create), [`ProbeError::MissingSymbol`],
/// [`ProbeError::Nccl`], [`ProbeError::Version`].
pub fn probe_nccl() -> Result<LibInfo, ProbeError> {
    nccl_loaded().map(|l| l.info.clone())
}

/// Probe NVRTC (used by `cudarc::nvrtc`) with cudarc's names, without cudarc (no panic).
///
/// Errors: as [`probe_library`].
pub fn probe_nvrtc() -> Result<LibInfo, ProbeError> {
    probe_library(&LibSpec::nvrtc())
}

/// Probe cuBLAS (used by `cudarc::cublas`) with cudarc's names, without cudarc (no panic). A
/// missing `libcublasLt` shows as a load failure of the cuBLAS file found.
///
/// Errors: as [`probe_library`].
pub fn probe_cublas() -> Result<LibInfo, ProbeError> {
    probe_library(&LibSpec::cublas())
}

/// Probe cuBLASLt (before any `cudarc::cublaslt` call, which panics when it is missing).
pub fn probe_cublas_lt() -> Result<LibInfo, ProbeError> {
    probe_library(&LibSpec::cublas_lt())
}

/// Whether the probed NCCL exports `symbol` (false when NCCL cannot be loaded). cudarc's
/// dynamic loading **panics** ("Missing symbol ...") when a bound function is called that the
/// loaded library lacks, e.g. `ncclCommWindowRegister` on NCCL < 2.27: check first.
pub fn nccl_has_symbol(symbol: &str) -> bool {
    // SAFETY: only looking the symbol up, not calling it.
    nccl_loaded().is_ok_and(|l| unsafe { l.lib.get::<*mut c_void>(symbol) }.is_ok())
}

/// Whether the probed CUDA driver exports `symbol` (false when it cannot be loaded); see
/// [`nccl_has_symbol`].
pub fn cuda_has_symbol(symbol: &str) -> bool {
    // SAFETY: only looking the symbol up, not calling it.
    cuda_loaded().is_ok_and(|l| unsafe { l.lib.get::<*mut c_void>(symbol) }.is_ok())
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
/// Errors: the errors of [`probe_cuda`]; [`ProbeError::Driver`] when `cuInit` or
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bogus_spec(dirs: Vec<PathBuf>) -> LibSpec {
        LibSpec {
            library: "bogus",
            candidates: vec![
                "libsymmem_bogus_a.so".into(),
                "libsymmem_bogus_a.so.7".into(),
            ],
            diagnostic_names: vec!["libsymmem_bogus_a.so.2".into()],
            required_symbol: "bogus_symbol",
            scan_dirs: dirs,
            file_prefix: "libsymmem_bogus_a.so".into(),
            hint: "set BOGUS_HINT".into(),
        }
    }

    #[test]
    fn cudarc_names_are_used() {
        let cuda = LibSpec::cuda();
        assert!(cuda.candidates.contains(&"libcuda.so".to_string()));
        assert!(cuda.candidates.contains(&"libcuda.so.1".to_string()));
        let nccl = LibSpec::nccl();
        assert_eq!(
            nccl.candidates.first().map(String::as_str),
            Some("libnccl.so")
        );
        assert!(!nccl.candidates.contains(&"libnccl.so.2".to_string()));
        assert_eq!(nccl.diagnostic_names, vec!["libnccl.so.2".to_string()]);
    }

    #[test]
    fn missing_library_lists_every_name() {
        let e = probe_library(&bogus_spec(Vec::new())).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ProbeError::LibraryNotFound { .. }), "{e:?}");
        for n in [
            "libsymmem_bogus_a.so",
            "libsymmem_bogus_a.so.7",
            "libsymmem_bogus_a.so.2",
            "LD_LIBRARY_PATH",
            "BOGUS_HINT",
        ] {
            assert!(msg.contains(n), "{n} missing from: {msg}");
        }
    }

    #[test]
    fn files_on_disk_are_pointed_at() {
        let dir = std::env::temp_dir().join(format!("symmem-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("libsymmem_bogus_a.so.2");
        std::fs::write(&file, b"not a library").unwrap();
        let e = probe_library(&bogus_spec(vec![
            dir.clone(),
            PathBuf::from("/definitely/not/here"),
        ]))
        .unwrap_err();
        let msg = e.to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    #[test]
    fn a_file_that_is_no_library_is_reported() {
        let dir = std::env::temp_dir().join(format!("symmem-probe-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("libsymmem_bogus_b.so");
        std::fs::write(&file, b"not a library").unwrap();
        let mut spec = bogus_spec(Vec::new());
        spec.candidates = vec![file.display().to_string()];
        let e = probe_library(&spec).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        let ProbeError::LibraryNotFound { diagnosis, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            diagnosis.contains("failed to load") && diagnosis.contains(&file.display().to_string()),
            "{e}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_library_loads_and_resolves() {
        let mut spec = bogus_spec(Vec::new());
        spec.candidates.push("libm.so.6".into());
        spec.required_symbol = "cos";
        let info = probe_library(&spec).unwrap();
        assert_eq!(info.name, "libm.so.6");
        let path = info.path.expect("dladdr path");
        assert!(path.is_absolute() && path.exists(), "{path:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_symbol_is_reported() {
        let mut spec = bogus_spec(Vec::new());
        spec.candidates = vec!["libm.so.6".into()];
        let e = probe_library(&spec).unwrap_err();
        assert!(
            matches!(
                e,
                ProbeError::MissingSymbol {
                    symbol: "bogus_symbol",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("bogus_symbol"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_diagnostic_name_explains_the_mismatch() {
        let mut spec = bogus_spec(Vec::new());
        spec.diagnostic_names = vec!["libm.so.6".into()];
        spec.required_symbol = "cos";
        let e = probe_library(&spec).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ProbeError::NameNotTried { .. }), "{e:?}");
        assert!(
            msg.contains("libm.so.6")
                && msg.contains("ln -s")
                && msg.contains("libsymmem_bogus_a.so"),
            "{msg}"
        );
    }

    #[test]
    fn not_found_is_told_from_a_missing_dependency() {
        let own = "libx.so.1: cannot open shared object file: No such file or directory";
        let dep = "libxLt.so.1: cannot open shared object file: No such file or directory";
        assert!(is_not_found("libx.so.1", own));
        assert!(!is_not_found("libx.so.1", dep));
        assert!(!is_not_found("libx.so.1", "libx.so.1: invalid ELF header"));
    }

    #[test]
    fn other_probes_never_panic() {
        for (r, lib) in [
            (probe_nvrtc(), "libnvrtc.so"),
            (probe_cublas(), "libcublas.so"),
        ] {
            match r {
                Ok(info) => assert!(info.name.starts_with(lib), "{info:?}"),
                Err(e) => assert!(e.to_string().contains(lib), "{e}"),
            }
        }
        let _ = nccl_has_symbol("ncclCommWindowRegister");
        assert!(!cuda_has_symbol("symmem_no_such_symbol"));
        assert!(!nccl_has_symbol("symmem_no_such_symbol"));
    }

    /// On a machine without CUDA/NCCL (CI), the real probes return errors naming cudarc's names;
    /// on a GPU machine they succeed. Either way nothing panics.
    #[test]
    fn real_probes_never_panic() {
        match probe_cuda() {
            Ok(info) => {
                assert!(info.name.starts_with("libcuda") || info.name.contains("nvcuda"));
                let n = gpu_count().unwrap_or(0);
                if n == 0 {
                    assert!(matches!(
                        require_gpus(1),
                        Err(ProbeError::NotEnoughGpus { .. } | ProbeError::Driver { .. })
                    ));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("libcuda.so") && msg.contains("libcuda.so.1"),
                    "{msg}"
                );
                assert!(gpu_count().is_err());
                assert!(require_gpus(1).is_err());
            }
        }
        match probe_nccl() {
            Ok(info) => {
                assert!(info.version.is_some());
                assert!(nccl_version().is_ok());
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("libnccl.so"), "{msg}");
                if let ProbeError::LibraryNotFound { tried, .. } = &e {
                    assert!(
                        msg.contains("libnccl.so.2") && msg.contains("nvidia.nccl"),
                        "{msg}"
                    );
                    assert_eq!(tried, &LibSpec::nccl().candidates);
                }
                assert!(nccl_version().is_err());
            }
        }
    }
}
