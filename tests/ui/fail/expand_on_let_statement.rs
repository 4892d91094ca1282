#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

fn main() {
    #[symmetric_memory(group = "tp")]
    let b = symmem::alloc::<f32>(4);
}
