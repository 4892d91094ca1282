//! [`Kernels`] for the CUDA backend: GEMMs on raw device pointers (f32, bf16 or f16 storage, f32
//! accumulation) through cuBLASLt with an algorithm timed per shape (`--gemm auto` and `lt`, see
//! [`crate::lt`]; with `auto` and `skinny` the skinny decode kernels of [`crate::skinny`] are
//! candidates) or cuBLAS `GemmEx` (`--gemm cublas`, and the fallback), and one small NVRTC
//! kernel for SiLU-and-multiply (plus one for the residual add), all queued on the rank's stream,
//! so that `symmem::capture` records them with the all-reduce.
//!
//! cuBLAS gets a workspace up front (`cublasSetWorkspace`): it must not allocate during graph
//! capture. The kernels need no CUDA headers (bf16 and f16 conversions are written out), so
//! NVRTC compiles them on any machine with libnvrtc; the PTX is compiled once per process.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{self, Ptx};
use symmem::cuda::{cuda_context, cuda_stream};
use symmem::{Buffer, DType, Element, Error, RankContext};

use crate::config::GemmMode;
use crate::lt::{guard, time_us, LtGemm, SkinnyRole};
use crate::model::{gate_up_unfused, Kernels, CUDA_PROBE_COPY_BYTES};
use crate::results::{finite, GemmChoice};
use crate::skinny::{self, Skinny, SkinnyPlan};

/// Bytes of the cuBLAS workspace.
const WORKSPACE: usize = 32 << 20;

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;

/// CUDA C source of the elementwise kernels, for `float`, bf16 and f16 storage.
const SOURCE: &str = r#"
struct bf16_t { unsigned short x; };
struct f16_t { unsigned short x; };

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t v) { return __uint_as_float(((unsigned int)v.x) << 16); }
__device__ __forceinline__ float to_f(f16_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
    return f;
}
__device__ __forceinline__ void from_f(float v, float* o) { *o = v; }
__device__ __forceinline__ void from_f(float v, bf16_t* o) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { o->x = (unsigned short)((u >> 16) | 0x40u); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    o->x = (unsigned short)(u >> 16);
}
__device__ __forceinline__ void from_f(float v, f16_t* o) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    o->x = h;
}

template <typename T>
__device__ void silu_mul(const T* gu, T* h, long long rows, long long s) {
    long long n = rows * s;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long r = i / s;
        long long c = i - r * s;
        float g = to_f(gu[r * 2 * s + c]);
        float u = to_f(gu[r * 2 * s + s + c]);
        from_f(g / (1.0f + expf(-g)) * u, &h[i]);
    }
}

template <typename T>
__device__ void add(const T* a, const T* b, T* o, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        from_f(to_f(a[i]) + to_f(b[i]), &o[i]);
    }
}

extern "C" __global__ void silu_mul_f32(const float* gu, float* h, long long rows, long long s) { silu_mul(gu, h, rows, s); }
extern "C" __global__ void silu_mul_bf16(const bf16_t* gu, bf16_t* h, long long rows, long long s) { silu_mul(gu, h, rows, s); }
extern "C" __global__ void silu_mul_f16(const f16_t* gu, f16_t* h, long long rows, long long s) { silu_mul(gu, h, rows, s); }
extern "C" __global__ void add_f32(const float* a, const float* b, float* o, long long n) { add(a, b, o, n); }
extern "C" __global__ void add_bf16(const bf16_t* a, const bf16_t* b, bf16_t* o, long long n) { add(a, b, o, n); }
extern "C" __global__ void add_f16(const f16_t* a, const f16_t* b, f16_t* o, long long n) { add(a, b, o, n); }
"#;

/// The PTX of [`SOURCE`], compiled once per process.
fn ptx() -> Result<Ptx, Error> {
    static PTX: OnceLock<Result<Ptx, String>> = OnceLock::new();
    PTX.get_or_init(|| nvrtc::compile_ptx(SOURCE).map_err(|e| format!("{e:?}"))).clone().map_err(|message| Error::Cuda {
        call: "nvrtcCompileProgram",
        message,
        hint: "the example's SiLU kernel needs libnvrtc (CUDA toolkit or the nvidia-cuda-nvrtc wheel) on the library path",
    })
}

/// An [`Error::Cuda`] for a failed call.
pub(crate) fn cuda_err(call: &'static str, e: impl std::fmt::Debug, hint: &'static str) -> Error {
    Error::Cuda {
        call,
        message: format!("{e:?}"),
        hint,
    }
}

/// Index of a storage type in the kernel tables, and its cuBLAS data type.
fn dtype_of<T: Element>() -> Result<(usize, blas_sys::cudaDataType_t), Error> {
    match T::DTYPE {
        DType::F32 => Ok((0, blas_sys::cudaDataType_t::CUDA_R_32F)),
        DType::BF16 => Ok((1, blas_sys::cudaDataType_t::CUDA_R_16BF)),
        DType::F16 => Ok((2, blas_sys::cudaDataType_t::CUDA_R_16F)),
        other => Err(Error::Unsupported {
            backend: "tp_mlp cuda",
            what: format!("{other} storage (use f32, bf16 or f16)"),
        }),
    }
}

/// Grid-stride launch configuration for `n` elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 132 * 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A [`Error::LengthMismatch`] unless `need == have`.
fn check_len(op: &'static str, what: &str, need: usize, have: usize) -> Result<(), Error> {
    if need != have {
        return Err(Error::LengthMismatch {
            op,
            detail: format!("{what} needs {need} elements, the buffer holds {have}"),
        });
    }
    Ok(())
}

/// A gate-up shape: `(tokens, hidden, shard, dtype)`.
type GateUpKey = (usize, usize, usize, DType);

/// cuBLAS and NVRTC kernels of one CUDA rank.
pub struct CudaKernels {
    /// cuBLASLt with per-shape tuned algorithms (`--gemm auto`, `lt` and `skinny`, when
    /// libcublasLt loads).
    lt: Option<LtGemm>,
    /// The skinny decode kernels with their workspace (`--gemm auto` and `skinny`).
    skinny: Option<Skinny>,
    /// The `--gemm` mode.
    mode: GemmMode,
    // Declared before the workspace: dropped before the workspace it uses.
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    silu_mul: [CudaFunction; 3],
    add: [CudaFunction; 3],
    /// Per gate-up shape `(m, k, shard, dtype)`: the fused skinny plan chosen, or `None` (the
    /// GEMM, then the SiLU-mul kernel).
    fused: Mutex<HashMap<GateUpKey, Option<SkinnyPlan>>>,
    /// The fused-or-not choices made (rank 0 only), for the `gemm_choice` records.
    fused_records: Mutex<Vec<GemmChoice>>,
    /// Whether this rank prints and records its choices (rank 0).
    report: bool,
    _workspace: Buffer<u8>,
}

impl CudaKernels {
    /// Kernels on the rank's stream: a cuBLAS handle with its workspace, and the NVRTC module.
    pub fn new(ctx: &RankContext, gemm: GemmMode) -> Result<Self, Error> {
        let not_cuda = || Error::Unsupported {
            backend: "host",
            what: "cuBLAS kernels (this rank is not a CUDA rank)".into(),
        };
        let stream = cuda_stream(ctx).ok_or_else(not_cuda)?;
        let cu = cuda_context(ctx).ok_or_else(not_cuda)?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| cuda_err("cublasCreate", e, "is libcublas on the library path?"))?;
        let workspace = symmem::alloc::<u8>(WORKSPACE)?;
        // SAFETY: the workspace outlives the handle (field order) and is used on its stream only.
        let st = unsafe {
            blas_sys::cublasSetWorkspace_v2(
                *blas.handle(),
                workspace.device_ptr() as *mut c_void,
                WORKSPACE,
            )
        };
        if st != blas_sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(cuda_err(
                "cublasSetWorkspace",
                st,
                "cuBLAS refused the workspace",
            ));
        }
        let module = cu.load_module(ptx()?).map_err(|e| {
            cuda_err(
                "cuModuleLoadData",
                e,
                "the driver could not load the NVRTC PTX",
            )
        })?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| cuda_err("cuModuleGetFunction", e, "kernel missing from the PTX"))
        };
        let lt = match gemm {
            GemmMode::Auto | GemmMode::Lt | GemmMode::Skinny => {
                LtGemm::new(stream.cu_stream() as *mut c_void, ctx.rank() == 0)?
            }
            GemmMode::Cublas => None,
        };
        // The skinny kernels take part through the per-shape choice of `LtGemm`.
        let skinny = match gemm {
            GemmMode::Auto | GemmMode::Skinny if lt.is_some() => Some(Skinny::new(ctx)?),
            GemmMode::Skinny => {
                eprintln!("tp_mlp: --gemm skinny needs cuBLASLt (the guard and the fallback); GEMMs use cublasGemmEx");
                None
            }
            _ => None,
        };
        Ok(CudaKernels {
            lt,
            skinny,
            mode: gemm,
            blas,
            stream,
            silu_mul: [
                load("silu_mul_f32")?,
                load("silu_mul_bf16")?,
                load("silu_mul_f16")?,
            ],
            add: [load("add_f32")?, load("add_bf16")?, load("add_f16")?],
            fused: Mutex::new(HashMap::new()),
            fused_records: Mutex::new(Vec::new()),
            report: ctx.rank() == 0,
            _workspace: workspace,
        })
    }
}

impl CudaKernels {
    /// `C = A B` through `cublasGemmEx` (cuBLAS's default algorithm).
    fn gemm_ex<T: Element>(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), Error> {
        check_len("cuda gemm", "a", m * k, a.len())?;
        check_len("cuda gemm", "b", k * n, b.len())?;
        check_len("cuda gemm", "c", m * n, c.len())?;
        let (_, dt) = dtype_of::<T>()?;
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| Error::InvalidArgument {
                op: "cuda gemm",
                detail: format!("dimension {v} does not fit an int"),
            })
        };
        let (mi, ki, ni) = (int(m)?, int(k)?, int(n)?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS computes (n x m) = (n x k)(k x m)
        // with B as its first operand (leading dimension n) and A as its second (leading k).
        // SAFETY: the pointers are live device buffers of the sizes checked above, on this
        // rank's GPU; the handle runs on the rank's stream; alpha and beta are host scalars read
        // during the call.
        unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                ni,
                mi,
                ki,
                &alpha as *const f32 as *const c_void,
                b.device_ptr() as *const c_void,
                dt,
                ni,
                a.device_ptr() as *const c_void,
                dt,
                ki,
                &beta as *const f32 as *const c_void,
                c.device_ptr() as *mut c_void,
                dt,
                ni,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| {
            cuda_err(
                "cublasGemmEx",
                e,
                "check the shapes and that the buffers are on this rank's GPU",
            )
        })
    }
}

impl CudaKernels {
    /// Choose between the fused skinny gate-up kernels and the unfused path for this shape
    /// (outside capture): each fused candidate is guarded against the unfused path's output
    /// on these operands (the bound of [`skinny::guard_bound`]), then timed against it; the
    /// fastest wins (`--gemm skinny`: a fused kernel that passes its guard always does, and
    /// one that fails is an error).
    #[allow(clippy::too_many_arguments)]
    fn tune_gate_up<T: Element>(
        &self,
        sk: &Skinny,
        x: &Buffer<T>,
        w: &Buffer<T>,
        h: &mut Buffer<T>,
        m: usize,
        k: usize,
        shard: usize,
    ) -> Result<Option<SkinnyPlan>, Error> {
        let forced = self.mode == GemmMode::Skinny;
        let plans = sk.candidates_silu_for(w, h, m, k, shard);
        // The unfused path first: the reference of the guard (this also tunes its GEMM).
        gate_up_unfused(self, x, w, h, m, k, shard)?;
        let unfused_us = time_us(&mut || gate_up_unfused(self, x, w, h, m, k, shard))?;
        let mut note: Option<String> = None;
        let mut best: Option<(f64, Option<f64>, SkinnyPlan)> = None;
        let mut tried: Vec<String> = Vec::new();
        if plans.is_empty() {
            note = Some(format!(
                "not applicable: {}",
                skinny::why_not(m, k, 2 * shard, T::DTYPE, sk.sm_count())
            ));
        } else {
            let want = h.to_host_vec()?;
            let bound = skinny::guard_bound(T::DTYPE);
            for plan in plans {
                sk.gemm(&plan, x, w, h)?;
                let got = h.to_host_vec()?;
                let (err, verdict) = guard(&got, &want, bound, "the unfused path");
                match verdict {
                    Ok(()) => {
                        let us = time_us(&mut || sk.gemm(&plan, x, w, h))?;
                        tried.push(format!(
                            "{} {} splits {us:.1} us",
                            plan.kernel_name(),
                            plan.splits
                        ));
                        if best.as_ref().is_none_or(|b| us < b.0) {
                            best = Some((us, err, plan));
                        }
                    }
                    Err(why) => {
                        if forced {
                            return Err(Error::InvalidArgument {
                                op: "skinny gate-up",
                                detail: format!(
                                    "--gemm skinny: the fused gate-up kernel {}'s output for [{m} x {k}] x [{k} x {}] {} disagrees with the unfused path's ({why}); this is a bug of the example, run with --gemm lt meanwhile",
                                    plan.kernel_name(),
                                    2 * shard,
                                    T::DTYPE
                                ),
                            });
                        }
                        eprintln!(
                            "tp_mlp: gate-up [{m} x {k}] x [{k} x {}] {}: fused kernel {} REJECTED: {why}",
                            2 * shard,
                            T::DTYPE,
                            plan.kernel_name()
                        );
                        tried.push(format!(
                            "{} {} splits rejected",
                            plan.kernel_name(),
                            plan.splits
                        ));
                        note = Some(format!("rejected: {why}"));
                    }
                }
            }
        }
        let (choice, chosen, best_us, skinny_us, skinny_err) = match best {
            Some((us, err, plan)) if forced || us < unfused_us => {
                note = Some("chosen".into());
                (Some(plan.clone()), plan.describe(), us, Some(us), err)
            }
            Some((us, err, _)) => {
                note = Some("slower".into());
                (
                    None,
                    "unfused: the GEMM chosen for this shape, then the SiLU-mul kernel".into(),
                    unfused_us,
                    Some(us),
                    err,
                )
            }
            None => (
                None,
                "unfused: the GEMM chosen for this shape, then the SiLU-mul kernel".into(),
                unfused_us,
                None,
                None,
            ),
        };
        if self.report {
            let weight_bytes = (k * 2 * shard * std::mem::size_of::<T>()) as f64;
            let weight_gbps = weight_bytes / (best_us * 1e-6) / 1e9;
            eprintln!(
                "tp_mlp: gate-up + SiLU-mul [{m} x {k}] x [{k} x {}] {}: {chosen}, {best_us:.1} us, weights at {weight_gbps:.0} GB/s (unfused {unfused_us:.1} us{})",
                2 * shard,
                T::DTYPE,
                match (&note, skinny_us) {
                    (Some(n), Some(us)) => format!("; fused {us:.1} us, {n}"),
                    (Some(n), None) => format!("; fused {n}"),
                    _ => String::new(),
                }
            );
            let record = GemmChoice {
                mkn: [m, k, 2 * shard],
                dtype: T::DTYPE.to_string(),
                chosen,
                best_us: finite(best_us),
                gemm_ex_us: None,
                skinny: note,
                skinny_us: skinny_us.and_then(finite),
                skinny_rel_error: skinny_err.and_then(finite),
                skinny_candidates: (!tried.is_empty()).then(|| tried.join(", ")),
                weight_gbps: finite(weight_gbps),
                weight_fraction_of_copy: None,
                op: "gate_up_silu".into(),
            };
            self.fused_records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record);
        }
        Ok(choice)
    }
}

impl<T: Element> Kernels<T> for CudaKernels {
    fn gemm(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), Error> {
        check_len("cuda gemm", "a", m * k, a.len())?;
        check_len("cuda gemm", "b", k * n, b.len())?;
        check_len("cuda gemm", "c", m * n, c.len())?;
        let role = match (&self.skinny, self.mode) {
            (Some(s), GemmMode::Skinny) => SkinnyRole::Forced(s),
            (Some(s), _) => SkinnyRole::Candidate(s),
            (None, _) => SkinnyRole::Off,
        };
        match &self.lt {
            Some(lt) => lt.gemm(a, b, c, m, k, n, role, |a, b, c| {
                self.gemm_ex(a, b, c, m, k, n)
            }),
            None => self.gemm_ex(a, b, c, m, k, n),
        }
    }

    fn silu_mul(
        &self,
        gu: &Buffer<T>,
        h: &mut Buffer<T>,
        rows: usize,
        shard: usize,
    ) -> Result<(), Error> {
        check_len("cuda silu_mul", "gu", rows * 2 * shard, gu.len())?;
        check_len("cuda silu_mul", "h", rows * shard, h.len())?;
        let (i, _) = dtype_of::<T>()?;
        let (pg, ph, r, s) = (gu.device_ptr(), h.device_ptr(), rows as i64, shard as i64);
        let mut launch = self.stream.launch_builder(&self.silu_mul[i]);
        launch.arg(&pg).arg(&ph).arg(&r).arg(&s);
        // SAFETY: the arguments match the kernel's signature (two device pointers of the storage
        // type, two 64-bit ints) and the buffers hold the sizes checked above.
        unsafe { launch.launch(grid(rows * shard)) }
            .map(drop)
            .map_err(|e| cuda_err("cuLaunchKernel", e, "silu_mul launch failed"))
    }

    fn gate_up_silu(
        &self,
        x: &Buffer<T>,
        w: &Buffer<T>,
        h: &mut Buffer<T>,
        m: usize,
        k: usize,
        shard: usize,
    ) -> Result<(), Error> {
        let elems = |dims: &[usize]| {
            dims.iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::InvalidArgument {
                    op: "cuda gate_up_silu",
                    detail: format!(
                        "the buffer size {dims:?} overflows usize; check m, k and shard"
                    ),
                })
        };
        check_len("cuda gate_up_silu", "x", elems(&[m, k])?, x.len())?;
        check_len("cuda gate_up_silu", "w", elems(&[k, 2, shard])?, w.len())?;
        check_len("cuda gate_up_silu", "h", elems(&[m, shard])?, h.len())?;
        let Some(sk) = &self.skinny else {
            return gate_up_unfused(self, x, w, h, m, k, shard);
        };
        let key = (m, k, shard, T::DTYPE);
        let known = self
            .fused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let choice = match known {
            Some(c) => c,
            // Never time during capture: an untuned shape runs unfused (its GEMM then runs
            // cublasGemmEx, as `LtGemm` does for untuned shapes).
            None if symmem::is_capturing() => None,
            None => {
                let c = self.tune_gate_up(sk, x, w, h, m, k, shard)?;
                self.fused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, c.clone());
                c
            }
        };
        match choice {
            // (The shape is the table's key, so `plan` is one of its fused candidates; `gemm`
            // checks that again with the lengths and the alignment.)
            Some(plan) if skinny::aligned(w, h) => sk.gemm(&plan, x, w, h),
            _ => gate_up_unfused(self, x, w, h, m, k, shard),
        }
    }

    fn add(&self, a: &Buffer<T>, b: &Buffer<T>, out: &mut Buffer<T>) -> Result<(), Error> {
        let n = out.len();
        check_len("cuda add", "a", n, a.len())?;
        check_len("cuda add", "b", n, b.len())?;
        let (i, _) = dtype_of::<T>()?;
        let (pa, pb, po, ni) = (a.device_ptr(), b.device_ptr(), out.device_ptr(), n as i64);
        let mut launch = self.stream.launch_builder(&self.add[i]);
        launch.arg(&pa).arg(&pb).arg(&po).arg(&ni);
        // SAFETY: as for `silu_mul`.
        unsafe { launch.launch(grid(n)) }
            .map(drop)
            .map_err(|e| cuda_err("cuLaunchKernel", e, "add launch failed"))
    }

    fn describe(&self) -> String {
        if self.lt.is_some() {
            let skinny = if self.skinny.is_some() && self.mode == GemmMode::Skinny {
                "the skinny NVRTC decode kernels where they apply (guarded against cuBLAS), else "
            } else {
                ""
            };
            let candidates = if self.skinny.is_some() && self.mode != GemmMode::Skinny {
                "its heuristic candidates, cublasGemmEx and the skinny NVRTC decode kernels (guarded against cuBLAS)"
            } else {
                "its heuristic candidates and cublasGemmEx"
            };
            format!("{skinny}cuBLASLt, algorithm timed per shape among {candidates} (f32 accumulate) + NVRTC SiLU-mul and add kernels")
        } else {
            "cuBLAS GemmEx (f32 accumulate) + NVRTC SiLU-mul and add kernels".to_string()
        }
    }

    fn probe_copy_bytes(&self) -> usize {
        CUDA_PROBE_COPY_BYTES
    }

    fn gemm_choices(&self) -> Vec<GemmChoice> {
        let mut v = self.lt.as_ref().map(LtGemm::choices).unwrap_or_default();
        v.extend(
            self.fused_records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        v
    }
}
