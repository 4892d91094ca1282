//! Every public path of `symmem` (and so of `symmem-runtime`, which it re-exports), named once,
//! with the signatures of its functions and methods pinned by coercion to function-pointer types.
//!
//! This test only has to compile: moving a public item, renaming it or changing a signature
//! breaks the build here. The restructuring of the runtime (issue 11) keeps this file unchanged;
//! `rules/tests/drift.rs` also reads it to check that every `symmem::` path a capture rule
//! matches exists.
#![allow(clippy::type_complexity, unused_imports)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

// The root: re-exports of the runtime and the two attributes.
use symmem::{
    alloc, alloc_from_host, alloc_zeroed, allow_capture_unfit, bf16, capture, current_stream,
    detect, f16, group, is_capturing, opt_out, reset_routing, routed_group, run, symmetric_memory,
    synchronize, validate_group_name, window, window_depth, BackendChoice, BackendKind,
    BackendReport, Buffer, DType, Element, Error, Graph, Group, OptOutGuard, PoolStats, RankConfig,
    RankContext, ReduceOp, Result, Stream, SymmetricInfo, WindowGuard,
};
// Public modules and what they hold.
use symmem::backend::{
    BackendKind as _, CommBackend, DeviceBackend, DirectAllReduce, GraphBackend, HostOp, Operand,
    StreamBackend, SymRef, SymSegment,
};
use symmem::capture::{
    capture as _, capture_with_error as _, is_capturing as _, Graph as _, GraphArena,
};
use symmem::host::{
    live_segment_bytes, run as host_run, run_with, HostComm, HostConfig, HostDevice, HostGraph,
    HostStream,
};
use symmem::launch::{detect as _, run as _, BackendChoice as _, BackendReport as _};
use symmem::pool::{Pool, PoolStats as _};
use symmem::window::{
    opt_out as _, reset_routing as _, routed_group as _, window_depth as _, OptOutGuard as _,
    WindowGuard as _,
};

#[cfg(feature = "cuda")]
use symmem::cuda::probe::{
    cuda_has_symbol, gpu_count as probe_gpu_count, nccl_has_symbol,
    nccl_version as probe_nccl_version, probe_cublas, probe_cublas_lt, probe_cuda, probe_library,
    probe_nccl, probe_nvrtc, require_gpus, LibInfo, LibSpec, ProbeError, NCCL_PIP_HINT,
};
#[cfg(feature = "cuda")]
use symmem::cuda::version::{
    require_symmetric, symmetric_policy, VersionError, FULL_SYMMETRIC, KNOWN_ISSUES_FROM,
    MIN_SYMMETRIC,
};
#[cfg(feature = "cuda")]
use symmem::cuda::{
    adopt_nccl_comm,
    bootstrap::{
        all_gather_bytes, exchange_unique_id, BootstrapError, EnvSource, LaunchEnv, PortOrigin,
        DEFAULT_PORT, MAX_PAYLOAD, MAX_WORLD_SIZE, UNIQUE_ID_BYTES,
    },
    buffer_from_cuda_slice, cuda_context, cuda_stream, cudarc, gpu_count, init_from_env, init_rank,
    init_rank_on_stream, nccl_comm, nccl_sys, nccl_version, probe, run_threads, version, view,
    view_mut, BufferCudaExt, BufferView, BufferViewMut, CommOwnership, CudaDevice, CudaGraph,
    CudaRankStream, NcclComm, NcclVersion, SymmetricPolicy, UniqueId, NCCL_WIN_COLL_SYMMETRIC,
};

/// Names a value of type `T` without running anything.
fn pin<T>(_: T) {}

#[allow(dead_code)]
fn signatures() {
    // Free functions of the root.
    let _: fn(usize) -> Result<Buffer<f32>> = alloc::<f32>;
    let _: fn(usize) -> Result<Buffer<f32>> = alloc_zeroed::<f32>;
    let _: fn(&[f32]) -> Result<Buffer<f32>> = alloc_from_host::<f32>;
    let _: fn() -> bool = is_capturing;
    let _: fn() -> OptOutGuard = opt_out;
    let _: fn() -> usize = window_depth;
    let _: fn() = reset_routing;
    let _: fn() -> Option<String> = routed_group;
    let _: fn(&str) -> Result<()> = validate_group_name;
    let _: fn(&str) -> Result<Group> = group;
    let _: fn(&str) -> Result<WindowGuard<'static>> = window;
    let _: fn() -> Result<Stream> = current_stream;
    let _: fn() -> Result<()> = synchronize;
    let _: fn() -> BackendReport = detect;
    let _: Result<(Graph, u8)> = capture::<u8>(|| Ok(0));
    struct Theirs;
    impl From<symmem::Error> for Theirs {
        fn from(_: symmem::Error) -> Theirs {
            Theirs
        }
    }
    let _: std::result::Result<(Graph, u8), Theirs> =
        symmem::capture_with_error(|| Ok::<u8, Theirs>(0));
    pin(run::<u8, fn(&RankContext) -> u8>);
    let _: fn(BackendChoice, usize, RankConfig, fn(&RankContext) -> u8) -> Result<Vec<u8>> =
        run::<u8, fn(&RankContext) -> u8>;

    // Group.
    let _: fn(&Group) -> &str = Group::name;
    let _: fn(&Group) -> usize = Group::rank;
    let _: fn(&Group) -> usize = Group::size;
    let _: fn(&Group) -> bool = Group::symmetric_supported;
    let _: for<'a> fn(&'a Group) -> WindowGuard<'a> = Group::window;
    let _: fn(&Group, fn() -> u8) -> u8 = |g, f| g.with_window::<u8>(f);
    let _: fn(&Group, usize) -> Result<()> = Group::reserve_symmetric;
    let _: fn(&Group) -> Result<usize> = Group::empty_cache;
    let _: fn(&Group) -> PoolStats = Group::stats;
    let _: fn(&Group) -> &Arc<dyn CommBackend> = Group::comm;
    let _: fn(&Group, symmem::Collective, ReduceOp, DType) -> bool = Group::symmetric_kernels;
    let _: fn(symmem::Collective, ReduceOp, DType) -> bool = symmem::symmetric_kernel_exists;
    let _: fn(symmem::Collective, ReduceOp, DType) -> bool =
        symmem::kernels::symmetric_kernel_exists;
    let _: fn(&Group, &mut Buffer<f32>, ReduceOp) -> Result<()> = Group::all_reduce::<f32>;
    let _: fn(&Group, &Buffer<f32>, &mut Buffer<f32>, ReduceOp) -> Result<()> =
        Group::all_reduce_into::<f32>;
    let _: fn(&Group, &mut Buffer<f32>, std::ops::Range<usize>, ReduceOp) -> Result<()> =
        Group::all_reduce_range::<f32>;
    let _: fn(&Group, &Buffer<f32>, &mut Buffer<f32>) -> Result<()> = Group::all_gather::<f32>;
    let _: fn(&Group, &Buffer<f32>, &mut Buffer<f32>, ReduceOp) -> Result<()> =
        Group::reduce_scatter::<f32>;
    let _: fn(&Group, &mut Buffer<f32>, usize) -> Result<()> = Group::broadcast::<f32>;
    let _: fn(&Group) -> Result<()> = Group::barrier;

    // Stream.
    let _: fn(&Stream) -> Result<()> = Stream::synchronize;
    let _: fn(&Stream, fn() -> Result<()>) -> Result<()> = |s, f| s.launch_host(f);
    let _: fn(&Stream) -> &Arc<dyn StreamBackend> = Stream::backend;

    // RankContext.
    let _: fn(Arc<dyn DeviceBackend>, Arc<dyn CommBackend>, RankConfig) -> Result<RankContext> =
        RankContext::install;
    let _: fn(&RankContext) -> usize = RankContext::rank;
    let _: fn(&RankContext) -> usize = RankContext::world_size;
    let _: fn(&RankContext) -> Group = RankContext::world;
    let _: fn(&RankContext, &str) -> Result<Group> = RankContext::group;
    let _: fn(&RankContext) -> Vec<Group> = RankContext::groups;
    let _: fn(&RankContext, &str, Arc<dyn CommBackend>) -> Result<Group> = RankContext::add_group;
    let _: fn(&RankContext, &str, &Group, u32, u32) -> Result<Group> = RankContext::split_group;
    let _: fn(&RankContext) -> Stream = RankContext::stream;
    let _: fn(&RankContext) -> &Arc<dyn DeviceBackend> = RankContext::device;
    let _: fn(&RankContext) -> BackendKind = RankContext::backend_kind;
    let _: fn(&RankContext) -> &RankConfig = RankContext::config;
    let _: fn(&RankContext) -> PoolStats = RankContext::default_pool_stats;
    let _: fn(&RankContext) -> Result<usize> = RankContext::empty_cache;
    pin(RankConfig::default);
    let _: fn() -> RankConfig = RankConfig::new;
    let _: fn(RankConfig, bool) -> RankConfig = RankConfig::with_validate;
    let _: fn(RankConfig, Duration) -> RankConfig = RankConfig::with_timeout;
    let _: fn(RankConfig, Option<usize>) -> RankConfig = RankConfig::with_symmetric_pool_limit;
    let _: fn(RankConfig, Option<usize>) -> RankConfig = RankConfig::with_default_pool_limit;

    // Buffer.
    let _: fn(&Buffer<f32>) -> usize = Buffer::<f32>::len;
    let _: fn(&Buffer<f32>) -> bool = Buffer::<f32>::is_empty;
    let _: fn(&Buffer<f32>) -> usize = Buffer::<f32>::size_bytes;
    let _: fn(&Buffer<f32>) -> u64 = Buffer::<f32>::device_ptr;
    let _: fn(&Buffer<f32>) -> bool = Buffer::<f32>::is_symmetric;
    let _: fn(&Buffer<f32>) -> Option<SymmetricInfo> = Buffer::<f32>::symmetric;
    let _: fn(&Buffer<f32>) -> Option<&str> = Buffer::<f32>::group_name;
    let _: fn(&Buffer<f32>) -> &str = Buffer::<f32>::pool_label;
    let _: fn(&Buffer<f32>) -> bool = Buffer::<f32>::is_graph_owned;
    let _: fn(&mut Buffer<f32>, &[f32]) -> Result<()> = Buffer::<f32>::copy_from_host;
    let _: fn(&Buffer<f32>, &mut [f32]) -> Result<()> = Buffer::<f32>::copy_to_host;
    let _: fn(&Buffer<f32>) -> Result<Vec<f32>> = Buffer::<f32>::to_host_vec;
    let _: fn(&mut Buffer<f32>) -> Result<()> = Buffer::<f32>::fill_zero;
    let _: fn(&mut Buffer<f32>, &Buffer<f32>) -> Result<()> = Buffer::<f32>::copy_from;

    // Graph capture.
    let _: fn(&mut Graph) -> Result<()> = Graph::replay;
    let _: fn(&Graph) -> u64 = Graph::replays;
    let _: fn(&Graph) -> Vec<(String, usize)> = Graph::memory;
    let _: fn(&GraphArena) -> usize = GraphArena::claimed_bytes;

    // Routing windows.
    let _: fn() -> WindowGuard<'static> = WindowGuard::inert;
    let _: fn(&WindowGuard<'static>) -> bool = WindowGuard::is_active;
    let _: fn(&OptOutGuard) -> bool = OptOutGuard::is_active;

    // Pools.
    let _: fn(&Pool) -> &str = Pool::label;
    let _: fn(&Pool) -> bool = Pool::is_symmetric;
    let _: fn(&Pool) -> PoolStats = Pool::stats;
    let _: fn(&Pool, usize) -> usize = Pool::round_request;

    // Launch.
    let _: fn() -> Result<BackendChoice> = BackendChoice::from_env;
    let _: fn(&BackendReport, usize) -> bool = BackendReport::cuda_can_run;
    let _: fn(&BackendReport, usize) -> Option<String> = BackendReport::why_not_cuda;
    let _: fn(&BackendReport, BackendChoice, usize) -> Result<BackendKind> = BackendReport::choose;

    // Types and the element trait.
    let _: fn(DType) -> usize = DType::size;
    let _: fn(DType) -> bool = DType::is_float;
    fn element<T: Element>() {}
    element::<f32>();
    element::<f16>();
    element::<bf16>();
    let _: Option<ReduceOp> = None;
    let _: Option<Error> = None;

    // Backend seam.
    let _: fn(u64, usize) -> Option<SymRef> = SymRef::new;
    let _: fn(SymRef) -> u64 = SymRef::window;
    let _: fn(SymRef) -> usize = SymRef::offset;
    let _: Option<(Operand, SymSegment, DirectAllReduce, HostOp)> = None;
    fn traits<D: DeviceBackend, S: StreamBackend, G: GraphBackend, C: CommBackend>() {}
    traits::<HostDevice, HostStream, HostGraph, HostComm>();

    // Host backend.
    let _: fn(usize) -> HostDevice = HostDevice::new;
    let _: fn(&HostStream, HostOp) -> Result<()> = HostStream::enqueue;
    let _: fn(&HostStream) -> bool = HostStream::is_capturing;
    let _: fn(usize) -> HostConfig = HostConfig::new;
    let _: fn(HostConfig, RankConfig) -> HostConfig = HostConfig::with_rank;
    let _: fn() -> usize = live_segment_bytes;
    let _: fn(usize, fn(&RankContext) -> u8) -> Result<Vec<u8>> =
        host_run::<u8, fn(&RankContext) -> u8>;
    let _: fn(HostConfig, fn(&RankContext) -> u8) -> Result<Vec<u8>> =
        run_with::<u8, fn(&RankContext) -> u8>;

    // What the expansion of `#[symmetric_memory]` calls.
    let _: fn(&'static str) -> WindowGuard<'static> = symmem::__private::enter;
    let _: fn(bool, &'static str) -> WindowGuard<'static> = symmem::__private::enter_unless;
    pin(symmem::__private::enter_no_capture);
    pin(symmem::__private::routed::<std::future::Ready<()>>);
    let _: Option<symmem::__private::Routed<std::future::Ready<()>>> = None;
    let _: Option<symmem::__private::WindowGuard<'static>> = None;
}

#[cfg(feature = "cuda")]
#[allow(dead_code)]
fn cuda_signatures() {
    let _: fn() -> Result<usize> = gpu_count;
    let _: fn() -> Result<NcclVersion> = nccl_version;
    let _: fn(&RankContext) -> Option<Arc<cudarc::driver::CudaStream>> = cuda_stream;
    let _: fn(&RankContext) -> Option<Arc<cudarc::driver::CudaContext>> = cuda_context;
    let _: fn(&Group) -> Option<&NcclComm> = nccl_comm;
    let _: fn(usize, RankConfig, fn(&RankContext) -> u8) -> Result<Vec<u8>> =
        run_threads::<u8, fn(&RankContext) -> u8>;
    let _: fn(usize, usize, usize, &UniqueId, RankConfig) -> Result<RankContext> = init_rank;
    let _: fn(RankConfig) -> Result<RankContext> = init_from_env;
    let _: fn() -> Result<UniqueId> = UniqueId::new;
    let _: [u8; 128] = UniqueId([0; 128]).0;
    let _: fn(&NcclComm) -> symmem::cuda::nccl_sys::ncclComm_t = NcclComm::raw_comm;
    let _: unsafe fn(&RankContext, &str, nccl_sys::ncclComm_t, CommOwnership) -> Result<Group> =
        adopt_nccl_comm;
    let _: fn(
        std::sync::Arc<cudarc::driver::CudaStream>,
        usize,
        usize,
        &symmem::cuda::UniqueId,
        RankConfig,
    ) -> Result<RankContext> = init_rank_on_stream;
    let _ = [CommOwnership::Owned, CommOwnership::Borrowed];
    let _: fn(&RankContext, cudarc::driver::CudaSlice<f32>) -> Result<Buffer<f32>> =
        buffer_from_cuda_slice::<f32>;
    let _: fn(&NcclComm) -> usize = NcclComm::granularity;
    let _: i32 = NCCL_WIN_COLL_SYMMETRIC;
    let _: fn(usize) -> Result<CudaDevice> = CudaDevice::open;
    let _: fn(&CudaDevice) -> &Arc<cudarc::driver::CudaContext> = CudaDevice::context;
    let _: fn(&CudaDevice) -> &Arc<CudaRankStream> = CudaDevice::rank_stream;
    let _: fn(&CudaRankStream) -> cudarc::driver::sys::CUstream = CudaRankStream::cu_stream;
    let _: fn(&CudaRankStream) -> &Arc<cudarc::driver::CudaStream> = CudaRankStream::cudarc_stream;
    let _: fn(&CudaRankStream) -> &Arc<cudarc::driver::CudaContext> = CudaRankStream::context;
    let _: fn(&CudaRankStream) -> bool = CudaRankStream::is_capturing;
    pin(view::<f32>);
    pin(view_mut::<f32>);
    fn ext<B: BufferCudaExt<f32>>() {}
    ext::<Buffer<f32>>();
    let _: Option<(
        BufferView<'static, f32>,
        BufferViewMut<'static, f32>,
        CudaGraph,
    )> = None;

    // Bootstrap.
    let _: fn() -> std::result::Result<LaunchEnv, BootstrapError> = LaunchEnv::from_env;
    let _: fn(fn(&str) -> Option<String>) -> std::result::Result<LaunchEnv, BootstrapError> =
        |f| LaunchEnv::from_lookup(f);
    let _: fn(usize, usize, &str, u16) -> std::result::Result<LaunchEnv, BootstrapError> =
        LaunchEnv::new;
    let _: fn(&LaunchEnv) -> String = LaunchEnv::endpoint;
    let _: fn(&LaunchEnv) -> &str = LaunchEnv::job_id;
    let _: fn(LaunchEnv, &str) -> LaunchEnv = LaunchEnv::with_job_id;
    let _: fn(
        &LaunchEnv,
        fn() -> [u8; UNIQUE_ID_BYTES],
        Duration,
    ) -> std::result::Result<[u8; UNIQUE_ID_BYTES], BootstrapError> =
        |e, f, t| exchange_unique_id(e, f, t);
    let _: fn(
        &LaunchEnv,
        &str,
        &[u8],
        Duration,
    ) -> std::result::Result<Vec<Vec<u8>>, BootstrapError> = all_gather_bytes;
    let _: fn(EnvSource) -> (&'static str, &'static str, &'static str) = EnvSource::variables;
    let _: (u16, usize, usize, usize) =
        (DEFAULT_PORT, MAX_WORLD_SIZE, MAX_PAYLOAD, UNIQUE_ID_BYTES);
    let _: Option<PortOrigin> = None;

    // Probes.
    let _: fn(&LibSpec) -> std::result::Result<LibInfo, ProbeError> = probe_library;
    let _: fn() -> std::result::Result<LibInfo, ProbeError> = probe_cuda;
    let _: fn() -> std::result::Result<LibInfo, ProbeError> = probe_nccl;
    let _: fn() -> std::result::Result<LibInfo, ProbeError> = probe_nvrtc;
    let _: fn() -> std::result::Result<LibInfo, ProbeError> = probe_cublas;
    let _: fn() -> std::result::Result<LibInfo, ProbeError> = probe_cublas_lt;
    let _: fn(&str) -> bool = nccl_has_symbol;
    let _: fn(&str) -> bool = cuda_has_symbol;
    let _: fn() -> std::result::Result<NcclVersion, ProbeError> = probe_nccl_version;
    let _: fn() -> std::result::Result<usize, ProbeError> = probe_gpu_count;
    let _: fn(usize) -> std::result::Result<usize, ProbeError> = require_gpus;
    let _: fn() -> LibSpec = LibSpec::cuda;
    let _: fn() -> LibSpec = LibSpec::nccl;
    let _: fn() -> LibSpec = LibSpec::nvrtc;
    let _: fn() -> LibSpec = LibSpec::cublas;
    let _: fn() -> LibSpec = LibSpec::cublas_lt;
    let _: &str = NCCL_PIP_HINT;

    // Versions.
    let _: fn(u32, u32, u32) -> NcclVersion = NcclVersion::new;
    let _: fn(i32) -> std::result::Result<NcclVersion, VersionError> = NcclVersion::from_code;
    let _: fn(NcclVersion) -> u64 = NcclVersion::code;
    let _: (NcclVersion, NcclVersion, NcclVersion) =
        (MIN_SYMMETRIC, KNOWN_ISSUES_FROM, FULL_SYMMETRIC);
    let _: fn(SymmetricPolicy) -> bool = SymmetricPolicy::allows_symmetric;
    let _: fn(SymmetricPolicy) -> bool = SymmetricPolicy::warns;
    let _: fn(SymmetricPolicy) -> bool = SymmetricPolicy::register_during_capture;
    let _: fn(&SymmetricPolicy) -> &'static str = SymmetricPolicy::notes;
    let _: fn(SymmetricPolicy, NcclVersion) -> Option<String> = SymmetricPolicy::warning_once;
    let _: fn(SymmetricPolicy, NcclVersion) -> String = SymmetricPolicy::log_line;
    let _: &[symmem::cuda::version::KnownIssue] = symmem::cuda::version::KNOWN_ISSUES;
    let _: &str = symmem::cuda::version::RECOMMENDED;
    let _ = symmem::cuda::version::known_issues(NcclVersion::new(2, 28, 3)).count();
    let _: fn(NcclVersion) -> SymmetricPolicy = symmetric_policy;
    let _: fn(NcclVersion, bool) -> std::result::Result<SymmetricPolicy, VersionError> =
        require_symmetric;
}

/// The attribute and the hatch are usable where the facade says.
#[symmetric_memory(group = "tp")]
fn annotated() -> Result<()> {
    Ok(())
}

#[test]
fn public_paths_compile() {
    // Nothing to run: this file compiling is the test. Keep one real call so the attribute's
    // expansion is type-checked against the runtime it names.
    let _ = annotated as fn() -> Result<()>;
}
