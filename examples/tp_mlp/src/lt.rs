//! GEMMs through cuBLASLt with a timed choice of algorithm per shape, the skinny decode kernels
//! (`crate::skinny`) among the candidates.
//!
//! cuBLAS's default kernel choice for the skinny decode shapes of the MLP (a few token rows
//! against 4096 x 28672 and 14336 x 4096 weights) leaves bandwidth unused. For every distinct
//! `(m, k, n, dtype)` the first *eager* call asks cuBLASLt's heuristic for up to
//! `CANDIDATES` (16) algorithms, times each on the rank's stream with the real operands (and the
//! plain `cublasGemmEx` path as one more candidate, and the skinny kernels where their plan
//! applies: one, or for `m <= 8` two, with 4 and 8 weight loads in flight per lane),
//! and keeps the fastest; later calls, and calls recorded into a CUDA graph, use that choice, so
//! eager and replay run the same kernel (bit-equal results). Nothing is tuned while capturing
//! (timing needs synchronisation); a shape first met during capture uses `cublasGemmEx`.
//!
//! Each skinny candidate is guarded: before it is timed, its output on the tuning call's
//! operands is compared with `cublasGemmEx`'s ([`crate::skinny::guard_bound`]); one that
//! disagrees is rejected (and recorded as such in the `gemm_choice` record), or with
//! `--gemm skinny` is an error. Never a silent wrong result. The fastest skinny kernel that
//! passes is the one weighed against cuBLAS; the record lists every one tried with its time.
//!
//! Descriptors are created once per shape and freed with the plan. The workspaces are allocated
//! once up front, outside any capture.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;
use std::time::Instant;

use cudarc::cublaslt::sys as lt;
use symmem::{Buffer, DType, Element, Error};

use crate::cuda::cuda_err;
use crate::results::{finite, GemmChoice};
use crate::skinny::{self, Skinny, SkinnyPlan};

/// Heuristic candidates timed per shape.
const CANDIDATES: usize = 16;
/// Bytes of the cuBLASLt workspace.
pub const LT_WORKSPACE: usize = 32 << 20;
/// Timed runs per candidate (after two warm-up runs).
const TIMED_RUNS: usize = 10;

fn check(call: &'static str, st: lt::cublasStatus_t) -> Result<(), Error> {
    if st == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(cuda_err(
            call,
            st,
            "cuBLASLt failed; run with --gemm cublas to use cublasGemmEx only",
        ))
    }
}

fn lt_dtype(d: DType) -> Option<lt::cudaDataType_t> {
    match d {
        DType::F32 => Some(lt::cudaDataType_t::CUDA_R_32F),
        DType::BF16 => Some(lt::cudaDataType_t::CUDA_R_16BF),
        DType::F16 => Some(lt::cudaDataType_t::CUDA_R_16F),
        _ => None,
    }
}

/// The descriptors of one shape (freed on drop).
struct Plan {
    desc: lt::cublasLtMatmulDesc_t,
    a: lt::cublasLtMatrixLayout_t,
    b: lt::cublasLtMatrixLayout_t,
    c: lt::cublasLtMatrixLayout_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created by `Plan::new`, freed once here; no queued work needs descriptors.
        unsafe {
            if !self.a.is_null() {
                lt::cublasLtMatrixLayoutDestroy(self.a);
            }
            if !self.b.is_null() {
                lt::cublasLtMatrixLayoutDestroy(self.b);
            }
            if !self.c.is_null() {
                lt::cublasLtMatrixLayoutDestroy(self.c);
            }
            if !self.desc.is_null() {
                lt::cublasLtMatmulDescDestroy(self.desc);
            }
        }
    }
}

impl Plan {
    /// Row-major `C[m, n] = A[m, k] B[k, n]` as column-major `C^T (n x m) = B^T (n x k) A^T (k x
    /// m)`: cuBLASLt's first operand is `B` (n x k, ld n), its second `A` (k x m, ld k).
    fn new(dt: lt::cudaDataType_t, m: usize, k: usize, n: usize) -> Result<Plan, Error> {
        let mut p = Plan {
            desc: std::ptr::null_mut(),
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            c: std::ptr::null_mut(),
        };
        // SAFETY: out-parameters; on error `p` frees what was created.
        unsafe {
            check(
                "cublasLtMatmulDescCreate",
                lt::cublasLtMatmulDescCreate(
                    &mut p.desc,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    lt::cudaDataType_t::CUDA_R_32F,
                ),
            )?;
            check(
                "cublasLtMatrixLayoutCreate",
                lt::cublasLtMatrixLayoutCreate(&mut p.a, dt, n as u64, k as u64, n as i64),
            )?;
            check(
                "cublasLtMatrixLayoutCreate",
                lt::cublasLtMatrixLayoutCreate(&mut p.b, dt, k as u64, m as u64, k as i64),
            )?;
            check(
                "cublasLtMatrixLayoutCreate",
                lt::cublasLtMatrixLayoutCreate(&mut p.c, dt, n as u64, m as u64, n as i64),
            )?;
        }
        Ok(p)
    }
}

/// What a shape runs.
enum Choice {
    /// cuBLASLt with this plan and algorithm.
    Lt(Plan, lt::cublasLtMatmulAlgo_t),
    /// `cublasGemmEx` (the default path was the fastest, or no candidate worked).
    GemmEx,
    /// The skinny kernel with this plan.
    Skinny(SkinnyPlan),
}

/// How the skinny kernels take part in the choice of a shape.
#[derive(Clone, Copy)]
pub enum SkinnyRole<'a> {
    /// Not at all (`--gemm lt`).
    Off,
    /// As one more timed candidate, after the correctness guard (`--gemm auto`).
    Candidate(&'a Skinny),
    /// Chosen wherever the plan applies, after the guard (`--gemm skinny`; a failed guard is an
    /// error).
    Forced(&'a Skinny),
}

/// `||got - want|| / ||want||` in f64, or why the comparison fails outright (a value that is
/// not finite where cuBLAS's is).
pub fn agreement<T: Element>(got: &[T], want: &[T]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} elements against {}", got.len(), want.len()));
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        if !g.is_finite() && w.is_finite() {
            return Err(format!("element {i} is {g}, cuBLAS's is {w}"));
        }
        if g.is_finite() && w.is_finite() {
            num += (g - w) * (g - w);
            den += w * w;
        }
    }
    Ok(if num == 0.0 {
        0.0
    } else {
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
    })
}

/// Microseconds per call of `f` on the rank's stream: two warm-up calls, then the mean of
/// [`TIMED_RUNS`] calls between two synchronisations. Outside capture only.
pub(crate) fn time_us(f: &mut dyn FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    for _ in 0..2 {
        f()?;
    }
    symmem::synchronize()?;
    let t = Instant::now();
    for _ in 0..TIMED_RUNS {
        f()?;
    }
    symmem::synchronize()?;
    Ok(t.elapsed().as_secs_f64() * 1e6 / TIMED_RUNS as f64)
}

/// The correctness guard of a skinny candidate: its output `got` against the reference
/// `want` (named `against` in the reason), within `bound` ([`skinny::guard_bound`]). Returns
/// the relative error (when it could be computed) and `Err(reason)` when the candidate must
/// not be used.
pub(crate) fn guard<T: Element>(
    got: &[T],
    want: &[T],
    bound: f64,
    against: &str,
) -> (Option<f64>, Result<(), String>) {
    match agreement(got, want) {
        Ok(e) if e <= bound => (Some(e), Ok(())),
        Ok(e) => (
            Some(e),
            Err(format!(
                "relative error {e:.3e} against {against}, above the bound {bound:.1e}"
            )),
        ),
        Err(why) => (None, Err(why)),
    }
}

/// cuBLASLt handle, workspace and the per-shape choices of one rank.
pub struct LtGemm {
    handle: lt::cublasLtHandle_t,
    stream: lt::cudaStream_t,
    workspace: Buffer<u8>,
    choices: Mutex<HashMap<(usize, usize, usize, DType), Choice>>,
    /// Print and record the choices (rank 0 only, to keep the output short).
    report: bool,
    /// The choices made, in order, for the `gemm_choice` records (when `report`).
    records: Mutex<Vec<GemmChoice>>,
}

impl Drop for LtGemm {
    fn drop(&mut self) {
        // SAFETY: created in `new`; the rank synchronises its stream before kernels drop. The
        // plans (in `choices`) are dropped after this with the struct; they do not need the
        // handle.
        unsafe {
            lt::cublasLtDestroy(self.handle);
        }
    }
}

impl LtGemm {
    /// A cuBLASLt handle on `stream` (the rank's `CUstream`) with a workspace; `Ok(None)` when
    /// libcublasLt is not installed (the caller falls back to `cublasGemmEx`).
    pub fn new(stream: *mut c_void, report: bool) -> Result<Option<LtGemm>, Error> {
        if let Err(e) = symmem::cuda::probe::probe_cublas_lt() {
            eprintln!("tp_mlp: cuBLASLt unavailable ({e}); GEMMs use cublasGemmEx");
            return Ok(None);
        }
        let workspace = symmem::alloc::<u8>(LT_WORKSPACE)?;
        let mut handle: lt::cublasLtHandle_t = std::ptr::null_mut();
        // SAFETY: out-parameter.
        check("cublasLtCreate", unsafe { lt::cublasLtCreate(&mut handle) })?;
        Ok(Some(LtGemm {
            handle,
            stream: stream as lt::cudaStream_t,
            workspace,
            choices: Mutex::new(HashMap::new()),
            report,
            records: Mutex::new(Vec::new()),
        }))
    }

    /// The choices made so far (rank 0; empty on other ranks), for the `gemm_choice` records.
    pub fn choices(&self) -> Vec<GemmChoice> {
        self.records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// # Safety
    /// `a`, `b`, `c` are live device buffers of `m*k`, `k*n`, `m*n` elements on this rank's GPU.
    unsafe fn run_lt(
        &self,
        plan: &Plan,
        algo: &lt::cublasLtMatmulAlgo_t,
        a: u64,
        b: u64,
        c: u64,
    ) -> lt::cublasStatus_t {
        let (alpha, beta) = (1.0f32, 0.0f32);
        lt::cublasLtMatmul(
            self.handle,
            plan.desc,
            &alpha as *const f32 as *const c_void,
            b as *const c_void,
            plan.a,
            a as *const c_void,
            plan.b,
            &beta as *const f32 as *const c_void,
            c as *const c_void,
            plan.c,
            c as *mut c_void,
            plan.c,
            algo,
            self.workspace.device_ptr() as *mut c_void,
            LT_WORKSPACE,
            self.stream,
        )
    }

    /// `C = A B` (row-major, `f32` accumulation), on the tuned path for this shape.
    /// `gemm_ex` runs the same product with `cublasGemmEx` (a candidate, and the fallback);
    /// `skinny` says whether the skinny kernels are candidates.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Element>(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
        skinny: SkinnyRole<'_>,
        mut gemm_ex: impl FnMut(&Buffer<T>, &Buffer<T>, &mut Buffer<T>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let key = (m, k, n, T::DTYPE);
        let mut choices = self.choices.lock().map_err(|_| Error::InvalidArgument {
            op: "cublasLt gemm",
            detail: "the GEMM plan table was poisoned by an earlier panic".into(),
        })?;
        let choice = match choices.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if symmem::is_capturing() {
                    // Never time during capture: an untuned shape runs cublasGemmEx.
                    return gemm_ex(a, b, c);
                }
                e.insert(self.tune(a, b, c, m, k, n, skinny, &mut gemm_ex)?)
            }
        };
        match choice {
            Choice::GemmEx => gemm_ex(a, b, c),
            Choice::Lt(plan, algo) => {
                // SAFETY: the shapes were checked by the caller; operands are live.
                let st = unsafe {
                    self.run_lt(plan, algo, a.device_ptr(), b.device_ptr(), c.device_ptr())
                };
                check("cublasLtMatmul", st)
            }
            Choice::Skinny(plan) => match skinny {
                // (The shape is the table's key, so `plan` is one of its candidates; `gemm`
                // checks that again with the lengths.)
                SkinnyRole::Candidate(s) | SkinnyRole::Forced(s) if skinny::aligned(b, c) => {
                    s.gemm(plan, a, b, c)
                }
                // Buffers of this shape that are not 16-byte aligned (symmem's are 512-byte
                // aligned, so not in this example): the cuBLAS path, still correct.
                _ => gemm_ex(a, b, c),
            },
        }
    }

    /// Time cuBLASLt's candidates, `cublasGemmEx` and (per `skinny`, after its guard) the
    /// skinny kernel on the real operands; keep the fastest.
    #[allow(clippy::too_many_arguments)]
    fn tune<T: Element>(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
        skinny: SkinnyRole<'_>,
        gemm_ex: &mut impl FnMut(&Buffer<T>, &Buffer<T>, &mut Buffer<T>) -> Result<(), Error>,
    ) -> Result<Choice, Error> {
        let gemm_ex_us = time_us(&mut || gemm_ex(a, b, c))?;

        // The skinny candidates: their plans, their guard against cublasGemmEx, their times;
        // the fastest that passes is the skinny candidate.
        let (skinny_kernels, forced) = match skinny {
            SkinnyRole::Off => (None, false),
            SkinnyRole::Candidate(s) => (Some(s), false),
            SkinnyRole::Forced(s) => (Some(s), true),
        };
        let mut skinny_note: Option<String> = None;
        let mut skinny_us: Option<f64> = None;
        let mut skinny_err: Option<f64> = None;
        let mut skinny_plan: Option<SkinnyPlan> = None;
        // Each skinny kernel tried (4 and, for m <= 8, 8 loads in flight), with its outcome.
        let mut tried: Vec<String> = Vec::new();
        if let Some(s) = skinny_kernels {
            let plans = s.candidates_for(b, c, m, k, n);
            let want = if plans.is_empty() {
                skinny_note = Some(format!(
                    "not applicable: {}",
                    skinny::why_not(m, k, n, T::DTYPE, s.sm_count())
                ));
                Vec::new()
            } else {
                gemm_ex(a, b, c)?;
                c.to_host_vec()?
            };
            for plan in plans {
                s.gemm(&plan, a, b, c)?;
                let got = c.to_host_vec()?;
                let bound = skinny::guard_bound(T::DTYPE);
                let (err, verdict) = guard(&got, &want, bound, "cublasGemmEx");
                match verdict {
                    Ok(()) => {
                        let us = time_us(&mut || s.gemm(&plan, a, b, c))?;
                        tried.push(format!(
                            "{} {} splits {us:.1} us",
                            plan.kernel_name(),
                            plan.splits
                        ));
                        if skinny_us.is_none_or(|best| us < best) {
                            skinny_us = Some(us);
                            skinny_err = err;
                            skinny_plan = Some(plan);
                        }
                    }
                    Err(why) => {
                        if forced {
                            return Err(Error::InvalidArgument {
                                op: "skinny gemm",
                                detail: format!(
                                    "--gemm skinny: the skinny kernel {}'s output for [{m} x {k}] x [{k} x {n}] {} disagrees with cuBLAS's ({why}); this is a bug of the example, run with --gemm lt meanwhile",
                                    plan.kernel_name(),
                                    T::DTYPE
                                ),
                            });
                        }
                        eprintln!(
                            "tp_mlp: gemm [{m} x {k}] x [{k} x {n}] {}: skinny kernel {} REJECTED: {why}",
                            T::DTYPE,
                            plan.kernel_name()
                        );
                        tried.push(format!(
                            "{} {} splits rejected",
                            plan.kernel_name(),
                            plan.splits
                        ));
                        if skinny_plan.is_none() {
                            skinny_err = skinny_err.or(err);
                            skinny_note = Some(format!("rejected: {why}"));
                        }
                    }
                }
            }
        }
        let skinny_candidates = (!tried.is_empty()).then(|| tried.join(", "));

        let mut best: (f64, Option<usize>) = (gemm_ex_us, None);
        let mut found: i32 = 0;
        let mut lt_choice: Option<(Plan, Vec<lt::cublasLtMatmulHeuristicResult_t>)> = None;
        // With --gemm skinny and a skinny plan that passed its guard, cuBLASLt is not timed.
        let skip_lt = forced && skinny_plan.is_some();
        if let (Some(dt), false) = (lt_dtype(T::DTYPE), skip_lt) {
            let plan = Plan::new(dt, m, k, n)?;
            // SAFETY: zeroed heuristic results are valid bit patterns (plain C structs).
            let mut results: Vec<lt::cublasLtMatmulHeuristicResult_t> = (0..CANDIDATES)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            let mut pref: lt::cublasLtMatmulPreference_t = std::ptr::null_mut();
            // SAFETY: out-parameters and attribute buffers of the documented types; the
            // preference is destroyed on every path below.
            let st = unsafe {
                let st = lt::cublasLtMatmulPreferenceCreate(&mut pref);
                if st != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                    st
                } else {
                    let ws = LT_WORKSPACE as u64;
                    let st = lt::cublasLtMatmulPreferenceSetAttribute(
                        pref,
                        lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                        &ws as *const u64 as *const c_void,
                        std::mem::size_of::<u64>(),
                    );
                    let st = if st == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                        lt::cublasLtMatmulAlgoGetHeuristic(
                            self.handle,
                            plan.desc,
                            plan.a,
                            plan.b,
                            plan.c,
                            plan.c,
                            pref,
                            CANDIDATES as i32,
                            results.as_mut_ptr(),
                            &mut found,
                        )
                    } else {
                        st
                    };
                    lt::cublasLtMatmulPreferenceDestroy(pref);
                    st
                }
            };
            let (ap, bp, cp) = (a.device_ptr(), b.device_ptr(), c.device_ptr());
            if st == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                let found = (found.max(0) as usize).min(CANDIDATES);
                for (i, r) in results.iter().take(found).enumerate() {
                    if r.state != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS
                        || r.workspaceSize > LT_WORKSPACE
                    {
                        continue;
                    }
                    let algo = r.algo;
                    // A candidate that fails to launch is skipped, not an error.
                    // SAFETY: as in `gemm`.
                    let us = time_us(&mut || {
                        check("cublasLtMatmul", unsafe {
                            self.run_lt(&plan, &algo, ap, bp, cp)
                        })
                    });
                    if let Ok(us) = us {
                        if us < best.0 {
                            best = (us, Some(i));
                        }
                    }
                }
            } else {
                eprintln!(
                    "tp_mlp: cuBLASLt heuristic failed for {m}x{k}x{n} ({st:?}); using cublasGemmEx"
                );
            }
            lt_choice = Some((plan, results));
        }
        let found = (found.max(0) as usize).min(CANDIDATES);
        let mut best_us = best.0;
        let (chosen, choice) = match (skinny_plan, skinny_us) {
            (Some(plan), Some(us)) if forced || us < best.0 => {
                best_us = us;
                skinny_note = Some("chosen".into());
                (plan.describe(), Choice::Skinny(plan))
            }
            (plan, _) => {
                if plan.is_some() {
                    skinny_note = Some("slower".into());
                }
                match (best.1, lt_choice) {
                    (Some(i), Some((plan, results))) => (
                        format!("cublasLt heuristic #{i} of {found}"),
                        Choice::Lt(plan, results[i].algo),
                    ),
                    _ => ("cublasGemmEx default".to_string(), Choice::GemmEx),
                }
            }
        };
        if self.report {
            let weight_bytes = (k * n * std::mem::size_of::<T>()) as f64;
            let weight_gbps = weight_bytes / (best_us * 1e-6) / 1e9;
            let skinny_text = match (&skinny_note, skinny_us) {
                (Some(note), Some(us)) => format!("; skinny {us:.1} us, {note}"),
                (Some(note), None) => format!("; skinny {note}"),
                (None, _) => String::new(),
            };
            eprintln!(
                "tp_mlp: gemm [{m} x {k}] x [{k} x {n}] {}: {chosen}, {best_us:.1} us, weights at {weight_gbps:.0} GB/s (cublasGemmEx {gemm_ex_us:.1} us{skinny_text})",
                T::DTYPE,
            );
            let record = GemmChoice {
                mkn: [m, k, n],
                dtype: T::DTYPE.to_string(),
                chosen,
                best_us: finite(best_us),
                gemm_ex_us: finite(gemm_ex_us),
                skinny: skinny_note,
                skinny_us: skinny_us.and_then(finite),
                skinny_rel_error: skinny_err.and_then(finite),
                skinny_candidates,
                weight_gbps: finite(weight_gbps),
                weight_fraction_of_copy: None,
                op: "gemm".into(),
            };
            self.records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record);
        }
        Ok(choice)
    }
}
