//! `#[symmem::allow_capture_unfit(reason = "...")]` on statements: `let`, expression
//! statements, macro statements and the tail expression.
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "world")]
fn warm_up(world: &Group, x: &Buffer<f32>) -> Result<usize, Error> {
    #[symmem::allow_capture_unfit(reason = "called once at start-up, before any capture")]
    world.reserve_symmetric(1 << 16)?;
    #[symmem::allow_capture_unfit(reason = "start-up only")]
    let host = x.to_host_vec()?;
    #[symmem::allow_capture_unfit(reason = "start-up only")]
    println!("{:?}", x.to_host_vec()?);
    #[symmem::allow_capture_unfit(reason = "start-up only")]
    symmem::synchronize()?;
    let n = host.len();
    #[symmem::allow_capture_unfit(reason = "start-up only")]
    Ok(n + x.to_host_vec()?.len())
}

fn main() {
    symmem::host::run(2, |ctx| {
        let x = symmem::alloc_zeroed::<f32>(3).unwrap();
        assert_eq!(warm_up(&ctx.world(), &x).unwrap(), 6);
    })
    .unwrap();
}
