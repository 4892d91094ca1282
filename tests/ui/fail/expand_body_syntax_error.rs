#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn f() -> u32 {
    let x = ;
    x
}

fn main() {
    let _ = f();
}
