//! Window offsets depend on which blocks are live, not on the order ranks freed them in.

use symmem::Buffer;
use symmem_runtime as symmem;

/// (window, offset) of every buffer.
fn positions<'a>(bufs: impl IntoIterator<Item = &'a Buffer<u8>>) -> Vec<(u64, usize)> {
    bufs.into_iter()
        .map(|b| {
            let s = b.symmetric().expect("a window buffer is symmetric");
            (s.window, s.offset)
        })
        .collect()
}

/// Drop the buffers at `idx` of `bufs` in the order of `idx`.
fn free_in_order(bufs: &mut [Option<Buffer<u8>>], idx: &[usize]) {
    for &i in idx {
        bufs[i] = None;
    }
}

#[test]
fn frees_in_different_orders_give_the_same_offsets_next() {
    // Sizes repeat (the quick cache serves them), two share nothing, and one size has more
    // buffers than a cache slot holds.
    let sizes: Vec<usize> = (0..40)
        .map(|i| [8192, 8192, 4096, 65536, 1000][i % 5])
        .collect();
    let per_rank = symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let _w = world.window();
        let mut bufs: Vec<Option<Buffer<u8>>> = sizes
            .iter()
            .map(|&n| Some(symmem::alloc::<u8>(n).unwrap()))
            .collect();
        let mut seen = vec![positions(bufs.iter().flatten())];
        for round in 0..4 {
            // The same set of buffers is freed on both ranks, in opposite orders.
            let mut freed: Vec<usize> = (0..sizes.len()).filter(|i| (i + round) % 3 != 0).collect();
            if ctx.rank() == 1 {
                freed.reverse();
            }
            free_in_order(&mut bufs, &freed);
            freed.sort_unstable();
            for &i in &freed {
                bufs[i] = Some(symmem::alloc::<u8>(sizes[i]).unwrap());
            }
            seen.push(positions(bufs.iter().flatten()));
        }
        seen
    })
    .unwrap();
    assert_eq!(per_rank[0], per_rank[1]);
}
