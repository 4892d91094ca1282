#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", disabled = 1)]
fn f() {}

fn main() {}
