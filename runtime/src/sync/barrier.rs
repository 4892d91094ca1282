//! The asymmetric barrier of the owner lock: `membarrier(2)` (a full barrier on every running
//! thread of the process, registered once), and the per-thread token that names a lock's owner.

/// A token unique among the live threads of the process: the address of a thread-local.
#[inline]
pub(crate) fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Whether `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` works in this process (registered
/// once). Without it, both sides of the owner lock use full fences.
pub(crate) fn asymmetric() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(membarrier::register)
}

#[cfg(target_os = "linux")]
pub(crate) mod membarrier {
    const QUERY: libc::c_long = 0;
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn call(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier(cmd, flags = 0) has no pointer arguments.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
    }

    pub(crate) fn register() -> bool {
        let supported = call(QUERY);
        supported >= 0
            && supported & PRIVATE_EXPEDITED != 0
            && call(REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// A full memory barrier on every running thread of this process.
    pub(crate) fn heavy() -> bool {
        call(PRIVATE_EXPEDITED) == 0
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) mod membarrier {
    pub(crate) fn register() -> bool {
        false
    }
    pub(crate) fn heavy() -> bool {
        false
    }
}
