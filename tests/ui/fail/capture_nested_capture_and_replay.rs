#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Graph};

#[symmetric_memory(group = "tp")]
fn step(graph: &mut Graph) -> Result<(), Error> {
    let (inner, out) = symmem::capture(|| symmem::alloc::<f32>(4))?;
    graph.replay()?;
    Ok(())
}

fn main() {}
