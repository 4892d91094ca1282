#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "world")]
fn step(ctx: &symmem::RankContext) -> Result<(), Error> {
    let tp = ctx.split_group("tp", &ctx.world(), 0, 0)?;
    Ok(())
}

fn main() {}
