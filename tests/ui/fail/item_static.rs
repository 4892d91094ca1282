#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
static ROWS: usize = 4;

fn main() {}
