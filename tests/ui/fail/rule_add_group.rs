#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "world")]
fn step(ctx: &symmem::RankContext) -> Result<(), Error> {
    let again = ctx.add_group("again", ctx.world().comm().clone())?;
    Ok(())
}

fn main() {}
