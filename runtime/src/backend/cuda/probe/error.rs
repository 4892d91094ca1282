//! The errors of the probes, each naming what was looked for, where, and what to do.

use std::path::PathBuf;

use crate::backend::cuda::version::VersionError;

/// Errors of the library and device probes. Every message names what was looked for, where,
/// and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// None of the candidate names of a library could be loaded.
    #[error("symmem: the {library} library could not be loaded. {hint}. Details: searched {} in LD_LIBRARY_PATH ({}), the executable's RUNPATH, the ldconfig cache, /lib and /usr/lib{diagnosis}", short_list(.tried), ld_path_text(.ld_library_path))]
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

/// Names as a list of `quoted` names.
fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Many names as the first two, the last and how many: the verdict and the fix come first in
/// the message, and thirty names would bury them.
fn short_list(names: &[String]) -> String {
    match names {
        [] => "no names".to_string(),
        [a, b, .., last] if names.len() > 4 => format!(
            "`{a}`, `{b}`, ..., `{last}` ({} names, cudarc's)",
            names.len()
        ),
        _ => format!("{} (cudarc's names)", list(names)),
    }
}

/// `LD_LIBRARY_PATH` for a message: `quoted`, or "unset".
fn ld_path_text(p: &Option<String>) -> String {
    match p {
        Some(p) if !p.is_empty() => format!("`{p}`"),
        _ => "unset".to_string(),
    }
}

/// The diagnosis part of [`ProbeError::LibraryNotFound`].
pub fn diagnosis_text(extra_tried: &[String], failures: &[String], on_disk: &[PathBuf]) -> String {
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
