//! Loading one library the way cudarc does, checking its required symbol, explaining a failure.
//!
//! Also the probes of libraries the runtime does not use itself (NVRTC, cuBLAS, cuBLASLt).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::sync::OnceLock;

use libloading::Library;

use super::error::{diagnosis_text, ProbeError};
use super::spec::LibSpec;

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
pub fn is_not_found(name: &str, msg: &str) -> bool {
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
pub fn load(spec: &LibSpec) -> Result<(Library, LibInfo), ProbeError> {
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

/// A probed library, kept loaded for the life of the process.
pub struct Loaded {
    pub lib: Library,
    pub info: LibInfo,
}

/// Return the cached library, or load it with `spec` and `finish` (which fills in the version)
/// and cache it. Failures are not cached.
pub fn cached(
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
