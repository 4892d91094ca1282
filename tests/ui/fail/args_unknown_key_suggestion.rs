#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(grop = "tp")]
fn f() {}

fn main() {}
