#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(name = "tp", enabled = true)]
fn f() {}

fn main() {}
