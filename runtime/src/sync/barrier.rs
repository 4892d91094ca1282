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

    /// The fallback when `membarrier` stops working after registration (a seccomp filter
    /// installed later, say): changing the protection of a private page the process has
    /// touched makes the kernel shoot down its TLB entry on every CPU running a thread of the
    /// process, by an inter-processor interrupt that serialises those CPUs, a full barrier on
    /// each (the technique of .NET's `FlushProcessWriteBuffers` and Folly's asymmetric heavy
    /// fence before `membarrier`). `false` when that fails too.
    pub(crate) fn heavy_by_mprotect() -> bool {
        use std::sync::{Mutex, OnceLock};
        static PAGE: OnceLock<Option<usize>> = OnceLock::new();
        static SERIAL: Mutex<()> = Mutex::new(());
        let page = *PAGE.get_or_init(|| {
            // SAFETY: an anonymous private mapping of one page; no pointer is passed in.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            (p != libc::MAP_FAILED).then_some(p as usize)
        });
        let Some(page) = page else {
            return false;
        };
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = page as *mut libc::c_void;
        // SAFETY: `p` is the page mapped above, never unmapped; it is only written here, with
        // the serialising lock held, after making it writable.
        unsafe {
            if libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                return false;
            }
            std::ptr::write_volatile(p as *mut u8, 1);
            libc::mprotect(p, 4096, libc::PROT_READ) == 0
        }
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
    pub(crate) fn heavy_by_mprotect() -> bool {
        false
    }
}

/// How many times a failing `membarrier` is retried before the fallback.
pub(crate) const HEAVY_RETRIES: u32 = 100;

/// The heavy barrier the owner lock's foreign side needs: `membarrier`, retried a bounded
/// number of times, then the `mprotect` fallback; `false` only when both fail (the caller
/// then reports it and keeps trying: proceeding without the barrier would be unsound).
pub(crate) fn heavy_barrier() -> bool {
    heavy_barrier_with(membarrier::heavy, membarrier::heavy_by_mprotect)
}

/// [`heavy_barrier`] over given primitives (so that the fallback is testable).
pub(crate) fn heavy_barrier_with(heavy: impl Fn() -> bool, fallback: impl Fn() -> bool) -> bool {
    for _ in 0..HEAVY_RETRIES {
        if heavy() {
            return true;
        }
        std::thread::yield_now();
    }
    fallback()
}
