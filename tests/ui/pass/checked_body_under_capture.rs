//! A checked body runs under `symmem::capture` (with the memory reserved before capture).
use symmem::{symmetric_memory, Buffer, Error, ReduceOp};

#[symmetric_memory(group = "world")]
fn step(x: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
    let mut y = symmem::alloc_zeroed::<f32>(x.len())?;
    y.copy_from(x)?;
    Ok(y)
}

fn main() {
    let sums = symmem::host::run(2, |ctx| -> Result<Vec<f32>, Error> {
        let world = ctx.world();
        world.reserve_symmetric(1 << 16)?;
        let x = symmem::alloc_from_host(&[ctx.rank() as f32 + 1.0; 4])?;
        let (mut graph, mut y) = symmem::capture(|| step(&x))?;
        graph.replay()?;
        assert_eq!(y.group_name(), Some("world"));
        world.all_reduce(&mut y, ReduceOp::Sum)?;
        y.to_host_vec()
    })
    .unwrap();
    for s in sums {
        assert_eq!(s.unwrap(), vec![3.0; 4]);
    }
}
