//! Groups: splitting the world into tensor-parallel groups and running collectives inside
//! them, name validation, duplicates, lookup by name, and calls made without a rank context.

mod common;

use std::sync::Arc;

use symmem::backend::host::HostDevice;
use symmem::{Error, RankConfig, RankContext, ReduceOp};
use symmem_runtime as symmem;

#[test]
fn split_into_tensor_parallel_groups() {
    for (ws, tp) in [(8, 2), (8, 4), (4, 2), (3, 1), (6, 3)] {
        symmem::host::run(ws, |ctx| {
            let world = ctx.world();
            let rank = ctx.rank();
            let g = ctx
                .split_group("tp", &world, (rank / tp) as u32, (rank % tp) as u32)
                .unwrap();
            assert_eq!(g.name(), "tp");
            assert_eq!(g.size(), tp);
            assert_eq!(g.rank(), rank % tp);
            let base = rank - rank % tp;

            // All-reduce over the members only, symmetric path.
            let mut x = {
                let _w = g.window();
                symmem::alloc_from_host(&[rank as i64 + 1; 33]).unwrap()
            };
            assert_eq!(x.group_name(), Some("tp"));
            g.all_reduce(&mut x, ReduceOp::Sum).unwrap();
            let want: i64 = (base..base + tp).map(|r| r as i64 + 1).sum();
            assert_eq!(x.to_host_vec().unwrap(), vec![want; 33]);

            // All-gather: member world ranks in group-rank order.
            let src = symmem::alloc_from_host(&[rank as i32]).unwrap();
            let mut all = symmem::alloc::<i32>(tp).unwrap();
            g.all_gather(&src, &mut all).unwrap();
            assert_eq!(
                all.to_host_vec().unwrap(),
                (base..base + tp).map(|r| r as i32).collect::<Vec<_>>()
            );

            // A buffer from the world's symmetric pool takes the plain path in `tp`: still right.
            let mut w = {
                let _w = world.window();
                symmem::alloc_from_host(&[1.5f32; 7]).unwrap()
            };
            g.all_reduce(&mut w, ReduceOp::Sum).unwrap();
            assert_eq!(w.to_host_vec().unwrap(), vec![1.5 * tp as f32; 7]);

            // Groups are independent: the world still reduces over everyone.
            let mut y = symmem::alloc_from_host(&[1.0f32]).unwrap();
            world.all_reduce(&mut y, ReduceOp::Sum).unwrap();
            assert_eq!(y.to_host_vec().unwrap(), vec![ws as f32]);

            // Broadcast from the last member of each group.
            let mut z = {
                let _w = g.window();
                symmem::alloc_from_host(&[rank as f64; 3]).unwrap()
            };
            g.broadcast(&mut z, tp - 1).unwrap();
            assert_eq!(z.to_host_vec().unwrap(), vec![(base + tp - 1) as f64; 3]);
        })
        .unwrap();
    }
}

#[test]
fn key_orders_the_members_and_groups_split_further() {
    symmem::host::run(4, |ctx| {
        let world = ctx.world();
        let rank = ctx.rank();
        // Reverse order by key; colors [0, 1, 0, 1].
        let g = ctx
            .split_group("rev", &world, (rank % 2) as u32, (10 - rank) as u32)
            .unwrap();
        assert_eq!(g.size(), 2);
        // Members of color c are {c, c + 2}; the higher world rank has the lower key.
        assert_eq!(g.rank(), if rank >= 2 { 0 } else { 1 });
        let src = symmem::alloc_from_host(&[rank as u32]).unwrap();
        let mut all = symmem::alloc::<u32>(2).unwrap();
        g.all_gather(&src, &mut all).unwrap();
        let c = (rank % 2) as u32;
        assert_eq!(all.to_host_vec().unwrap(), vec![c + 2, c]);
        // Equal keys fall back to the parent rank.
        let same = ctx.split_group("same_key", &world, 0, 7).unwrap();
        assert_eq!(same.rank(), rank);
        // Uneven colors: sizes 3 and 1.
        let odd = ctx
            .split_group("uneven", &world, u32::from(rank == 3), 0)
            .unwrap();
        assert_eq!(odd.size(), if rank == 3 { 1 } else { 3 });
        // Split a split: singletons.
        let single = ctx.split_group("single", &g, g.rank() as u32, 0).unwrap();
        assert_eq!((single.size(), single.rank()), (1, 0));
        let mut one = {
            let _w = single.window();
            symmem::alloc_from_host(&[rank as f32]).unwrap()
        };
        single.all_reduce(&mut one, ReduceOp::Sum).unwrap();
        assert_eq!(one.to_host_vec().unwrap(), vec![rank as f32]);
        assert_eq!(ctx.groups().len(), 5);
    })
    .unwrap();
}

#[test]
fn group_names_are_validated() {
    for ok in ["tp", "dp_0", "_x", "A9", &"a".repeat(64)] {
        symmem::validate_group_name(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    let bad = [
        ("", "it is empty"),
        ("0tp", "it starts with a digit"),
        ("tp-0", "it contains a character other than ASCII letters"),
        ("tp 0", "it contains a character other than ASCII letters"),
        ("grüppe", "it contains a character other than ASCII letters"),
        (&"a".repeat(65), "it is longer than 64 bytes"),
    ];
    for (name, why) in bad {
        match symmem::validate_group_name(name) {
            Err(e @ Error::InvalidGroupName { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(why), "{name:?}: {msg}");
                assert!(msg.contains(&format!("{name:?}")), "{msg}");
            }
            other => panic!("{name:?}: expected InvalidGroupName, got {other:?}"),
        }
    }
    // `split_group` refuses a bad name before any collective (so no rank waits).
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let e = ctx.split_group("tp-0", &world, 0, 0).unwrap_err();
        assert!(matches!(e, Error::InvalidGroupName { .. }), "{e}");
        assert!(ctx.group("tp-0").is_err());
        assert_eq!(ctx.groups().len(), 1);
    })
    .unwrap();
}

#[test]
fn duplicate_groups_are_refused() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let e = ctx.split_group("world", &world, 0, 0).unwrap_err();
        assert!(
            matches!(e, Error::DuplicateGroup { ref name } if name == "world"),
            "{e}"
        );
        let tp = ctx.split_group("tp", &world, ctx.rank() as u32, 0).unwrap();
        let e = ctx.split_group("tp", &world, 0, 0).unwrap_err();
        assert!(
            e.to_string().contains("a group named `tp` already exists"),
            "{e}"
        );
        let e = ctx.add_group("tp", world.comm().clone()).unwrap_err();
        assert!(matches!(e, Error::DuplicateGroup { .. }), "{e}");
        // The first `tp` is untouched.
        assert_eq!(ctx.group("tp").unwrap().size(), tp.size());
        assert_eq!(ctx.groups().len(), 2);
    })
    .unwrap();
}

#[test]
fn groups_are_found_by_name_on_their_rank_only() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let tp = ctx.split_group("tp", &world, 0, 0).unwrap();
        let by_ctx = ctx.group("tp").unwrap();
        let by_fn = symmem::group("tp").unwrap();
        for g in [&by_ctx, &by_fn] {
            assert_eq!(
                (g.name(), g.size(), g.rank()),
                (tp.name(), tp.size(), tp.rank())
            );
        }
        assert_eq!(symmem::group("world").unwrap().size(), 2);
        // Handles of the same group share its pool.
        let b = {
            let _w = by_fn.window();
            symmem::alloc::<f32>(100).unwrap()
        };
        assert_eq!(tp.stats().allocated_blocks, 1);
        drop(b);
        match symmem::group("nope") {
            Err(Error::GroupNotFound { name, known }) => {
                assert_eq!(name, "nope");
                assert_eq!(known, "world, tp");
            }
            other => panic!("expected GroupNotFound, got {other:?}"),
        }
        assert!(matches!(
            ctx.group("nope"),
            Err(Error::GroupNotFound { .. })
        ));
        // A thread spawned by a rank is not a rank.
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(symmem::group("tp"), Err(Error::NoRankContext))));
        });
        assert_eq!(
            format!("{tp:?}"),
            format!("Group {{ name: \"tp\", rank: {}, size: 2 }}", ctx.rank())
        );
    })
    .unwrap();
}

#[test]
fn calls_without_a_rank_context() {
    let no_rank = |r: Result<(), Error>, what: &str| match r {
        Err(e @ Error::NoRankContext) => assert!(
            e.to_string().contains("no rank context on this thread"),
            "{what}: {e}"
        ),
        other => panic!("{what}: expected NoRankContext, got {other:?}"),
    };
    no_rank(symmem::alloc::<f32>(4).map(drop), "alloc");
    no_rank(symmem::alloc_zeroed::<f32>(4).map(drop), "alloc_zeroed");
    no_rank(
        symmem::alloc_from_host(&[1.0f32]).map(drop),
        "alloc_from_host",
    );
    no_rank(symmem::group("world").map(drop), "group");
    no_rank(symmem::window("world").map(drop), "window");
    no_rank(symmem::synchronize(), "synchronize");
    no_rank(symmem::current_stream().map(drop), "current_stream");
    no_rank(symmem::capture(|| Ok(())).map(drop), "capture");
    assert!(!symmem::is_capturing());
    assert_eq!(symmem::routed_group(), None);
    // Opt-out works anywhere (it only touches routing).
    let o = symmem::opt_out();
    assert_eq!(symmem::window_depth(), 1);
    drop(o);
    assert_eq!(symmem::window_depth(), 0);
}

#[test]
fn one_rank_context_per_thread() {
    symmem::host::run(1, |ctx| {
        let dev = Arc::new(HostDevice::new(0));
        let e = RankContext::install(dev, ctx.world().comm().clone(), RankConfig::default())
            .unwrap_err();
        assert!(
            matches!(e, Error::RankContextAlreadyInstalled { rank: 0 }),
            "{e}"
        );
        assert_eq!(ctx.rank(), 0);
        assert_eq!(ctx.world_size(), 1);
        assert_eq!(ctx.backend_kind(), symmem::BackendKind::Host);
    })
    .unwrap();
    // After the launch the test thread has no rank, and a zero-rank launch is refused.
    assert!(matches!(symmem::group("world"), Err(Error::NoRankContext)));
    let e = symmem::host::run(0, |_| ()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "host::run",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rank_context_installed_by_hand() {
    // A one-rank world built from the host backend's parts, on a thread of our own: the
    // communicator is borrowed from a running host launch's world (a size-1 communicator).
    symmem::host::run(1, |outer| {
        let comm = outer.world().comm().clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ctx =
                    RankContext::install(Arc::new(HostDevice::new(0)), comm, RankConfig::default())
                        .unwrap();
                let b = symmem::alloc_from_host(&[3u64; 3]).unwrap();
                assert_eq!(b.to_host_vec().unwrap(), vec![3; 3]);
                drop(b);
                drop(ctx);
                assert!(matches!(symmem::alloc::<u8>(1), Err(Error::NoRankContext)));
            });
        });
    })
    .unwrap();
}

#[test]
fn handles_that_may_cross_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    // Buffers and graphs may be handed to another thread (collectives then refuse a buffer of
    // another rank, and replay refuses a graph of another rank); groups are shared handles.
    send::<symmem::Buffer<f32>>();
    send::<symmem::Graph>();
    send::<symmem::Group>();
    sync::<symmem::Group>();
    send::<symmem::Error>();
    sync::<symmem::Error>();
}

/// The host backend's symmetric path serves every collective; NCCL's table is narrower.
#[test]
fn which_collectives_take_the_symmetric_path() {
    use symmem::{symmetric_kernel_exists, Collective, DType};
    let out = symmem::host::run(2, |ctx| {
        let w = ctx.world();
        [
            w.symmetric_kernels(Collective::AllReduce, ReduceOp::Max, DType::I32),
            w.symmetric_kernels(Collective::Broadcast, ReduceOp::Sum, DType::F64),
        ]
    })
    .unwrap();
    assert_eq!(out, vec![[true, true]; 2]);
    assert!(symmetric_kernel_exists(
        Collective::AllReduce,
        ReduceOp::Sum,
        DType::F32
    ));
    assert!(!symmetric_kernel_exists(
        Collective::AllReduce,
        ReduceOp::Avg,
        DType::F32
    ));
}

/// `cuda::adopt_nccl_comm` checks what it can before any NCCL call: on a host rank, with a NULL
/// handle or a taken name it fails, and nothing is dereferenced.
#[cfg(feature = "cuda")]
#[test]
fn adopting_a_communicator_checks_before_touching_it() {
    use symmem::cuda::{adopt_nccl_comm, nccl_sys, CommOwnership};
    symmem::host::run(1, |ctx| {
        let fake = std::ptr::NonNull::<nccl_sys::ncclComm>::dangling().as_ptr();
        // SAFETY (of the test): each call below is rejected before the handle is used (host
        // rank, NULL handle, duplicate or bad name), which is what is tested.
        let e = unsafe { adopt_nccl_comm(ctx, "tp", fake, CommOwnership::Owned) }.unwrap_err();
        assert!(matches!(e, Error::WrongDevice { .. }), "{e}");
        assert!(e.to_string().contains("not a CUDA rank"), "{e}");
        // SAFETY: a NULL handle is refused before any use.
        let e = unsafe { adopt_nccl_comm(ctx, "tp", std::ptr::null_mut(), CommOwnership::Owned) }
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        // SAFETY: refused for the taken name before the handle is used.
        let e =
            unsafe { adopt_nccl_comm(ctx, "world", fake, CommOwnership::Borrowed) }.unwrap_err();
        assert!(matches!(e, Error::DuplicateGroup { .. }), "{e}");
        // SAFETY: refused for the invalid name before the handle is used.
        let e = unsafe { adopt_nccl_comm(ctx, "", fake, CommOwnership::Borrowed) }.unwrap_err();
        assert!(matches!(e, Error::InvalidGroupName { .. }), "{e}");
        // During capture it is refused like `add_group`.
        let r = symmem::capture(|| {
            // SAFETY: refused during capture before the handle is used.
            let e = unsafe { adopt_nccl_comm(ctx, "tp", fake, CommOwnership::Owned) }.unwrap_err();
            assert!(matches!(e, Error::NotAllowedDuringCapture { .. }), "{e}");
            Ok(())
        });
        assert!(r.is_ok());
        assert!(ctx.group("tp").is_err());
    })
    .unwrap();
}
