#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(capture = "never", disabled = false)]
fn f() {}

fn main() {}
