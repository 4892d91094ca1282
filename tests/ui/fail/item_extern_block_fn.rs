#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

extern "C" {
    #[symmetric_memory(group = "tp")]
    fn ext_alloc(n: usize) -> *mut u8;
}

fn main() {}
