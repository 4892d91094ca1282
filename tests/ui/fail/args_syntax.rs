#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group: "tp", capture(never))]
fn f() {}

fn main() {}
