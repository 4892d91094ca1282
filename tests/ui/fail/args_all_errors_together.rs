#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(
    grup = "tp",
    capture = "sometimes",
    disabled = "no",
    group = "tp",
    group = "dp"
)]
fn f() {}

fn main() {}
