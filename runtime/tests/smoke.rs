use symmem::{Error, ReduceOp};
use symmem_runtime as symmem;

#[test]
fn smoke_all_reduce_and_capture() {
    let out = symmem::host::run(4, |ctx| -> Result<Vec<f32>, Error> {
        let world = ctx.world();
        let mut b = {
            let _w = world.window();
            symmem::alloc::<f32>(1000)?
        };
        assert!(b.is_symmetric());
        b.copy_from_host(&vec![ctx.rank() as f32; 1000])?;
        world.all_reduce(&mut b, ReduceOp::Sum)?;
        let v = b.to_host_vec()?;
        assert!(v.iter().all(|&x| x == 6.0), "{:?}", &v[..4]);
        world.reserve_symmetric(1 << 20)?;
        let mut src = symmem::alloc_from_host(&vec![1.0f32; 256])?;
        let (mut g, out) = symmem::capture(|| {
            let _w = world.window();
            let mut o = symmem::alloc::<f32>(256)?;
            o.copy_from(&src)?;
            world.all_reduce(&mut o, ReduceOp::Sum)?;
            Ok(o)
        })?;
        for _ in 0..10 {
            g.replay()?;
        }
        src.copy_from_host(&vec![2.0f32; 256])?;
        g.replay()?;
        out.to_host_vec()
    })
    .unwrap();
    for r in out {
        assert!(r.unwrap().iter().all(|&x| x == 8.0));
    }
}
