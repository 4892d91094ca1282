#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
async fn wrong_tail() -> Result<u32, Error> {
    let a = 1u32;
    a
}

#[symmetric_memory(group = "tp")]
async fn wrong_return(x: bool) -> u32 {
    if x {
        return "one";
    }
    2
}

fn main() {}
