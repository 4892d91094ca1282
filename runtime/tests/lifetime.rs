//! Pool lifetime: a pool lives while its owner (group or rank context), a buffer from it or a
//! graph that uses it lives, and its memory is returned when the last of them goes.
//!
//! Buffers hold no reference count of their own (the pool keeps a reference to itself while
//! blocks are out), so this is checked through the host backend's segment counter. This file
//! is its own test binary with a single test, so no other test moves the process-wide counter
//! meanwhile.

use symmem::{capture, ReduceOp};
use symmem_runtime as symmem;

#[test]
fn pools_outlive_their_owner_while_buffers_or_graphs_need_them_and_no_longer() {
    let base = symmem::host::live_segment_bytes();

    // 1. Buffers returned out of the launch outlive the group, the rank context and the rank
    //    thread; they stay readable, and their pools are freed with the last of them.
    let mut out = symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let tp = ctx.split_group("tp", &world, 0, 0).unwrap();
        let mut sym = {
            let _w = tp.window();
            symmem::alloc_from_host(&[ctx.rank() as f32 + 1.0; 300]).unwrap()
        };
        tp.all_reduce(&mut sym, ReduceOp::Sum).unwrap();
        let plain = symmem::alloc_from_host(&[7u32; 10]).unwrap();
        (sym, plain)
    })
    .unwrap();
    assert!(
        symmem::host::live_segment_bytes() > base,
        "the buffers' pools must still hold their segments"
    );
    let (sym, plain) = out.pop().unwrap();
    assert_eq!(sym.symmetric().unwrap().group.as_ref(), "tp");
    assert!(sym.to_host_vec().unwrap().iter().all(|&x| x == 3.0));
    assert_eq!(plain.to_host_vec().unwrap(), vec![7u32; 10]);
    drop(out);
    drop(sym);
    assert!(
        symmem::host::live_segment_bytes() > base,
        "`plain` still holds its pool"
    );
    drop(plain);
    assert_eq!(
        symmem::host::live_segment_bytes(),
        base,
        "every segment is returned once the last buffer is gone"
    );

    // 2. A graph keeps the pools its recorded work uses, after the group, the rank context and
    //    every buffer are gone; dropping it returns the memory.
    let graphs = symmem::host::run(1, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let mut eager = {
            let _w = world.window();
            symmem::alloc_zeroed::<f32>(64).unwrap()
        };
        let (graph, ()) = capture(|| {
            let _w = world.window();
            let mut tmp = symmem::alloc::<f32>(64)?;
            tmp.copy_from(&eager)?;
            world.all_reduce(&mut tmp, ReduceOp::Sum)?;
            eager.fill_zero()
        })
        .unwrap();
        graph
    })
    .unwrap();
    assert!(symmem::host::live_segment_bytes() > base);
    for mut g in graphs {
        // Its launch has ended: replaying from a thread that is no rank fails at once (the
        // recorded collectives would wait for peers that are gone).
        assert!(matches!(g.replay(), Err(symmem::Error::NoRankContext)));
    }
    assert_eq!(
        symmem::host::live_segment_bytes(),
        base,
        "the graph's pools are freed with the graph"
    );

    // 3. The ordinary case: everything dropped inside the launch.
    symmem::host::run(3, |ctx| {
        let world = ctx.world();
        let _w = world.window();
        let mut b = symmem::alloc_zeroed::<f64>(1000).unwrap();
        world.all_reduce(&mut b, ReduceOp::Max).unwrap();
    })
    .unwrap();
    assert_eq!(symmem::host::live_segment_bytes(), base);
}
