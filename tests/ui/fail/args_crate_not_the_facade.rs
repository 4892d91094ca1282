#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", crate = "std")]
fn not_the_facade() {}

fn main() {}
