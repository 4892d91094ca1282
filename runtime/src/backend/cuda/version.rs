//! NCCL version decoding and symmem's policy for NCCL symmetric windows.
//!
//! `ncclGetVersion` returns one integer. Since NCCL 2.9 it is
//! `major * 10000 + minor * 100 + patch` (2.28.3 is `22803`); before 2.9 it was
//! `major * 1000 + minor * 100 + patch` (2.8.4 is `2804`). [`NcclVersion::from_code`] decodes
//! both.
//!
//! # The policy, as data
//!
//! [`symmetric_policy`] maps a version to a [`SymmetricPolicy`]:
//!
//! | NCCL                 | policy                               | symmetric windows |
//! |----------------------|--------------------------------------|-------------------|
//! | below 2.27.3         | [`SymmetricPolicy::Unsupported`]     | no: refuse, or plain buffers if the caller allows a fallback |
//! | 2.27.3 to 2.27.x     | [`SymmetricPolicy::Initial`]         | yes, warn once    |
//! | 2.28.0 to 2.30.6     | [`SymmetricPolicy::KnownIssues`]     | yes, warn once    |
//! | 2.30.7 and later     | [`SymmetricPolicy::Full`]            | yes               |
//!
//! Background (NCCL release notes):
//!
//! * 2.27.3 is the first release with `ncclCommWindowRegister`/`ncclCommWindowDeregister` and
//!   the symmetric kernels. Those first kernels handle only sum over 32-bit-or-smaller floating
//!   point types, one collective per group, and non-network communicators (P2P and NVLS
//!   transports); other calls take the regular kernels. Registration needs VMM (cuMem) memory.
//! * 2.28 moved the symmetric kernels onto the device API and lost their
//!   `cudaGridDependencySynchronize()`: with programmatic dependent launch, a symmetric
//!   collective can read its input before the kernel that produced it has made it visible (a
//!   race that shows up as silently wrong results, most easily under CUDA graphs). Restored in
//!   2.30.7. Registering windows while a stream is being captured is also unreliable before
//!   2.30.7.
//! * Per version, [`KNOWN_ISSUES`] lists what applies (2.28.0-2.28.6: corruption with grouped
//!   symmetric operations on very small messages; 2.29.7: a symmetric performance regression;
//!   before 2.31.2: several windows on one allocation corrupt each other), and the policy line
//!   logged once names them with the release to install.
//! * symmem never registers a window during capture (segments are registered eagerly or by
//!   `reserve_symmetric`, which is refused during capture), whatever the version.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors of the NCCL version policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// `ncclGetVersion` returned a code that is not a version.
    #[error("symmem: ncclGetVersion returned {code}, which is not an NCCL version code (expected major*10000 + minor*100 + patch, e.g. 22803 for 2.28.3); the NCCL library may be broken or not NCCL")]
    InvalidCode {
        /// The code as returned.
        code: i32,
    },

    /// The NCCL in use is too old for symmetric windows and no fallback was allowed.
    #[error("symmem: NCCL {found} has no symmetric memory windows (they need NCCL {minimum} or later; {recommended} or later is recommended); update NCCL, e.g. `pip install -U nvidia-nccl-cu13` and point LD_LIBRARY_PATH at its lib folder, or allow the fallback to plain (non-symmetric) buffers")]
    SymmetricUnsupported {
        /// The version found.
        found: NcclVersion,
        /// The first version with symmetric windows.
        minimum: NcclVersion,
        /// The first version without known symmetric-kernel issues.
        recommended: NcclVersion,
    },
}

/// An NCCL version, as `ncclGetVersion` reports it. Ordered by (major, minor, patch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NcclVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl NcclVersion {
    /// A version from its three parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        NcclVersion {
            major,
            minor,
            patch,
        }
    }

    /// Decode `ncclGetVersion`'s integer: `major * 10000 + minor * 100 + patch` since NCCL 2.9
    /// (codes of 10000 and above), `major * 1000 + minor * 100 + patch` before (codes below
    /// 10000, e.g. 2708 for 2.7.8).
    ///
    /// Errors: [`VersionError::InvalidCode`] for zero or negative codes.
    pub fn from_code(code: i32) -> Result<Self, VersionError> {
        if code <= 0 {
            return Err(VersionError::InvalidCode { code });
        }
        let c = code as u32;
        Ok(if c >= 10000 {
            NcclVersion::new(c / 10000, (c % 10000) / 100, c % 100)
        } else {
            NcclVersion::new(c / 1000, (c % 1000) / 100, c % 100)
        })
    }

    /// The code NCCL 2.9+ would report for this version (`major * 10000 + minor * 100 +
    /// patch`), the inverse of [`NcclVersion::from_code`] for such versions.
    pub const fn code(self) -> u64 {
        self.major as u64 * 10000 + self.minor as u64 * 100 + self.patch as u64
    }
}

impl fmt::Display for NcclVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// First NCCL version with symmetric windows (`ncclCommWindowRegister`, symmetric kernels).
pub const MIN_SYMMETRIC: NcclVersion = NcclVersion::new(2, 27, 3);

/// First version of the 2.28 series, where the symmetric kernels moved to the device API and
/// lost their grid-dependency synchronisation.
pub const KNOWN_ISSUES_FROM: NcclVersion = NcclVersion::new(2, 28, 0);

/// First NCCL version without the known symmetric-kernel issues (grid-dependency sync restored;
/// registration during capture reliable).
pub const FULL_SYMMETRIC: NcclVersion = NcclVersion::new(2, 30, 7);

/// The NCCL release that `pip install -U nvidia-nccl-cu13` gives at the time of writing (the
/// version the policy line recommends when a known issue applies).
pub const RECOMMENDED: &str = "2.32";

/// One known problem of NCCL's symmetric memory, with the versions it affects (from NCCL's
/// release notes); [`known_issues`] lists the ones of a version.
///
/// Read its fields; more may be added in any release (`#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KnownIssue {
    /// First affected version.
    pub from: NcclVersion,
    /// First version without it.
    pub fixed_in: NcclVersion,
    /// What goes wrong, and whether symmem is exposed to it.
    pub what: &'static str,
}

/// Every known issue, oldest first.
pub const KNOWN_ISSUES: &[KnownIssue] = &[
    KnownIssue {
        from: NcclVersion::new(2, 27, 3),
        fixed_in: NcclVersion::new(2, 30, 7),
        what: "registering windows while a stream is being captured is unreliable (symmem never does it)",
    },
    KnownIssue {
        from: NcclVersion::new(2, 27, 3),
        fixed_in: NcclVersion::new(2, 31, 2),
        what: "several windows registered on one allocation corrupt each other (symmem registers one window per allocation)",
    },
    KnownIssue {
        from: NcclVersion::new(2, 28, 0),
        fixed_in: NcclVersion::new(2, 28, 7),
        what: "grouped symmetric operations on very small messages can corrupt data",
    },
    KnownIssue {
        from: NcclVersion::new(2, 28, 0),
        fixed_in: NcclVersion::new(2, 30, 7),
        what: "the symmetric kernels miss a grid-dependency synchronisation: a collective may read its input before the producing kernel made it visible (silently wrong results, most likely under CUDA graphs)",
    },
    KnownIssue {
        from: NcclVersion::new(2, 29, 7),
        fixed_in: NcclVersion::new(2, 29, 8),
        what: "a performance regression of the symmetric kernels (results are correct)",
    },
];

/// The known issues that apply to NCCL `v`.
pub fn known_issues(v: NcclVersion) -> impl Iterator<Item = &'static KnownIssue> {
    KNOWN_ISSUES
        .iter()
        .filter(move |i| i.from <= v && v < i.fixed_in)
}

/// What symmem does with NCCL symmetric windows for a given NCCL version (see the module docs
/// for the table). Obtained from [`symmetric_policy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SymmetricPolicy {
    /// Below 2.27.3: no symmetric windows. [`require_symmetric`] refuses, unless the caller
    /// allows a fallback to plain buffers.
    Unsupported,
    /// 2.27.3 to 2.27.x: the first symmetric kernels (sum of 32-bit-or-smaller floats, one
    /// collective per group, intra-node only; other calls use the regular kernels). Allowed;
    /// warned about once.
    Initial,
    /// 2.28.0 to 2.30.6: symmetric kernels without grid-dependency synchronisation (a race,
    /// fixed in 2.30.7) and unreliable registration during capture. Allowed; warned about once;
    /// windows are never registered during capture.
    KnownIssues,
    /// 2.30.7 and later: fully supported.
    Full,
}

impl SymmetricPolicy {
    /// Whether symmetric windows may be used at all under this policy.
    pub const fn allows_symmetric(self) -> bool {
        !matches!(self, SymmetricPolicy::Unsupported)
    }

    /// Whether the policy calls for a one-time warning in the log (see
    /// [`SymmetricPolicy::warning_once`]).
    pub const fn warns(self) -> bool {
        matches!(
            self,
            SymmetricPolicy::Initial | SymmetricPolicy::KnownIssues
        )
    }

    /// Whether windows may be registered while a stream is being captured. Always false:
    /// before 2.30.7 it is unreliable, and symmem never does it on any version.
    pub const fn register_during_capture(self) -> bool {
        false
    }

    /// A short, human-readable account of the policy: what works, what is known to be wrong,
    /// and what symmem does about it.
    pub const fn notes(&self) -> &'static str {
        match self {
            SymmetricPolicy::Unsupported => {
                "no symmetric memory windows before NCCL 2.27.3: symmetric pools are refused, or fall back to plain (non-symmetric) buffers when the caller allows it; update NCCL to 2.30.7 or later"
            }
            SymmetricPolicy::Initial => {
                "first symmetric-window release series (2.27.x): symmetric kernels only for sum over 32-bit-or-smaller floats, one collective per group, intra-node (P2P/NVLS) communicators; other collectives on symmetric buffers use the regular kernels; symmem never registers windows during graph capture; 2.30.7 or later is recommended"
            }
            SymmetricPolicy::KnownIssues => {
                "symmetric windows work, with known issues fixed in 2.30.7: the symmetric kernels miss a grid-dependency synchronisation (a collective may read its input before the producing kernel made it visible, most likely under CUDA graphs), and registering windows during graph capture is unreliable (symmem never does it); update NCCL to 2.30.7 or later when you can"
            }
            SymmetricPolicy::Full => "symmetric windows fully supported",
        }
    }

    /// The line to log once per process for this policy and version, `Some` only the first time
    /// it is called (process wide) for a policy that [`warns`](SymmetricPolicy::warns). The
    /// caller decides where to log it (symmem prints it on stderr).
    pub fn warning_once(self, v: NcclVersion) -> Option<String> {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !self.warns() || WARNED.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(self.log_line(v))
    }

    /// The policy line for version `v` (what [`SymmetricPolicy::warning_once`] returns), e.g.
    /// `symmem: NCCL 2.28.3: symmetric windows work, with known issues ...`.
    ///
    /// The line also lists the [`known_issues`] of `v` and, when there are any, the release to
    /// install.
    pub fn log_line(self, v: NcclVersion) -> String {
        let issues: Vec<&str> = known_issues(v).map(|i| i.what).collect();
        if issues.is_empty() {
            return format!("symmem: NCCL {v}: {}", self.notes());
        }
        format!(
            "symmem: NCCL {v}: {}; known issues of {v}: {}; install NCCL {RECOMMENDED} or later (`pip install -U nvidia-nccl-cu13`)",
            self.notes(),
            issues.join("; ")
        )
    }
}

impl fmt::Display for SymmetricPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.notes())
    }
}

/// The symmetric-window policy for NCCL version `v` (see the table in the module docs).
pub fn symmetric_policy(v: NcclVersion) -> SymmetricPolicy {
    if v < MIN_SYMMETRIC {
        SymmetricPolicy::Unsupported
    } else if v < KNOWN_ISSUES_FROM {
        SymmetricPolicy::Initial
    } else if v < FULL_SYMMETRIC {
        SymmetricPolicy::KnownIssues
    } else {
        SymmetricPolicy::Full
    }
}

/// The policy for `v`, refusing versions without symmetric windows unless `allow_fallback`.
///
/// With `allow_fallback`, a version below 2.27.3 gives `Ok(SymmetricPolicy::Unsupported)`: the
/// caller then uses plain buffers (check [`SymmetricPolicy::allows_symmetric`]).
///
/// Errors: [`VersionError::SymmetricUnsupported`] for versions below 2.27.3 without
/// `allow_fallback`.
pub fn require_symmetric(
    v: NcclVersion,
    allow_fallback: bool,
) -> Result<SymmetricPolicy, VersionError> {
    let policy = symmetric_policy(v);
    if policy.allows_symmetric() || allow_fallback {
        Ok(policy)
    } else {
        Err(VersionError::SymmetricUnsupported {
            found: v,
            minimum: MIN_SYMMETRIC,
            recommended: FULL_SYMMETRIC,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_issues_by_version() {
        let v = |a, b, c| NcclVersion::new(a, b, c);
        let of = |x: NcclVersion| known_issues(x).count();
        assert_eq!(of(v(2, 26, 0)), 0);
        assert_eq!(of(v(2, 27, 3)), 2);
        assert_eq!(
            of(v(2, 28, 3)),
            4,
            "small-message corruption and the race too"
        );
        assert_eq!(of(v(2, 28, 7)), 3);
        assert_eq!(of(v(2, 29, 7)), 4, "the 2.29.7 regression");
        assert_eq!(of(v(2, 29, 8)), 3);
        assert_eq!(of(v(2, 30, 7)), 1, "only the several-windows issue");
        assert_eq!(of(v(2, 31, 2)), 0);
        let line = SymmetricPolicy::Full.log_line(v(2, 30, 7));
        assert!(
            line.contains("several windows") && line.contains("2.32"),
            "{line}"
        );
        let line = SymmetricPolicy::Full.log_line(v(2, 32, 1));
        assert_eq!(
            line,
            "symmem: NCCL 2.32.1: symmetric windows fully supported"
        );
    }

    use super::*;

    fn v(a: u32, b: u32, c: u32) -> NcclVersion {
        NcclVersion::new(a, b, c)
    }

    #[test]
    fn decodes_codes() {
        assert_eq!(NcclVersion::from_code(22803).unwrap(), v(2, 28, 3));
        assert_eq!(NcclVersion::from_code(23007).unwrap(), v(2, 30, 7));
        assert_eq!(NcclVersion::from_code(21903).unwrap(), v(2, 19, 3));
        assert_eq!(NcclVersion::from_code(2708).unwrap(), v(2, 7, 8));
        assert_eq!(NcclVersion::from_code(2804).unwrap(), v(2, 8, 4));
        assert_eq!(NcclVersion::from_code(30000).unwrap(), v(3, 0, 0));
        assert_eq!(NcclVersion::from_code(22803).unwrap().code(), 22803);
        assert!(matches!(
            NcclVersion::from_code(0),
            Err(VersionError::InvalidCode { code: 0 })
        ));
        assert!(matches!(
            NcclVersion::from_code(-5),
            Err(VersionError::InvalidCode { code: -5 })
        ));
        assert!(NcclVersion::from_code(i32::MAX).is_ok());
    }

    #[test]
    fn displays() {
        assert_eq!(v(2, 28, 3).to_string(), "2.28.3");
        assert_eq!(NcclVersion::from_code(23007).unwrap().to_string(), "2.30.7");
    }

    #[test]
    fn orders() {
        assert!(v(2, 27, 3) < v(2, 28, 0));
        assert!(v(2, 9, 9) < v(2, 10, 0));
        assert!(v(2, 30, 6) < v(2, 30, 7));
        assert!(v(3, 0, 0) > v(2, 99, 99));
    }

    #[test]
    fn policy_boundaries() {
        use SymmetricPolicy::*;
        let cases = [
            (v(2, 8, 4), Unsupported),
            (v(2, 19, 3), Unsupported),
            (v(2, 26, 6), Unsupported),
            (v(2, 27, 0), Unsupported),
            (v(2, 27, 2), Unsupported),
            (v(2, 27, 3), Initial),
            (v(2, 27, 7), Initial),
            (v(2, 27, 99), Initial),
            (v(2, 28, 0), KnownIssues),
            (v(2, 28, 3), KnownIssues),
            (v(2, 29, 7), KnownIssues),
            (v(2, 30, 6), KnownIssues),
            (v(2, 30, 7), Full),
            (v(2, 30, 8), Full),
            (v(2, 31, 0), Full),
            (v(3, 0, 0), Full),
        ];
        for (ver, want) in cases {
            assert_eq!(symmetric_policy(ver), want, "NCCL {ver}");
        }
    }

    #[test]
    fn policy_properties() {
        use SymmetricPolicy::*;
        assert!(!Unsupported.allows_symmetric());
        for p in [Initial, KnownIssues, Full] {
            assert!(p.allows_symmetric());
        }
        assert!(Initial.warns() && KnownIssues.warns());
        assert!(!Full.warns() && !Unsupported.warns());
        for p in [Unsupported, Initial, KnownIssues, Full] {
            assert!(!p.register_during_capture());
            assert!(!p.notes().is_empty());
        }
        assert!(KnownIssues.notes().contains("2.30.7"));
        assert!(KnownIssues
            .log_line(v(2, 28, 3))
            .starts_with("symmem: NCCL 2.28.3: "));
    }

    #[test]
    fn warns_once_per_process() {
        // Full never warns and does not consume the one warning.
        assert!(SymmetricPolicy::Full.warning_once(v(2, 30, 7)).is_none());
        let first = SymmetricPolicy::KnownIssues.warning_once(v(2, 28, 3));
        assert!(first
            .as_deref()
            .is_some_and(|l| l.contains("2.28.3") && l.contains("2.30.7")));
        assert!(SymmetricPolicy::KnownIssues
            .warning_once(v(2, 28, 3))
            .is_none());
        assert!(SymmetricPolicy::Initial.warning_once(v(2, 27, 3)).is_none());
    }

    #[test]
    fn require_refuses_or_falls_back() {
        let old = v(2, 26, 2);
        let e = require_symmetric(old, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("2.26.2") && msg.contains("2.27.3") && msg.contains("2.30.7"),
            "{msg}"
        );
        assert_eq!(
            require_symmetric(old, true),
            Ok(SymmetricPolicy::Unsupported)
        );
        assert_eq!(
            require_symmetric(v(2, 27, 2), true),
            Ok(SymmetricPolicy::Unsupported)
        );
        assert!(require_symmetric(v(2, 27, 2), false).is_err());
        assert_eq!(
            require_symmetric(v(2, 27, 3), false),
            Ok(SymmetricPolicy::Initial)
        );
        assert_eq!(
            require_symmetric(v(2, 28, 3), false),
            Ok(SymmetricPolicy::KnownIssues)
        );
        assert_eq!(
            require_symmetric(v(2, 30, 7), false),
            Ok(SymmetricPolicy::Full)
        );
    }
}
