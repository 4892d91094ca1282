#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(tp: &Group) -> Result<(), Error> {
    #[symmem::allow_capture_unfit("start-up only")]
    tp.reserve_symmetric(1 << 20)?;
    #[symmem::allow_capture_unfit(because = "start-up only")]
    tp.empty_cache()?;
    Ok(())
}

fn main() {}
