//! Memory-bound "skinny" GEMMs for the decode shapes: `C[m, n] = A[m, k] B[k, n]`, row-major,
//! with `m` from 1 to [`MAX_M`] token rows against a large weight `B` (`k x n`, `n` contiguous),
//! f32 accumulation, f32, bf16 or f16 storage.
//!
//! At these shapes the product is bound by reading `B` once, which cuBLAS's kernels do not
//! always do at the full read rate. The kernels here ([`SOURCE`], compiled at run time by
//! NVRTC, no CUDA headers) read every element of `B` exactly once per call with 16-byte loads,
//! for all `m` rows in the same pass:
//!
//! * A block has 8 warps. Lane `l` of a warp belongs to column group `l / G` (16 bytes of
//!   consecutive columns: 8 bf16/f16 or 4 f32) and row group `l % G` (`MT` rows of `A`), so that
//!   `G * MT >= m` rows are covered; `MT` is 1, 2, 4 or 8 and `G` is 1 for `m <= 8`, else 2, 4
//!   or 8. A block covers `32 / G` column groups.
//! * The block's split (a `chunk` of K rows) is walked in shared-memory tiles of `kt` rows of
//!   `A` (stored as f32). In a tile, the warps take groups of `G` consecutive rows of `B` in
//!   turn; lane `(c, g)` loads row `g` of the group for column group `c` (`U` loads in flight
//!   per lane: 4, or 8 in the `_u8` kernels for `m <= 8`, which [`candidates`] offers as a
//!   second plan for `--gemm auto` to time) and the `G` lanes of a column group exchange them
//!   by warp shuffles, so each weight element is loaded once and used for every row of `A`.
//!   `U` changes how many loads are batched, not the order of the additions: both kernels give
//!   the same bits.
//! * The 8 warps' partial sums are added in a fixed order through shared memory. With one split
//!   the block writes `C` (16-byte stores); with several (split-K, when `n` alone gives too few
//!   blocks, as for the down projection) each split writes f32 partials to a workspace, fences
//!   them and counts its arrival on its column block's counter (an integer `atomicAdd`); the
//!   block that arrives last adds the partials of all splits in split order (reading them past
//!   L1), writes `C` and sets the counter back to zero, all in the one kernel launch. No float
//!   atomics: the result is the same bit for bit on every run, eager or replayed from a graph,
//!   whichever block arrives last.
//!
//! [`plan`] (pure Rust, no GPU) picks the variant, the tiling, the split factor and the grid,
//! or `None` when the shape is not one the kernels take (then cuBLASLt runs it). The CUDA part
//! (`Skinny`, with the `cuda` feature) compiles the kernels for the device's compute
//! capability, owns the workspace (allocated and zeroed once, up front: nothing is allocated
//! during graph capture, and the counters are zero between calls) and launches a plan after
//! checking the buffers' lengths and alignment.

use symmem::DType;

/// Largest `m` (token rows) the kernels take; larger products fall back to cuBLASLt.
pub const MAX_M: usize = 64;

/// Bytes at the start of the split-K workspace that hold the per-column-block arrival
/// counters (`u32`, zeroed when the workspace is allocated and set back to zero by the block
/// that finishes each column block, so they are zero between calls).
pub const COUNTER_BYTES: usize = 64 << 10;

/// Most column blocks a split-K plan may have (one counter each).
pub const MAX_SPLIT_COL_BLOCKS: usize = COUNTER_BYTES / 4;

/// Bytes of the workspace for the f32 partials, after the counters. A plan whose partials
/// would not fit uses fewer splits.
pub const PARTIAL_BYTES: usize = 16 << 20;

/// Bytes of the split-K workspace (counters, then partials), allocated once per rank.
pub const WORKSPACE_BYTES: usize = COUNTER_BYTES + PARTIAL_BYTES;

/// Threads per block of the GEMM kernels (8 warps).
pub const BLOCK_THREADS: usize = 256;

/// Warps per block.
const WARPS: usize = BLOCK_THREADS / 32;

/// Shared memory the kernels may use without opting in to more (the CUDA default limit).
pub const MAX_SHARED_BYTES: usize = 48 << 10;

/// Bytes of shared memory for the tile of `A` (f32, rows padded by one element).
const X_TILE_BYTES: usize = 40 << 10;

/// Rows of `B` a tile and a split are multiples of.
pub const K_ALIGN: usize = 32;

/// Fewest rows of `B` per split (so that every warp has several row groups).
const MIN_CHUNK: usize = 128;

/// Blocks per SM the split factor aims for (enough loads in flight to hide the latency).
const BLOCKS_PER_SM: usize = 4;

/// The blocks-per-SM targets of the split-K candidates ([`candidates`]): [`plan`]'s, then
/// fewer, longer splits (a shorter fix-up) and more, shorter ones (more loads in flight).
/// Where the shape needs no split, they give the same plan, offered once.
pub const SPLIT_TARGETS: [usize; 3] = [BLOCKS_PER_SM, 2, 8];

/// Largest `gridDim.y`.
const MAX_GRID_Y: usize = 65_535;

/// Largest `gridDim.x`.
const MAX_GRID_X: usize = i32::MAX as usize;

/// How one product runs on the skinny kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkinnyPlan {
    /// Rows of `A` and `C`.
    pub m: usize,
    /// Columns of `A`, rows of `B`.
    pub k: usize,
    /// Columns of `B` and `C`.
    pub n: usize,
    /// Storage type.
    pub dtype: DType,
    /// Rows of `A` each lane accumulates (`MT`: 1, 2, 4 or 8).
    pub rows_per_lane: usize,
    /// Lanes sharing one column group (`G`: 1, 2, 4 or 8); `rows_per_lane * row_groups >= m`.
    pub row_groups: usize,
    /// Loads of `B` in flight per lane (`U`: 4, or 8 in the second of [`candidates`]).
    pub unroll: usize,
    /// Elements of one 16-byte load (8 for bf16 and f16, 4 for f32).
    pub vec: usize,
    /// Columns of `C` one block covers: `32 / row_groups * vec`.
    pub block_cols: usize,
    /// Blocks along `n` (`gridDim.x`).
    pub col_blocks: usize,
    /// Split-K factor (`gridDim.y`): 1 writes `C` directly; with more, each split writes f32
    /// partials to the workspace and the last block of each column block adds them.
    pub splits: usize,
    /// Rows of `B` per split, a multiple of [`K_ALIGN`]; the last split takes what is left.
    pub chunk: usize,
    /// Rows of `A`'s columns cached in shared memory per tile, a multiple of [`K_ALIGN`].
    pub k_tile: usize,
    /// Dynamic shared memory of the GEMM kernel.
    pub shared_bytes: usize,
    /// The fused gate-up projection ([`plan_silu`]): `B` is `[k, 2 n]` (gate columns, then up
    /// columns) and the output is `h[m, n] = silu(A B_gate) * (A B_up)`; `false` for a plain
    /// product `C[m, n] = A B`, `B` `[k, n]`.
    pub fused: bool,
    /// Workspace bytes the plan touches, from its start: [`COUNTER_BYTES`] of counters (of
    /// which it uses the first `col_blocks`) and `splits * m * ldb * 4` of partials (`ldb` is
    /// [`SkinnyPlan::ldb`]: `n`, or `2 n` for a fused plan); 0 with one split.
    pub workspace_bytes: usize,
}

/// Storage bytes of an element the kernels take, `None` for other types.
pub fn elem_bytes(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(4),
        DType::BF16 | DType::F16 => Some(2),
        _ => None,
    }
}

/// Name of the dtype in the kernels' names.
fn dtype_tag(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => Some("f32"),
        DType::BF16 => Some("bf16"),
        DType::F16 => Some("f16"),
        _ => None,
    }
}

/// The `(MT, G, U)` kernel variants: `MT` rows of `A` per lane, `G` lanes per column group,
/// `U` loads of `B` in flight per lane (4, and 8 for the `G = 1` variants, `m <= 8`).
pub const VARIANTS: [(usize, usize, usize); 11] = [
    (1, 1, 4),
    (2, 1, 4),
    (4, 1, 4),
    (8, 1, 4),
    (8, 2, 4),
    (8, 4, 4),
    (8, 8, 4),
    (1, 1, 8),
    (2, 1, 8),
    (4, 1, 8),
    (8, 1, 8),
];

/// `(MT, G)` for `m` rows (`1..=MAX_M`).
fn variant_of(m: usize) -> Option<(usize, usize)> {
    match m {
        1 => Some((1, 1)),
        2 => Some((2, 1)),
        3..=4 => Some((4, 1)),
        5..=8 => Some((8, 1)),
        9..=16 => Some((8, 2)),
        17..=32 => Some((8, 4)),
        33..=MAX_M => Some((8, 8)),
        _ => None,
    }
}

/// Name of the GEMM kernel of `dtype` and variant `(mt, g, unroll)` (`None` for a variant
/// that is not in [`VARIANTS`]); `fused` names the gate-up kernel with the SiLU-and-multiply
/// (suffix `_silu`).
pub fn kernel_name(
    dtype: DType,
    mt: usize,
    g: usize,
    unroll: usize,
    fused: bool,
) -> Option<String> {
    if !VARIANTS.contains(&(mt, g, unroll)) {
        return None;
    }
    let suffix = if unroll == 4 { "" } else { "_u8" };
    let silu = if fused { "_silu" } else { "" };
    Some(format!(
        "skinny_{}_m{mt}_g{g}{suffix}{silu}",
        dtype_tag(dtype)?
    ))
}

/// Whether `p` is one of the [`candidates`] (or, for a fused plan, [`candidates_silu`]) for
/// its shape on `sms` multiprocessors.
pub fn is_candidate(p: &SkinnyPlan, sms: usize) -> bool {
    candidates_with(p.m, p.k, p.n, p.dtype, sms, p.fused).contains(p)
}

/// The plans the kernels offer for a shape (timed against each other by `--gemm auto`):
/// [`plan`]'s first, with 4 loads in flight per lane, then for `m <= 8` the same with 8, then
/// the same pair for the other split factors of [`SPLIT_TARGETS`] where they differ. Empty
/// when [`plan`] gives `None`.
pub fn candidates(m: usize, k: usize, n: usize, dtype: DType, sms: usize) -> Vec<SkinnyPlan> {
    candidates_with(m, k, n, dtype, sms, false)
}

/// The fused gate-up plans for `h[m, n] = silu(A B_gate) * (A B_up)` with `B` `[k, 2 n]`,
/// ordered as [`candidates`] orders plain ones ([`plan_silu`]'s first). Empty when
/// [`plan_silu`] gives `None`.
pub fn candidates_silu(m: usize, k: usize, n: usize, dtype: DType, sms: usize) -> Vec<SkinnyPlan> {
    candidates_with(m, k, n, dtype, sms, true)
}

/// The candidates of a shape: for each target of [`SPLIT_TARGETS`], its plan and the same
/// with 8 loads in flight where that variant exists, each plan once.
fn candidates_with(
    m: usize,
    k: usize,
    n: usize,
    dtype: DType,
    sms: usize,
    fused: bool,
) -> Vec<SkinnyPlan> {
    let mut v: Vec<SkinnyPlan> = Vec::new();
    for target in SPLIT_TARGETS {
        let Some(p) = plan_at(m, k, n, dtype, sms, fused, target) else {
            continue;
        };
        let u8 = VARIANTS
            .contains(&(p.rows_per_lane, p.row_groups, 8))
            .then(|| SkinnyPlan {
                unroll: 8,
                ..p.clone()
            });
        for q in std::iter::once(p).chain(u8) {
            if !v.contains(&q) {
                v.push(q);
            }
        }
    }
    v
}

/// Plan `C[m, n] = A[m, k] B[k, n]` on a device with `sms` multiprocessors, or `None` (use
/// cuBLASLt) when the kernels do not take the shape: `m` outside `1..=MAX_M`, a storage type
/// other than f32, bf16 or f16, `n` not a multiple of 16 bytes of elements (rows of `B` and
/// `C` would not be 16-byte aligned), `k` or `n` zero or beyond 32-bit ints, or a grid over
/// CUDA's limits. Pointer alignment is checked at launch (`Skinny::gemm`).
pub fn plan(m: usize, k: usize, n: usize, dtype: DType, sms: usize) -> Option<SkinnyPlan> {
    plan_with(m, k, n, dtype, sms, false)
}

/// Plan the fused gate-up projection `h[m, n] = silu(A B_gate) * (A B_up)` where `B` is
/// `[k, 2 n]` (gate columns `[0, n)`, then up columns `[n, 2 n)`, as the example stores
/// them): one kernel reads both halves of `B` once and applies the SiLU-and-multiply in f32
/// before rounding `h` once. `None` where [`plan`] would refuse `m`, `k`, `2 n`.
pub fn plan_silu(m: usize, k: usize, n: usize, dtype: DType, sms: usize) -> Option<SkinnyPlan> {
    plan_with(m, k, n, dtype, sms, true)
}

/// [`plan`] (`fused` false) or [`plan_silu`].
fn plan_with(
    m: usize,
    k: usize,
    n: usize,
    dtype: DType,
    sms: usize,
    fused: bool,
) -> Option<SkinnyPlan> {
    plan_at(m, k, n, dtype, sms, fused, BLOCKS_PER_SM)
}

/// [`plan_with`] with the split factor aiming at `blocks_per_sm` blocks per SM.
fn plan_at(
    m: usize,
    k: usize,
    n: usize,
    dtype: DType,
    sms: usize,
    fused: bool,
    blocks_per_sm: usize,
) -> Option<SkinnyPlan> {
    let size = elem_bytes(dtype)?;
    let vec = 16 / size;
    let (mt, g) = variant_of(m)?;
    if k == 0 || n == 0 || !n.is_multiple_of(vec) {
        return None;
    }
    let int = i32::MAX as usize;
    // Row length of B: n, or 2 n (gate and up) when fused.
    let ldb = if fused { n.checked_mul(2)? } else { n };
    if k > int || ldb > int || m.checked_mul(k)? > isize::MAX as usize / 8 {
        return None;
    }
    k.checked_mul(ldb)?.checked_mul(size)?;
    let block_cols = 32 / g * vec;
    let col_blocks = n.div_ceil(block_cols);
    // Split K until the grid has about blocks_per_sm blocks per SM, keeping splits of at least
    // MIN_CHUNK rows and partials that fit the workspace.
    let target = sms.max(1) * blocks_per_sm.max(1);
    // (Splitting also needs one arrival counter per column block.)
    let mut splits = target.div_ceil(col_blocks).max(1);
    splits = splits.min((k / MIN_CHUNK).max(1));
    let partial = m.checked_mul(ldb)?.checked_mul(4)?;
    splits = splits.min((PARTIAL_BYTES / partial).max(1)).min(MAX_GRID_Y);
    if col_blocks > MAX_SPLIT_COL_BLOCKS {
        splits = 1;
    }
    let chunk = k.div_ceil(splits).next_multiple_of(K_ALIGN);
    // No empty split: the last one starts below k.
    let splits = k.div_ceil(chunk);
    let mp = mt * g;
    let kt_max = (X_TILE_BYTES / (4 * mp) - 1) / K_ALIGN * K_ALIGN;
    let k_tile = kt_max.min(chunk).max(K_ALIGN);
    let x_bytes = mp * (k_tile + 1) * 4;
    let red_bytes = mt * vec * (WARPS / 2) * 32 * 4;
    let shared_bytes = x_bytes.max(red_bytes);
    let workspace_bytes = if splits > 1 {
        COUNTER_BYTES + splits * partial
    } else {
        0
    };
    if col_blocks > MAX_GRID_X
        || splits > MAX_GRID_Y
        || (splits > 1 && col_blocks > MAX_SPLIT_COL_BLOCKS)
        || shared_bytes > MAX_SHARED_BYTES
        || workspace_bytes > WORKSPACE_BYTES
        || mp * (k_tile + 1) > int
    {
        return None;
    }
    Some(SkinnyPlan {
        m,
        k,
        n,
        dtype,
        rows_per_lane: mt,
        row_groups: g,
        unroll: 4,
        vec,
        block_cols,
        col_blocks,
        splits,
        chunk,
        k_tile,
        shared_bytes,
        workspace_bytes,
        fused,
    })
}

/// Why [`plan`] returns `None` for a shape (for the `gemm_choice` record), or `"plans"` when
/// it does not (then the buffers were not 16-byte aligned).
pub fn why_not(m: usize, k: usize, n: usize, dtype: DType, sms: usize) -> String {
    let Some(size) = elem_bytes(dtype) else {
        return format!("{dtype} storage (the kernels take f32, bf16 and f16)");
    };
    if m == 0 || m > MAX_M {
        return format!("m = {m} is outside 1..={MAX_M} (not a decode shape)");
    }
    if k == 0 || n == 0 {
        return "an empty dimension".into();
    }
    if !n.is_multiple_of(16 / size) {
        return format!(
            "n = {n} is not a multiple of {} elements (rows of B and C would not be 16-byte aligned)",
            16 / size
        );
    }
    if plan(m, k, n, dtype, sms).is_some() {
        return "the buffers of B or C are not 16-byte aligned".into();
    }
    "the dimensions exceed the kernels' 32-bit indices or CUDA's grid limits".into()
}

/// Bound on `||skinny - cuBLAS|| / ||cuBLAS||` of the correctness guard: both accumulate in
/// f32 and round the output once to the storage type, so they differ by at most about one unit
/// in the last place of the storage type per element (2^-7 relative for bf16, 2^-10 for f16) or,
/// in f32, by summation order; a wrong kernel is off by order 1.
pub fn guard_bound(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 1.6e-2,
        DType::F16 => 4e-3,
        _ => 1e-4,
    }
}

impl SkinnyPlan {
    /// `(gridDim.x, gridDim.y)` of the GEMM kernel.
    pub fn grid(&self) -> (usize, usize) {
        (self.col_blocks, self.splits)
    }

    /// Rows `[start, end)` of `B` that split `s` covers (as the kernel computes them).
    pub fn split_rows(&self, s: usize) -> (usize, usize) {
        let start = s * self.chunk;
        (start.min(self.k), (start + self.chunk).min(self.k))
    }

    /// Columns `[start, end)` of `C` that lane `lane` of block `bx` writes (empty past `n`).
    pub fn lane_cols(&self, bx: usize, lane: usize) -> (usize, usize) {
        let start = bx * self.block_cols + lane / self.row_groups * self.vec;
        (start.min(self.n), (start + self.vec).min(self.n))
    }

    /// Rows of `C` that lane `lane` writes (those of its row group below `m`).
    pub fn lane_rows(&self, lane: usize) -> std::ops::Range<usize> {
        let g = lane % self.row_groups;
        let start = g * self.rows_per_lane;
        start.min(self.m)..(start + self.rows_per_lane).min(self.m)
    }

    /// Name of the GEMM kernel this plan launches.
    pub fn kernel_name(&self) -> String {
        kernel_name(
            self.dtype,
            self.rows_per_lane,
            self.row_groups,
            self.unroll,
            self.fused,
        )
        .unwrap_or_default()
    }

    /// Elements of one row of `B`: `n`, or `2 n` (gate and up columns) for a fused plan.
    pub fn ldb(&self) -> usize {
        if self.fused {
            self.n.saturating_mul(2)
        } else {
            self.n
        }
    }

    /// Bytes of `B` the product reads (the weight bytes, read once).
    pub fn weight_bytes(&self) -> usize {
        self.k * self.ldb() * elem_bytes(self.dtype).unwrap_or(0)
    }

    /// One line for the report: the variant, grid and splits.
    pub fn describe(&self) -> String {
        format!(
            "skinny {}{} (MT {}, G {}, U {}; grid {} x {}, split-K {} of {} rows, tile {} rows)",
            self.kernel_name(),
            if self.fused {
                " with the SiLU-mul fused"
            } else {
                ""
            },
            self.rows_per_lane,
            self.row_groups,
            self.unroll,
            self.col_blocks,
            self.splits,
            self.splits,
            self.chunk,
            self.k_tile
        )
    }
}

/// CUDA C source of the skinny GEMM (split-K reduction included), for `float`, bf16 and f16
/// storage (one kernel per dtype and `(MT, G)` of [`VARIANTS`]). Needs no CUDA headers.
pub const SOURCE: &str = r#"
struct bf16_t { unsigned short x; };
struct f16_t { unsigned short x; };
struct u32x4 { unsigned int x, y, z, w; };

#define SK_WARPS 8

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t v) { return __uint_as_float(((unsigned int)v.x) << 16); }
__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float to_f(f16_t v) { return h2f(v.x); }

__device__ __forceinline__ unsigned short f2bf(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { return (unsigned short)((u >> 16) | 0x40u); }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
__device__ __forceinline__ unsigned short f2h(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
__device__ __forceinline__ void from_f(float v, float* o) { *o = v; }
__device__ __forceinline__ void from_f(float v, bf16_t* o) { o->x = f2bf(v); }
__device__ __forceinline__ void from_f(float v, f16_t* o) { o->x = f2h(v); }

// 16-byte loads and stores (the callers guarantee 16-byte alignment).
__device__ __forceinline__ u32x4 ld16(const void* p) {
    u32x4 r;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ void st16(void* p, u32x4 v) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};"
                 :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
// A 4-byte load at L2 (.cg), past the non-coherent L1: for other blocks' partials.
__device__ __forceinline__ float ldcg(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ u32x4 zero16() { u32x4 z; z.x = 0u; z.y = 0u; z.z = 0u; z.w = 0u; return z; }

template <typename T> struct Vec { enum { N = 8 }; };
template <> struct Vec<float> { enum { N = 4 }; };

__device__ __forceinline__ void unpack(u32x4 v, float* f, const float*) {
    f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack(u32x4 v, float* f, const bf16_t*) {
    unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
__device__ __forceinline__ void unpack(u32x4 v, float* f, const f16_t*) {
    unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = h2f((unsigned short)(w[i] & 0xffffu));
        f[2 * i + 1] = h2f((unsigned short)(w[i] >> 16));
    }
}
__device__ __forceinline__ u32x4 pack(const float* f, const float*) {
    u32x4 r;
    r.x = __float_as_uint(f[0]); r.y = __float_as_uint(f[1]);
    r.z = __float_as_uint(f[2]); r.w = __float_as_uint(f[3]);
    return r;
}
__device__ __forceinline__ u32x4 pack(const float* f, const bf16_t*) {
    unsigned int w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = (unsigned int)f2bf(f[2 * i]) | ((unsigned int)f2bf(f[2 * i + 1]) << 16);
    u32x4 r; r.x = w[0]; r.y = w[1]; r.z = w[2]; r.w = w[3];
    return r;
}
__device__ __forceinline__ u32x4 pack(const float* f, const f16_t*) {
    unsigned int w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = (unsigned int)f2h(f[2 * i]) | ((unsigned int)f2h(f[2 * i + 1]) << 16);
    u32x4 r; r.x = w[0]; r.y = w[1]; r.z = w[2]; r.w = w[3];
    return r;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// C[m, n] = A[m, k] B[k, n] (row-major), rows [blockIdx.y * chunk, +chunk) of B in this block.
// gridDim.y == 1: C is written; else f32 partials go to ws[blockIdx.y][m][ldb] and the last
// block of column blockIdx.x to arrive (counted in counters[blockIdx.x], zero between calls)
// adds the gridDim.y partials in split order, writes C and sets the counter back to zero.
// Lane (cg, g) = (lane / G, lane % G): columns [blockIdx.x * (32 / G) * VEC + cg * VEC, +VEC),
// rows [g * MT, +MT) of A.
// U: loads of B in flight per lane (SK_UNROLL rows of B, a multiple of the warps apart).
// FUSE (the gate-up projection with its SiLU-and-multiply): B is [k, 2n] (gate columns, then
// up columns) and C is h[m, n] = silu(A B[:, :n]) * (A B[:, n:]). Warps 0-3 take the gate
// columns of the block, warps 4-7 the matching up columns (the same rows of B in turn, so the
// block reads as many bytes as without FUSE); each half adds its 4 warps' sums, and the block
// (or, with split-K, the last block of the column block) applies silu(gate) * up in f32.
template <typename T, int MT, int G, int SK_UNROLL, int FUSE>
__device__ void skinny(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
                       float* __restrict__ ws, unsigned int* __restrict__ counters, int m, int k,
                       int n, int chunk, int kt) {
    const int VEC = Vec<T>::N;
    const int MP = MT * G;
    const int CG = 32 / G;
    const int NW = FUSE ? SK_WARPS / 2 : SK_WARPS;  // warps per half
    const long long ldb = FUSE ? 2LL * n : (long long)n;
    extern __shared__ float smem[];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int half = FUSE ? warp / NW : 0;
    const int lw = warp - half * NW;
    const int cg = lane / G;
    const int g = lane - cg * G;
    const long long col = (long long)blockIdx.x * (CG * VEC) + cg * VEC;
    const long long colb = col + half * (long long)n;  // column of B (up columns for half 1)
    const bool col_ok = col < (long long)n;
    const int k0 = blockIdx.y * chunk;
    const int k1 = min(k, k0 + chunk);
    const int stride = kt + 1;
    float acc[MT][VEC];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[i][v] = 0.0f;

    for (int kb = k0; kb < k1; kb += kt) {
        const int rows = min(kt, k1 - kb);
        const int groups = (rows + G - 1) / G;
        u32x4 wv[SK_UNROLL];
        // The loads of B for row groups q0, q0 + NW, ... (U of them, zero past the tile).
        auto load_b = [&](int q0) {
#pragma unroll
            for (int u = 0; u < SK_UNROLL; ++u) {
                const int kk = (q0 + u * NW) * G + g;
                wv[u] = (col_ok && kk < rows) ? ld16(b + (long long)(kb + kk) * ldb + colb) : zero16();
            }
        };
        // The tile's first loads of B go out before the tile of A is staged (they do not need
        // it), so that their latency overlaps the staging and its barriers.
        load_b(lw);
        __syncthreads();
        for (int i = threadIdx.x; i < MP * kt; i += blockDim.x) {
            const int r = i / kt;
            const int kk = i - r * kt;
            smem[r * stride + kk] = (r < m && kk < rows) ? to_f(a[(long long)r * k + kb + kk]) : 0.0f;
        }
        __syncthreads();
        for (int q0 = lw; q0 < groups; q0 += NW * SK_UNROLL) {
            if (q0 != lw) load_b(q0);
#pragma unroll
            for (int u = 0; u < SK_UNROLL; ++u) {
                const int q = q0 + u * NW;
                if (q >= groups) break;  // the same for every lane of the warp
#pragma unroll
                for (int j = 0; j < G; ++j) {
                    u32x4 v = wv[u];
                    if (G > 1) {
                        const int src = cg * G + j;
                        v.x = __shfl_sync(0xffffffffu, v.x, src);
                        v.y = __shfl_sync(0xffffffffu, v.y, src);
                        v.z = __shfl_sync(0xffffffffu, v.z, src);
                        v.w = __shfl_sync(0xffffffffu, v.w, src);
                    }
                    float f[VEC];
                    unpack(v, f, (const T*)0);
                    const int kk = q * G + j;
#pragma unroll
                    for (int i = 0; i < MT; ++i) {
                        const float xv = smem[(g * MT + i) * stride + kk];
#pragma unroll
                        for (int e = 0; e < VEC; ++e) acc[i][e] = fmaf(xv, f[e], acc[i][e]);
                    }
                }
            }
        }
    }

    // The warps' sums, added in a fixed order within each half: warps [s, 2s) into [0, s).
    const int HS = MT * VEC * (NW / 2) * 32;  // floats of one half's reduction area
    __syncthreads();
    for (int s = NW / 2; s >= 1; s >>= 1) {
        if (lw >= s && lw < 2 * s) {
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int e = 0; e < VEC; ++e)
                    smem[half * HS + (i * VEC + e) * (s * 32) + (lw - s) * 32 + lane] = acc[i][e];
        }
        __syncthreads();
        if (lw < s) {
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int e = 0; e < VEC; ++e)
                    acc[i][e] += smem[half * HS + (i * VEC + e) * (s * 32) + lw * 32 + lane];
        }
        __syncthreads();
    }
    if (gridDim.y == 1) {
        if (FUSE) {
            // Warp NW (the up half's sum) hands its sums to warp 0 (the gate half's).
            if (warp == NW) {
#pragma unroll
                for (int i = 0; i < MT; ++i)
#pragma unroll
                    for (int e = 0; e < VEC; ++e) smem[(i * VEC + e) * 32 + lane] = acc[i][e];
            }
            __syncthreads();
            if (warp != 0 || !col_ok) return;
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int e = 0; e < VEC; ++e)
                    acc[i][e] = silu(acc[i][e]) * smem[(i * VEC + e) * 32 + lane];
        } else if (warp != 0 || !col_ok) {
            return;
        }
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int row = g * MT + i;
            if (row >= m) break;
            st16(c + (long long)row * n + col, pack(acc[i], (const T*)0));
        }
        return;
    }
    // Split-K: this split's partial tile goes to ws[blockIdx.y][m][ldb] (gate and up columns
    // where FUSE); the last block of the column block to arrive adds every split's partials in
    // split order and writes C.
    if (lw == 0 && col_ok) {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int row = g * MT + i;
            if (row >= m) break;
            float* p = ws + ((long long)blockIdx.y * m + row) * ldb + colb;
#pragma unroll
            for (int e = 0; e < VEC; e += 4) {
                st16(p + e, pack(&acc[i][e], (const float*)0));
            }
        }
    }
    // The partials are visible device-wide before the counter says they are there.
    __threadfence();
    __syncthreads();
    __shared__ unsigned int sk_last;
    if (threadIdx.x == 0) {
        const unsigned int old = atomicAdd(&counters[blockIdx.x], 1u);
        sk_last = (old == gridDim.y - 1u) ? 1u : 0u;
    }
    __syncthreads();
    if (sk_last == 0u) return;
    // Every other split fenced its partials before its increment, which this block has seen.
    __threadfence();
    const int bc = CG * VEC;
    const long long col0 = (long long)blockIdx.x * bc;
    const long long step = (long long)m * ldb;
    const int splits = gridDim.y;
    for (int idx = threadIdx.x; idx < m * bc; idx += blockDim.x) {
        const int row = idx / bc;
        const long long cc = col0 + (idx - row * bc);
        if (cc >= (long long)n) continue;
        const float* p = ws + (long long)row * ldb + cc;
        // (Unrolled so that many loads are in flight: this fix-up is the kernel's tail.)
        float s = 0.0f;
#pragma unroll 16
        for (int sp = 0; sp < splits; ++sp) s += ldcg(p + sp * step);
        if (FUSE) {
            float u = 0.0f;
#pragma unroll 16
            for (int sp = 0; sp < splits; ++sp) u += ldcg(p + n + sp * step);
            s = silu(s) * u;
        }
        from_f(s, &c[(long long)row * n + cc]);
    }
    // Zero again for the next call (a later kernel on the stream starts after this one ends).
    if (threadIdx.x == 0) atomicExch(&counters[blockIdx.x], 0u);
}

// 4 loads in flight per lane; the _u8 kernels (G == 1 only) have 8; the _silu kernels are the
// FUSE ones (gate-up with its SiLU-and-multiply).
#define SK_GEMM(T, NAME, MT, G) \
extern "C" __global__ void __launch_bounds__(256) skinny_##NAME##_m##MT##_g##G( \
    const T* a, const T* b, T* c, float* ws, unsigned int* counters, int m, int k, int n, \
    int chunk, int kt) { \
    skinny<T, MT, G, 4, 0>(a, b, c, ws, counters, m, k, n, chunk, kt); } \
extern "C" __global__ void __launch_bounds__(256) skinny_##NAME##_m##MT##_g##G##_silu( \
    const T* a, const T* b, T* c, float* ws, unsigned int* counters, int m, int k, int n, \
    int chunk, int kt) { \
    skinny<T, MT, G, 4, 1>(a, b, c, ws, counters, m, k, n, chunk, kt); }
#define SK_GEMM_U8(T, NAME, MT, G) \
extern "C" __global__ void __launch_bounds__(256) skinny_##NAME##_m##MT##_g##G##_u8( \
    const T* a, const T* b, T* c, float* ws, unsigned int* counters, int m, int k, int n, \
    int chunk, int kt) { \
    skinny<T, MT, G, 8, 0>(a, b, c, ws, counters, m, k, n, chunk, kt); } \
extern "C" __global__ void __launch_bounds__(256) skinny_##NAME##_m##MT##_g##G##_u8_silu( \
    const T* a, const T* b, T* c, float* ws, unsigned int* counters, int m, int k, int n, \
    int chunk, int kt) { \
    skinny<T, MT, G, 8, 1>(a, b, c, ws, counters, m, k, n, chunk, kt); }
#define SK_ALL(T, NAME) \
    SK_GEMM(T, NAME, 1, 1) SK_GEMM(T, NAME, 2, 1) SK_GEMM(T, NAME, 4, 1) SK_GEMM(T, NAME, 8, 1) \
    SK_GEMM(T, NAME, 8, 2) SK_GEMM(T, NAME, 8, 4) SK_GEMM(T, NAME, 8, 8) \
    SK_GEMM_U8(T, NAME, 1, 1) SK_GEMM_U8(T, NAME, 2, 1) SK_GEMM_U8(T, NAME, 4, 1) \
    SK_GEMM_U8(T, NAME, 8, 1)

SK_ALL(float, f32)
SK_ALL(bf16_t, bf16)
SK_ALL(f16_t, f16)
"#;

/// Every kernel name [`SOURCE`] defines (GEMM variants, plain and fused, all dtypes).
pub fn kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for d in [DType::F32, DType::BF16, DType::F16] {
        for fused in [false, true] {
            for (mt, g, u) in VARIANTS {
                names.extend(kernel_name(d, mt, g, u, fused));
            }
        }
    }
    names
}

#[cfg(feature = "cuda")]
pub use gpu::{aligned, Skinny};

#[cfg(feature = "cuda")]
mod gpu {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use cudarc::driver::sys::CUdevice_attribute;
    use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
    use cudarc::nvrtc::{self, CompileOptions, Ptx};
    use symmem::cuda::{cuda_context, cuda_stream};
    use symmem::{Buffer, DType, Element, Error, RankContext};

    use super::{kernel_name, plan, plan_silu, SkinnyPlan, BLOCK_THREADS, SOURCE, VARIANTS};
    use super::{COUNTER_BYTES, MAX_SHARED_BYTES, MAX_SPLIT_COL_BLOCKS, WORKSPACE_BYTES};
    use crate::cuda::cuda_err;

    /// Whether `b` and `c` start on 16-byte boundaries, as the kernels' 16-byte loads and stores
    /// need (symmem's pool blocks always do; a sub-view may not).
    pub fn aligned<T: Element>(b: &Buffer<T>, c: &Buffer<T>) -> bool {
        b.device_ptr().is_multiple_of(16) && c.device_ptr().is_multiple_of(16)
    }

    /// NVRTC's `--gpu-architecture` for a compute capability it knows (the driver JIT-compiles
    /// the PTX for the device); `None` leaves NVRTC's default.
    fn arch_of(major: i32, minor: i32) -> Option<&'static str> {
        Some(match (major, minor) {
            (7, 5) => "compute_75",
            (8, 0) => "compute_80",
            (8, 6) => "compute_86",
            (8, 7) => "compute_87",
            (8, 9) => "compute_89",
            (9, 0) => "compute_90",
            (10, 0) => "compute_100",
            (12, 0) => "compute_120",
            _ => return None,
        })
    }

    /// Compile [`SOURCE`] for `arch` (`None`: NVRTC's default architecture). Public so that
    /// the NVRTC test compiles exactly what the example loads.
    pub fn compile(arch: Option<&'static str>) -> Result<Ptx, String> {
        let opts = CompileOptions {
            arch,
            ..Default::default()
        };
        nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| format!("{e:?}"))
    }

    /// Compiled PTX (or the compiler's error) by `--gpu-architecture`.
    type PtxCache = HashMap<Option<&'static str>, Result<Ptx, String>>;

    /// The PTX for `arch`, compiled once per process and architecture.
    fn ptx(arch: Option<&'static str>) -> Result<Ptx, Error> {
        static CACHE: OnceLock<Mutex<PtxCache>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(arch)
            .or_insert_with(|| compile(arch))
            .clone()
            .map_err(|message| Error::Cuda {
                call: "nvrtcCompileProgram",
                message,
                hint: "the example's skinny GEMM kernels did not compile (a bug of the example, or libnvrtc missing); run with --gemm lt or --gemm cublas",
            })
    }

    /// The skinny GEMM kernels of one CUDA rank, with their split-K workspace.
    pub struct Skinny {
        stream: Arc<CudaStream>,
        /// GEMM kernels by `(dtype index, variant index)`: the plain ones at the indices of
        /// [`VARIANTS`], the fused (`_silu`) ones after them.
        gemm: Vec<Vec<CudaFunction>>,
        /// Split-K workspace: [`COUNTER_BYTES`] of arrival counters (zero between calls),
        /// then the partials.
        workspace: Buffer<u8>,
        sms: usize,
        arch: Option<&'static str>,
    }

    /// Index of a dtype in the kernel tables.
    fn dtype_index(d: DType) -> Option<usize> {
        match d {
            DType::F32 => Some(0),
            DType::BF16 => Some(1),
            DType::F16 => Some(2),
            _ => None,
        }
    }

    impl Skinny {
        /// Compile (once per process) and load the kernels on the rank's device, and allocate
        /// the workspace ([`WORKSPACE_BYTES`], zeroed on the rank's stream so that the split-K
        /// counters start at zero). Call it outside graph capture.
        pub fn new(ctx: &RankContext) -> Result<Skinny, Error> {
            let not_cuda = || Error::Unsupported {
                backend: "host",
                what: "skinny GEMM kernels (this rank is not a CUDA rank)".into(),
            };
            let stream = cuda_stream(ctx).ok_or_else(not_cuda)?;
            let cu = cuda_context(ctx).ok_or_else(not_cuda)?;
            let attr = |a| {
                cu.attribute(a).map_err(|e| {
                    cuda_err(
                        "cuDeviceGetAttribute",
                        e,
                        "the driver did not describe the GPU",
                    )
                })
            };
            let major = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
            let minor = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
            let sms = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
            let arch = arch_of(major, minor);
            let module = cu.load_module(ptx(arch)?).map_err(|e| {
                cuda_err(
                    "cuModuleLoadData",
                    e,
                    "the driver could not load the skinny GEMM PTX",
                )
            })?;
            let load = |name: String| {
                module.load_function(&name).map_err(|e| {
                    cuda_err(
                        "cuModuleGetFunction",
                        e,
                        "skinny kernel missing from the PTX",
                    )
                })
            };
            let mut gemm = Vec::new();
            for d in [DType::F32, DType::BF16, DType::F16] {
                let mut row = Vec::new();
                for fused in [false, true] {
                    for (mt, g, u) in VARIANTS {
                        row.push(load(kernel_name(d, mt, g, u, fused).unwrap_or_default())?);
                    }
                }
                gemm.push(row);
            }
            // Zeroed (ordered on the stream before any kernel launch): the counters must read
            // zero on the first call; afterwards every split-K call leaves them at zero.
            let workspace = symmem::alloc_zeroed::<u8>(WORKSPACE_BYTES)?;
            Ok(Skinny {
                stream,
                gemm,
                workspace,
                sms: sms.max(1) as usize,
                arch,
            })
        }

        /// Multiprocessors of the device (what [`plan`] is given).
        pub fn sm_count(&self) -> usize {
            self.sms
        }

        /// The `--gpu-architecture` the kernels were compiled for (`None`: NVRTC's default).
        pub fn arch(&self) -> Option<&'static str> {
            self.arch
        }

        /// The plans for `c = a b` on these buffers ([`super::candidates`]), or none (use
        /// cuBLASLt): the shape is not one [`plan`] takes, or `b` or `c` is not 16-byte
        /// aligned.
        pub fn candidates_for<T: Element>(
            &self,
            b: &Buffer<T>,
            c: &Buffer<T>,
            m: usize,
            k: usize,
            n: usize,
        ) -> Vec<SkinnyPlan> {
            match self.plan_for(b, c, m, k, n) {
                Some(_) => super::candidates(m, k, n, T::DTYPE, self.sms),
                None => Vec::new(),
            }
        }

        /// The fused gate-up plans for `h = silu(a b_gate) * (a b_up)` on these buffers
        /// ([`super::candidates_silu`]; `b` is `[k, 2 n]`, `h` is `[m, n]`), or none (use
        /// the GEMM and the separate SiLU-mul kernel): the shape is not one [`plan_silu`]
        /// takes, or `b` or `h` is not 16-byte aligned.
        pub fn candidates_silu_for<T: Element>(
            &self,
            b: &Buffer<T>,
            h: &Buffer<T>,
            m: usize,
            k: usize,
            n: usize,
        ) -> Vec<SkinnyPlan> {
            if !aligned(b, h) || plan_silu(m, k, n, T::DTYPE, self.sms).is_none() {
                return Vec::new();
            }
            super::candidates_silu(m, k, n, T::DTYPE, self.sms)
        }

        /// The plan for `c = a b` on these buffers, or `None` (use cuBLASLt): the shape is not
        /// one [`plan`] takes, or `b` or `c` is not 16-byte aligned.
        pub fn plan_for<T: Element>(
            &self,
            b: &Buffer<T>,
            c: &Buffer<T>,
            m: usize,
            k: usize,
            n: usize,
        ) -> Option<SkinnyPlan> {
            if !aligned(b, c) {
                return None;
            }
            plan(m, k, n, T::DTYPE, self.sms)
        }

        /// Queue `c = a b` with `plan` on the rank's stream (one kernel launch, split-K
        /// included); with a fused plan ([`super::plan_silu`]) `b` is `[k, 2 n]` and `c` gets
        /// `silu(a b_gate) * (a b_up)`. Checks the lengths (`a`: m k, `b`: k n or k 2n, `c`:
        /// m n elements), the dtype, the 16-byte alignment of `b` and `c` and the workspace
        /// before launching.
        pub fn gemm<T: Element>(
            &self,
            plan: &SkinnyPlan,
            a: &Buffer<T>,
            b: &Buffer<T>,
            c: &mut Buffer<T>,
        ) -> Result<(), Error> {
            let (m, k, n) = (plan.m, plan.k, plan.n);
            let ldb = plan.ldb();
            let bad = |detail: String| Error::InvalidArgument {
                op: "skinny gemm",
                detail,
            };
            // The plan must be one of those `candidates` gives for this shape (a hand-made
            // plan could index past the buffers); checked first, so that the products below
            // are of dimensions `plan` accepted (no overflow).
            if !super::is_candidate(plan, self.sms) {
                return Err(bad(format!(
                    "the plan for {m} x {k} x {n} is not one that candidates() gives on this device"
                )));
            }
            for (what, need, have) in [
                ("a", m * k, a.len()),
                ("b", k * ldb, b.len()),
                ("c", m * n, c.len()),
            ] {
                if need != have {
                    return Err(Error::LengthMismatch {
                        op: "skinny gemm",
                        detail: format!("{what} needs {need} elements, the buffer holds {have}"),
                    });
                }
            }
            if T::DTYPE != plan.dtype
                || super::elem_bytes(T::DTYPE) != Some(std::mem::size_of::<T>())
            {
                return Err(bad(format!(
                    "the plan is for {} storage, the buffers hold {}",
                    plan.dtype,
                    T::DTYPE
                )));
            }
            if !aligned(b, c) {
                return Err(bad(
                    "b and c must be 16-byte aligned for the skinny kernels (use cuBLASLt)".into(),
                ));
            }
            let splits_fit = plan.splits == 1
                || (plan.col_blocks <= MAX_SPLIT_COL_BLOCKS
                    && plan.workspace_bytes
                        == COUNTER_BYTES + plan.splits * m * ldb * std::mem::size_of::<f32>());
            if !splits_fit
                || plan.workspace_bytes > self.workspace.len()
                || plan.shared_bytes > MAX_SHARED_BYTES
            {
                return Err(bad(format!(
                    "the plan needs {} workspace bytes and {} shared bytes; {} and {} are available",
                    plan.workspace_bytes,
                    plan.shared_bytes,
                    self.workspace.len(),
                    MAX_SHARED_BYTES
                )));
            }
            let d = dtype_index(plan.dtype).ok_or_else(|| bad("unsupported dtype".into()))?;
            let v = VARIANTS
                .iter()
                .position(|&x| x == (plan.rows_per_lane, plan.row_groups, plan.unroll))
                .ok_or_else(|| bad("unknown kernel variant".into()))?
                + if plan.fused { VARIANTS.len() } else { 0 };
            let (gx, gy) = plan.grid();
            let cfg = LaunchConfig {
                grid_dim: (gx as u32, gy as u32, 1),
                block_dim: (BLOCK_THREADS as u32, 1, 1),
                shared_mem_bytes: plan.shared_bytes as u32,
            };
            // Counters at the start of the workspace, partials after them (COUNTER_BYTES is a
            // multiple of 16, so the partials keep the workspace's 16-byte alignment).
            let (pa, pb, pc, pn, pw) = (
                a.device_ptr(),
                b.device_ptr(),
                c.device_ptr(),
                self.workspace.device_ptr(),
                self.workspace.device_ptr() + COUNTER_BYTES as u64,
            );
            let (mi, ki, ni, ci, ti) = (
                m as i32,
                k as i32,
                n as i32,
                plan.chunk as i32,
                plan.k_tile as i32,
            );
            let mut launch = self.stream.launch_builder(&self.gemm[d][v]);
            launch
                .arg(&pa)
                .arg(&pb)
                .arg(&pc)
                .arg(&pw)
                .arg(&pn)
                .arg(&mi)
                .arg(&ki)
                .arg(&ni)
                .arg(&ci)
                .arg(&ti);
            // SAFETY: the lengths of a, b and c were checked against m k, k ldb and m n above
            // (ldb = n, or 2 n for a fused plan, whose kernel reads gate columns below n and up
            // columns n..2n of each row of b), the plan is one of those `candidates` (or, fused,
            // `candidates_silu`) gives for this shape and device (checked by `is_candidate`:
            // the plan's, or the same with 8 loads in flight, which batches the same in-bounds
            // loads differently), so its grid, chunk, tile and shared size are within the bounds
            // the kernel (the one of `VARIANTS` at the plan's position, fused ones after them)
            // assumes: the kernel reads rows below min(k, split end) and columns below ldb of b,
            // rows below m and columns below k of a, and writes rows below m and columns below
            // n of c. With several splits the kernel also touches the workspace:
            // `splits * m * ldb` floats of partials from byte COUNTER_BYTES on (so
            // `workspace_bytes = COUNTER_BYTES + splits m ldb 4`, checked above against the
            // workspace's length) and the `col_blocks` u32 counters of its first bytes
            // (`col_blocks <= MAX_SPLIT_COL_BLOCKS = COUNTER_BYTES / 4`, checked above, so they
            // stay below the partials). The counters are zero before the launch: the workspace
            // was zeroed at allocation on this stream, and every split-K launch ends with each
            // counter it used set back to zero by the last block of its column; launches on
            // this one stream do not overlap, so no two calls share the counters at once. (The
            // counters' values decide which block adds the partials, never an address: a counter
            // left non-zero by an aborted kernel would give a wrong sum, not an access outside
            // the workspace or c.) b and c are 16-byte aligned and n (so ldb) is a multiple of
            // 16 bytes of elements (so every 16-byte access is aligned; the partials start
            // 16-byte aligned too), all on this rank's GPU and stream; the arguments match the
            // kernel's signature (3 pointers of T, a float pointer, an unsigned int pointer, 5
            // ints).
            unsafe { launch.launch(cfg) }
                .map(drop)
                .map_err(|e| cuda_err("cuLaunchKernel", e, "skinny GEMM launch failed"))?;
            Ok(())
        }
    }
}

#[cfg(feature = "cuda")]
pub use gpu::compile;

#[cfg(test)]
mod tests {
    use super::*;

    const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

    /// The decode shapes of Llama 3 8B's MLP at tp 1, 2, 4 and 8: (k, n) of gate-up and down.
    fn decode_shapes() -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for tp in [1, 2, 4, 8] {
            let s = 14336 / tp;
            v.push((4096, 2 * s));
            v.push((s, 4096));
        }
        v
    }

    /// Every (row, column) of C is written by exactly one lane of one block, every row of B is
    /// covered by exactly one split, and the plan's invariants hold.
    fn check_plan(p: &SkinnyPlan, sms: usize) {
        let (m, k, n) = (p.m, p.k, p.n);
        assert!(p.rows_per_lane * p.row_groups >= m, "{p:?}");
        assert!(p.rows_per_lane * p.row_groups < 2 * m || m == 1, "{p:?}");
        assert_eq!(p.block_cols, 32 / p.row_groups * p.vec);
        assert_eq!(p.vec * elem_bytes(p.dtype).unwrap(), 16);
        assert!(n.is_multiple_of(p.vec));
        // Splits: aligned, in order, non-empty, covering [0, k) exactly once.
        assert!(p.chunk.is_multiple_of(K_ALIGN), "{p:?}");
        let mut next = 0;
        for s in 0..p.splits {
            let (a, b) = p.split_rows(s);
            assert_eq!(a, next, "{p:?}");
            assert!(b > a, "empty split {s}: {p:?}");
            assert!(a.is_multiple_of(K_ALIGN));
            next = b;
        }
        assert_eq!(next, k, "{p:?}");
        // Tiles of a split: aligned starts, within the split.
        assert!(p.k_tile.is_multiple_of(K_ALIGN) && p.k_tile >= K_ALIGN);
        assert!(p.k_tile.is_multiple_of(p.row_groups));
        // Columns: every one written once.
        let mut seen = vec![0u8; n];
        for bx in 0..p.col_blocks {
            for lane in 0..32 {
                if lane % p.row_groups != 0 {
                    // Lanes of the same column group write other rows of the same columns.
                    assert_eq!(
                        p.lane_cols(bx, lane),
                        p.lane_cols(bx, lane - lane % p.row_groups)
                    );
                    continue;
                }
                let (a, b) = p.lane_cols(bx, lane);
                assert!(b <= n);
                assert!(b == a || b - a == p.vec, "partial vector {a}..{b}: {p:?}");
                for c in seen.iter_mut().take(b).skip(a) {
                    *c += 1;
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{p:?}");
        // Rows: every one of [0, m) by exactly one row group.
        let mut rows = vec![0u8; m];
        for g in 0..p.row_groups {
            for r in p.lane_rows(g) {
                rows[r] += 1;
            }
        }
        assert!(rows.iter().all(|&c| c == 1), "{p:?}");
        // Limits.
        let (gx, gy) = p.grid();
        assert!((1..=MAX_GRID_X).contains(&gx) && (1..=MAX_GRID_Y).contains(&gy));
        assert_eq!(gx, n.div_ceil(p.block_cols));
        assert!(p.shared_bytes <= MAX_SHARED_BYTES);
        let mp = p.rows_per_lane * p.row_groups;
        assert!(p.shared_bytes >= mp * (p.k_tile + 1) * 4);
        assert!(p.shared_bytes >= p.rows_per_lane * p.vec * 128 * 4);
        if p.splits > 1 {
            assert_eq!(
                p.workspace_bytes,
                COUNTER_BYTES + p.splits * m * p.ldb() * 4
            );
            assert!(p.workspace_bytes <= WORKSPACE_BYTES);
            // One counter per column block, all below the partials.
            assert!(p.col_blocks <= MAX_SPLIT_COL_BLOCKS);
            assert!(p.col_blocks * 4 <= COUNTER_BYTES && COUNTER_BYTES.is_multiple_of(16));
            assert!(p.chunk >= MIN_CHUNK);
        } else {
            assert_eq!(p.workspace_bytes, 0);
        }
        // Not more splits than the occupancy target needs.
        let most = SPLIT_TARGETS.iter().max().copied().unwrap_or(BLOCKS_PER_SM);
        assert!(p.splits <= (sms * most).div_ceil(p.col_blocks).max(1));
        assert!(kernel_names().contains(&p.kernel_name()));
    }

    /// The kernel's arithmetic replayed on the host, block by block, warp by warp, lane by
    /// lane, in the kernel's order (f32 storage): the same loads (a read past a buffer panics),
    /// shuffles, tiles, fixed-order warp reduction and split-K fix-up as `SOURCE`. The blocks
    /// run in the order `order` gives (a permutation of the `(bx, by)` blocks, as the GPU may
    /// schedule them): each split block writes its partials and counts its arrival, and the
    /// last one of a column block adds all the splits' partials in split order and resets the
    /// counter. `counters` must be zero on entry and is zero again on return. Indexed loops, as
    /// in the CUDA source it mirrors.
    #[allow(clippy::needless_range_loop)]
    fn simulate(
        p: &SkinnyPlan,
        a: &[f32],
        b: &[f32],
        order: &[(usize, usize)],
        counters: &mut [u32],
    ) -> Vec<f32> {
        let unroll = p.unroll;
        let (m, k, n) = (p.m, p.k, p.n);
        let (mt, g_n, vec, kt) = (p.rows_per_lane, p.row_groups, p.vec, p.k_tile);
        let mp = mt * g_n;
        let stride = kt + 1;
        let ldb = p.ldb();
        // Warps per half: the fused kernel's warps 0-3 take the gate columns, 4-7 the up ones.
        let nw = if p.fused { WARPS / 2 } else { WARPS };
        let silu = |g: f32| g / (1.0 + (-g).exp());
        assert_eq!(b.len(), k * ldb);
        let mut c = vec![f32::NAN; m * n];
        let mut ws = vec![f32::NAN; p.splits * m * ldb];
        assert_eq!(order.len(), p.splits * p.col_blocks);
        for &(bx, by) in order {
            // acc[warp][lane][i][e]
            let mut acc = vec![vec![vec![0.0f32; mt * vec]; 32]; WARPS];
            let k0 = by * p.chunk;
            let k1 = k.min(k0 + p.chunk);
            let mut smem = vec![f32::NAN; p.shared_bytes / 4];
            let mut kb = k0;
            while kb < k1 {
                let rows = kt.min(k1 - kb);
                for i in 0..mp * kt {
                    let (r, kk) = (i / kt, i % kt);
                    smem[r * stride + kk] = if r < m && kk < rows {
                        a[r * k + kb + kk]
                    } else {
                        0.0
                    };
                }
                let groups = rows.div_ceil(g_n);
                for (warp, acc_w) in acc.iter_mut().enumerate() {
                    let (half, lw) = (warp / nw, warp % nw);
                    let mut q0 = lw;
                    while q0 < groups {
                        // wv[lane][u]
                        let mut wv = vec![vec![vec![0.0f32; vec]; unroll]; 32];
                        for (lane, wl) in wv.iter_mut().enumerate() {
                            let (cg, g) = (lane / g_n, lane % g_n);
                            let col = bx * p.block_cols + cg * vec;
                            for (u, wu) in wl.iter_mut().enumerate() {
                                let kk = (q0 + u * nw) * g_n + g;
                                if col < n && kk < rows {
                                    let at = (kb + kk) * ldb + half * n + col;
                                    wu.copy_from_slice(&b[at..at + vec]);
                                }
                            }
                        }
                        for u in 0..unroll {
                            let q = q0 + u * nw;
                            if q >= groups {
                                break;
                            }
                            for (lane, acc_l) in acc_w.iter_mut().enumerate() {
                                let (cg, g) = (lane / g_n, lane % g_n);
                                for j in 0..g_n {
                                    let f = &wv[cg * g_n + j][u];
                                    let kk = q * g_n + j;
                                    for i in 0..mt {
                                        let xv = smem[(g * mt + i) * stride + kk];
                                        for e in 0..vec {
                                            acc_l[i * vec + e] =
                                                xv.mul_add(f[e], acc_l[i * vec + e]);
                                        }
                                    }
                                }
                            }
                        }
                        q0 += nw * unroll;
                    }
                }
                kb += kt;
            }
            // Within each half, warps [s, 2s) into [0, s).
            for half in 0..WARPS / nw {
                let mut s = nw / 2;
                while s >= 1 {
                    for w in 0..s {
                        for lane in 0..32 {
                            for i in 0..mt * vec {
                                let add = acc[half * nw + w + s][lane][i];
                                acc[half * nw + w][lane][i] += add;
                            }
                        }
                    }
                    s /= 2;
                }
            }
            for lane in 0..32 {
                let (cg, g) = (lane / g_n, lane % g_n);
                let col = bx * p.block_cols + cg * vec;
                if col >= n {
                    continue;
                }
                for i in 0..mt {
                    let row = g * mt + i;
                    if row >= m {
                        break;
                    }
                    for e in 0..vec {
                        let v = acc[0][lane][i * vec + e];
                        if p.splits == 1 {
                            c[row * n + col + e] = if p.fused {
                                silu(v) * acc[nw][lane][i * vec + e]
                            } else {
                                v
                            };
                        } else {
                            ws[(by * m + row) * ldb + col + e] = v;
                            if p.fused {
                                ws[(by * m + row) * ldb + n + col + e] = acc[nw][lane][i * vec + e];
                            }
                        }
                    }
                }
            }
            if p.splits == 1 {
                continue;
            }
            // Arrival; the last block of the column adds the splits in order.
            let old = counters[bx];
            counters[bx] += 1;
            if old as usize != p.splits - 1 {
                continue;
            }
            let bc = p.block_cols;
            for idx in 0..m * bc {
                let (row, cc) = (idx / bc, bx * bc + idx % bc);
                if cc >= n {
                    continue;
                }
                let sum = |off: usize| {
                    let mut s = 0.0f32;
                    for sp in 0..p.splits {
                        let v = ws[(sp * m + row) * ldb + off + cc];
                        assert!(
                            !v.is_nan(),
                            "split {sp} of column block {bx} read unwritten"
                        );
                        s += v;
                    }
                    s
                };
                c[row * n + cc] = if p.fused {
                    silu(sum(0)) * sum(n)
                } else {
                    sum(0)
                };
            }
            counters[bx] = 0;
        }
        c
    }

    /// Small integers: every product and sum below is exact in f32, so the simulated kernel
    /// must equal the exact product bit for bit.
    fn ints(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7 + salt * 13) % 9) as f32) - 4.0)
            .collect()
    }

    #[test]
    fn the_kernels_arithmetic_replayed_on_the_host_is_the_exact_product() {
        let mut shapes = vec![];
        for m in [1, 2, 3, 5, 8, 9, 16, 17, 31, 33, 64] {
            for (k, n, sms) in [(1, 8, 132), (37, 24, 132), (300, 40, 2), (1000, 72, 4)] {
                shapes.push((m, k, n, sms));
            }
        }
        // Several tiles per split, several splits, a partial column block.
        for m in [1, 8, 64] {
            shapes.push((m, 2100, 264, 8));
        }
        for (m, k, n, sms) in shapes {
            let p = plan(m, k, n, DType::F32, sms).unwrap();
            if k >= 2000 {
                assert!(p.splits > 1 && p.col_blocks * p.block_cols > n, "{p:?}");
                assert!(m < 64 || p.chunk > p.k_tile, "{p:?}");
            }
            let (a, b) = (ints(m * k, 1), ints(k * n, 2));
            // Blocks in launch order, and in reverse (the split that finishes the column block
            // differs), sharing the counters across calls as the workspace does.
            let mut order: Vec<(usize, usize)> = (0..p.splits)
                .flat_map(|by| (0..p.col_blocks).map(move |bx| (bx, by)))
                .collect();
            let mut counters = vec![0u32; p.col_blocks];
            let c = simulate(&p, &a, &b, &order, &mut counters);
            assert!(
                counters.iter().all(|&x| x == 0),
                "counters not reset: {p:?}"
            );
            order.reverse();
            let again = simulate(&p, &a, &b, &order, &mut counters);
            assert!(
                counters.iter().all(|&x| x == 0),
                "counters not reset: {p:?}"
            );
            assert!(
                c.iter()
                    .zip(&again)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "the block order changed the result: {p:?}"
            );
            // The other candidates: the 8-loads variant adds in the same order, other split
            // factors in another (exact here, with small integers): the same bits.
            for q in candidates(m, k, n, DType::F32, sms).into_iter().skip(1) {
                order = (0..q.splits)
                    .flat_map(|by| (0..q.col_blocks).map(move |bx| (bx, by)))
                    .collect();
                counters = vec![0u32; q.col_blocks];
                let u8 = simulate(&q, &a, &b, &order, &mut counters);
                assert!(
                    c.iter().zip(&u8).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "another candidate changed the exact result: {q:?}"
                );
            }
            for r in 0..m {
                for col in 0..n {
                    let exact: f64 = (0..k)
                        .map(|i| a[r * k + i] as f64 * b[i * n + col] as f64)
                        .sum();
                    assert_eq!(
                        c[r * n + col] as f64,
                        exact,
                        "C[{r}][{col}] of {m}x{k}x{n} (plan {p:?})"
                    );
                }
            }
        }
    }

    /// The fused gate-up kernel replayed on the host: `h = silu(A B_gate) * (A B_up)` with the
    /// gate and up sums exact (small integers), the SiLU in f32 as the kernel computes it; the
    /// same bits whatever the block order and loads in flight, and equal to the unfused
    /// product's gate and up columns put through the same SiLU-mul.
    #[test]
    fn the_fused_gate_up_replayed_on_the_host_is_silu_times_up() {
        let mut shapes = vec![];
        for m in [1, 2, 3, 5, 8, 9, 16, 17, 33, 64] {
            for (k, n, sms) in [(1, 8, 132), (37, 24, 132), (300, 40, 2), (1000, 72, 4)] {
                shapes.push((m, k, n, sms));
            }
        }
        for m in [1, 8, 64] {
            shapes.push((m, 2100, 264, 8));
        }
        let silu = |g: f32| g / (1.0 + (-g).exp());
        for (m, k, n, sms) in shapes {
            let p = plan_silu(m, k, n, DType::F32, sms).unwrap();
            assert!(p.fused && p.ldb() == 2 * n, "{p:?}");
            check_plan(&p, sms);
            if k >= 2000 {
                assert!(p.splits > 1, "{p:?}");
            }
            let (a, b) = (ints(m * k, 3), ints(k * 2 * n, 4));
            let mut order: Vec<(usize, usize)> = (0..p.splits)
                .flat_map(|by| (0..p.col_blocks).map(move |bx| (bx, by)))
                .collect();
            let mut counters = vec![0u32; p.col_blocks];
            let h = simulate(&p, &a, &b, &order, &mut counters);
            assert!(counters.iter().all(|&x| x == 0), "{p:?}");
            for q in candidates_silu(m, k, n, DType::F32, sms) {
                order = (0..q.splits)
                    .rev()
                    .flat_map(|by| (0..q.col_blocks).map(move |bx| (bx, by)))
                    .collect();
                counters = vec![0u32; q.col_blocks];
                let again = simulate(&q, &a, &b, &order, &mut counters);
                assert!(
                    h.iter()
                        .zip(&again)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "block order or loads in flight changed the result: {q:?}"
                );
            }
            // The unfused product of the same operands, then the SiLU-mul in f32.
            let plain = plan(m, k, 2 * n, DType::F32, sms).unwrap();
            let order2: Vec<(usize, usize)> = (0..plain.splits)
                .flat_map(|by| (0..plain.col_blocks).map(move |bx| (bx, by)))
                .collect();
            let mut counters2 = vec![0u32; plain.col_blocks];
            let gu = simulate(&plain, &a, &b, &order2, &mut counters2);
            for r in 0..m {
                for col in 0..n {
                    let want = silu(gu[r * 2 * n + col]) * gu[r * 2 * n + n + col];
                    assert_eq!(
                        h[r * n + col].to_bits(),
                        want.to_bits(),
                        "h[{r}][{col}] of {m}x{k}x{n} (plan {p:?})"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_plans_read_both_halves_and_fall_back_like_plain_ones() {
        for sms in [78, 132] {
            for d in DTYPES {
                for tp in [1, 2, 4, 8] {
                    let s = 14336 / tp;
                    for m in 1..=MAX_M {
                        let p = plan_silu(m, 4096, s, d, sms).unwrap();
                        check_plan(&p, sms);
                        assert_eq!(p.weight_bytes(), 4096 * 2 * s * elem_bytes(d).unwrap());
                        assert!(p.kernel_name().ends_with("_silu"), "{p:?}");
                        assert!(is_candidate(&p, sms));
                        // A fused plan is not a plain one, nor the other way round.
                        let mut plain = p.clone();
                        plain.fused = false;
                        assert!(
                            !is_candidate(&plain, sms)
                                || plain == plan(m, 4096, s, d, sms).unwrap()
                        );
                    }
                }
            }
        }
        // The down projection at tp 1 splits K; the fused gate-up at one token splits too (56
        // column blocks of 256 features cannot fill 132 SMs), with partials for both halves.
        let p = plan_silu(1, 4096, 14336, DType::BF16, 132).unwrap();
        assert_eq!(p.col_blocks, 56);
        assert!(p.splits > 1, "{p:?}");
        assert_eq!(p.workspace_bytes, COUNTER_BYTES + p.splits * 2 * 14336 * 4);
        assert!(plan_silu(1, 4096, 4100, DType::BF16, 132).is_none());
        assert!(plan_silu(65, 4096, 4096, DType::BF16, 132).is_none());
        assert!(plan_silu(1, 4096, 1 << 30, DType::BF16, 132).is_none());
        assert!(candidates_silu(65, 4096, 4096, DType::BF16, 132).is_empty());
        // A hand-made plan with absurd dimensions is refused without overflowing.
        let mut absurd = plan_silu(1, 4096, 4096, DType::BF16, 132).unwrap();
        absurd.k = usize::MAX;
        absurd.n = usize::MAX;
        assert_eq!(absurd.ldb(), usize::MAX);
        assert!(!is_candidate(&absurd, 132));
    }

    #[test]
    fn decode_shapes_plan_for_every_m_and_dtype() {
        for sms in [1, 78, 114, 132, 144] {
            for d in DTYPES {
                for (k, n) in decode_shapes() {
                    for m in 1..=MAX_M {
                        let p = plan(m, k, n, d, sms)
                            .unwrap_or_else(|| panic!("no plan for {m}x{k}x{n} {d} on {sms} SMs"));
                        check_plan(&p, sms);
                    }
                }
            }
        }
    }

    #[test]
    fn small_and_odd_shapes_plan_or_fall_back() {
        for d in DTYPES {
            let vec = 16 / elem_bytes(d).unwrap();
            for m in [1, 2, 3, 7, 8, 9, 16, 31, 32, 33, 63, 64] {
                for k in [1, 5, 31, 32, 33, 100, 129, 1000, 4097] {
                    for n in [vec, 3 * vec, 40, 136, 264, 1000, 1032] {
                        match plan(m, k, n, d, 132) {
                            Some(p) => check_plan(&p, 132),
                            None => assert!(!n.is_multiple_of(vec), "{m}x{k}x{n} {d}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unaligned_or_unsupported_shapes_fall_back() {
        // n not a multiple of 16 bytes of elements.
        assert!(plan(1, 4096, 4095, DType::BF16, 132).is_none());
        assert!(plan(1, 4096, 4100, DType::BF16, 132).is_none());
        assert!(plan(1, 4096, 4102, DType::F32, 132).is_none());
        assert!(plan(4, 64, 4, DType::F16, 132).is_none());
        // m outside 1..=64.
        assert!(plan(0, 4096, 4096, DType::BF16, 132).is_none());
        assert!(plan(65, 4096, 4096, DType::BF16, 132).is_none());
        assert!(plan(4096, 4096, 28672, DType::BF16, 132).is_none());
        // Empty or oversized dimensions.
        assert!(plan(1, 0, 4096, DType::BF16, 132).is_none());
        assert!(plan(1, 4096, 0, DType::BF16, 132).is_none());
        assert!(plan(1, 1 << 31, 8, DType::BF16, 132).is_none());
        assert!(plan(1, 8, (1 << 31) + 8, DType::BF16, 132).is_none());
        // Other storage types.
        assert!(plan(1, 4096, 4096, DType::F64, 132).is_none());
        // A device that reports no SMs still plans (as one).
        check_plan(&plan(1, 4096, 4096, DType::BF16, 0).unwrap(), 1);
    }

    #[test]
    fn down_projection_splits_k_and_gate_up_keeps_few_splits() {
        // Down at tp 1, one token: 16 column blocks of 256 columns cannot fill 132 SMs alone.
        let p = plan(1, 14336, 4096, DType::BF16, 132).unwrap();
        assert_eq!(p.col_blocks, 16);
        assert!(p.splits >= 16, "{p:?}");
        assert!(p.col_blocks * p.splits >= 132 * 2, "{p:?}");
        // The split-K cases of the GPU test split on every device it may run on.
        for sms in [78, 114, 132, 144] {
            for d in DTYPES {
                for (m, k, n) in [(1, 14336, 4096), (8, 7168, 4096), (3, 2100, 264)] {
                    let p = plan(m, k, n, d, sms).unwrap();
                    assert!(p.splits > 1, "{p:?}");
                }
            }
        }
        // Gate-up at m 64: 896 column blocks fill the device without splitting.
        let p = plan(64, 4096, 28672, DType::BF16, 132).unwrap();
        assert_eq!((p.row_groups, p.col_blocks, p.splits), (8, 896, 1));
        // The partials of every decode plan fit the workspace with room to spare.
        for (k, n) in decode_shapes() {
            for m in 1..=MAX_M {
                let p = plan(m, k, n, DType::BF16, 132).unwrap();
                assert!(p.workspace_bytes <= WORKSPACE_BYTES);
            }
        }
    }

    #[test]
    fn workspace_limit_lowers_the_split_factor() {
        // m n 4 bytes = 8 MiB: at most 2 splits fit the 16 MiB of partials.
        let p = plan(64, 1 << 16, 32768, DType::BF16, 10_000).unwrap();
        assert!(p.splits <= 2, "{p:?}");
        check_plan(&p, 10_000);
    }

    #[test]
    fn fallback_reasons_name_the_cause() {
        assert!(why_not(65, 4096, 4096, DType::BF16, 132).contains("outside 1..=64"));
        assert!(why_not(1, 4096, 4100, DType::BF16, 132).contains("multiple of 8"));
        assert!(why_not(1, 4096, 4098, DType::F32, 132).contains("multiple of 4"));
        assert!(why_not(1, 4096, 4096, DType::F64, 132).contains("storage"));
        assert!(why_not(1, 4096, 4096, DType::BF16, 132).contains("aligned"));
        assert!(guard_bound(DType::BF16) > guard_bound(DType::F16));
        assert!(guard_bound(DType::F16) > guard_bound(DType::F32));
        assert!(guard_bound(DType::BF16) < 0.1);
    }

    #[test]
    fn kernel_names_cover_every_variant() {
        let names = kernel_names();
        assert_eq!(names.len(), 2 * 3 * VARIANTS.len());
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for m in 1..=MAX_M {
            let (mt, g) = variant_of(m).unwrap();
            assert!(mt * g >= m);
            for d in DTYPES {
                let c = candidates(m, 14336, 4096, d, 132);
                // Three split factors (the down projection splits K), each with 4 and, for
                // m <= 8, 8 loads in flight.
                assert_eq!(c.len(), if m <= 8 { 6 } else { 3 }, "m {m}");
                assert_eq!(c[0], plan(m, 14336, 4096, d, 132).unwrap());
                if m <= 8 {
                    assert_eq!(
                        c[1],
                        SkinnyPlan {
                            unroll: 8,
                            ..c[0].clone()
                        }
                    );
                }
                let mut splits: Vec<usize> = c.iter().map(|p| p.splits).collect();
                splits.dedup();
                assert_eq!(splits.len(), 3, "{c:?}");
                // A shape that needs no split offers each plan once.
                let wide = candidates(m, 4096, 28672 * 16, d, 132);
                assert_eq!(wide.len(), if m <= 8 { 2 } else { 1 }, "{wide:?}");
                for p in &c {
                    check_plan(p, 132);
                    assert!(is_candidate(p, 132));
                }
                let mut odd = c[0].clone();
                odd.unroll = 8;
                assert_eq!(is_candidate(&odd, 132), m <= 8);
                odd.unroll = 16;
                assert!(!is_candidate(&odd, 132));
                let name = kernel_name(d, mt, g, 4, false).unwrap();
                assert!(SOURCE.contains("skinny_##NAME##_m##MT##_g##G("));
                assert!(SOURCE.contains("skinny_##NAME##_m##MT##_g##G##_silu("));
                assert!(names.contains(&name));
                assert!(names.contains(&kernel_name(d, mt, g, 4, true).unwrap()));
                if g == 1 {
                    assert!(SOURCE.contains("skinny_##NAME##_m##MT##_g##G##_u8("));
                    assert!(SOURCE.contains("skinny_##NAME##_m##MT##_g##G##_u8_silu("));
                    assert!(names.contains(&kernel_name(d, mt, g, 8, false).unwrap()));
                    assert!(names.contains(&kernel_name(d, mt, g, 8, true).unwrap()));
                } else {
                    assert_eq!(kernel_name(d, mt, g, 8, false), None);
                }
            }
        }
        for (mt, g, u) in VARIANTS {
            let mac = if u == 4 { "SK_GEMM" } else { "SK_GEMM_U8" };
            assert!(
                SOURCE.contains(&format!("{mac}(T, NAME, {mt}, {g})")),
                "variant ({mt}, {g}, {u}) missing from SOURCE"
            );
        }
    }
}
