#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step() {
    drop(__symmem_window);
}

fn main() {}
