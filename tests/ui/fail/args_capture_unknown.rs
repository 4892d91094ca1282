#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", capture = "nevr")]
fn f() {}

fn main() {}
