//! [`Kernels`] for the host backend: matrixmultiply's `sgemm` and plain loops, queued as stream
//! work with `Stream::launch_host`, so they run at once eagerly and are recorded by
//! `symmem::capture` (a replay runs them again on the same buffers).
//!
//! Buffers' device addresses are host addresses on this backend. bf16 and f16 are storage
//! types only: each kernel converts its operands to f32 on the fly, computes in f32 and rounds
//! the result back to the storage type.

use symmem::{Buffer, DType, Element, Error, RankContext, Stream};

use crate::model::Kernels;

/// Host kernels of one rank.
pub struct HostKernels {
    stream: Stream,
}

impl HostKernels {
    /// Kernels on the rank's stream.
    pub fn new(ctx: &RankContext) -> Self {
        HostKernels {
            stream: ctx.stream(),
        }
    }
}

/// Widen `n` elements at host address `src` to f32 into `dst`.
///
/// # Safety
/// `src` must point to `n` live elements of `T`.
unsafe fn widen<T: Element>(src: u64, n: usize, dst: &mut [f32]) {
    let s = std::slice::from_raw_parts(src as *const T, n);
    for (d, v) in dst.iter_mut().zip(s) {
        *d = v.to_f64() as f32;
    }
}

/// Round `src` to `T` into the `src.len()` elements at host address `dst`.
///
/// # Safety
/// `dst` must point to `src.len()` live elements of `T` that nothing else accesses meanwhile.
unsafe fn narrow<T: Element>(src: &[f32], dst: u64) {
    let d = std::slice::from_raw_parts_mut(dst as *mut T, src.len());
    for (d, v) in d.iter_mut().zip(src) {
        *d = T::from_f64(*v as f64);
    }
}

/// `c = a @ b` for row-major f32 matrices at host addresses.
///
/// # Safety
/// The addresses must hold `m*k`, `k*n` and `m*n` live f32 values, `c` not overlapping the others.
unsafe fn sgemm(a: *const f32, b: *const f32, c: *mut f32, m: usize, k: usize, n: usize) {
    matrixmultiply::sgemm(
        m, k, n, 1.0, a, k as isize, 1, b, n as isize, 1, 0.0, c, n as isize, 1,
    );
}

/// A [`Error::LengthMismatch`] for an operand of the wrong length.
fn too_short(op: &'static str, what: &str, need: usize, have: usize) -> Error {
    Error::LengthMismatch {
        op,
        detail: format!("{what} needs {need} elements, the buffer holds {have}"),
    }
}

impl<T: Element> Kernels<T> for HostKernels {
    fn gemm(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), Error> {
        for (what, buf, need) in [
            ("a", a.len(), m * k),
            ("b", b.len(), k * n),
            ("c", c.len(), m * n),
        ] {
            if buf != need {
                return Err(too_short("host gemm", what, need, buf));
            }
        }
        let (pa, pb, pc) = (a.device_ptr(), b.device_ptr(), c.device_ptr());
        if T::DTYPE == DType::F32 {
            self.stream.launch_host(move || {
                // SAFETY: the buffers hold the sizes checked above and outlive the work (eager
                // work runs now; captured work uses graph-owned buffers or ones the caller keeps
                // alive while the graph lives); `c` is a distinct allocation.
                unsafe { sgemm(pa as *const f32, pb as *const f32, pc as *mut f32, m, k, n) };
                Ok(())
            })
        } else {
            let (mut sa, mut sb, mut sc) =
                (vec![0f32; m * k], vec![0f32; k * n], vec![0f32; m * n]);
            self.stream.launch_host(move || {
                // SAFETY: as above; the f32 copies are owned by this closure.
                unsafe {
                    widen::<T>(pa, m * k, &mut sa);
                    widen::<T>(pb, k * n, &mut sb);
                    sgemm(sa.as_ptr(), sb.as_ptr(), sc.as_mut_ptr(), m, k, n);
                    narrow::<T>(&sc, pc);
                }
                Ok(())
            })
        }
    }

    fn silu_mul(
        &self,
        gu: &Buffer<T>,
        h: &mut Buffer<T>,
        rows: usize,
        shard: usize,
    ) -> Result<(), Error> {
        if gu.len() != rows * 2 * shard {
            return Err(too_short("host silu_mul", "gu", rows * 2 * shard, gu.len()));
        }
        if h.len() != rows * shard {
            return Err(too_short("host silu_mul", "h", rows * shard, h.len()));
        }
        let (pg, ph) = (gu.device_ptr(), h.device_ptr());
        self.stream.launch_host(move || {
            // SAFETY: sizes checked above; lifetimes as for `gemm`; `h` is a distinct allocation.
            let (gu, h) = unsafe {
                (
                    std::slice::from_raw_parts(pg as *const T, rows * 2 * shard),
                    std::slice::from_raw_parts_mut(ph as *mut T, rows * shard),
                )
            };
            for (gu_row, h_row) in gu.chunks_exact(2 * shard).zip(h.chunks_exact_mut(shard)) {
                let (g, u) = gu_row.split_at(shard);
                for ((o, g), u) in h_row.iter_mut().zip(g).zip(u) {
                    let g = g.to_f64() as f32;
                    let u = u.to_f64() as f32;
                    *o = T::from_f64((g / (1.0 + (-g).exp()) * u) as f64);
                }
            }
            Ok(())
        })
    }

    fn add(&self, a: &Buffer<T>, b: &Buffer<T>, out: &mut Buffer<T>) -> Result<(), Error> {
        let n = out.len();
        if a.len() != n || b.len() != n {
            return Err(too_short("host add", "an operand", n, a.len().min(b.len())));
        }
        let (pa, pb, po) = (a.device_ptr(), b.device_ptr(), out.device_ptr());
        self.stream.launch_host(move || {
            // SAFETY: sizes checked above; lifetimes as for `gemm`. `out` may alias nothing: it
            // is a distinct allocation (`&mut`), so raw reads of `a`, `b` are sound.
            unsafe {
                let (a, b) = (
                    std::slice::from_raw_parts(pa as *const T, n),
                    std::slice::from_raw_parts(pb as *const T, n),
                );
                let o = std::slice::from_raw_parts_mut(po as *mut T, n);
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = T::from_f64((a.to_f64() as f32 + b.to_f64() as f32) as f64);
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        let threads = std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok());
        match threads {
            Some(t) => format!("matrixmultiply sgemm ({t} thread(s) per rank), f32 compute"),
            None => "matrixmultiply sgemm, f32 compute".to_string(),
        }
    }
}
