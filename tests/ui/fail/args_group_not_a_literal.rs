#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

const TP: &str = "tp";

#[symmetric_memory(group = TP)]
fn f() {}

#[symmetric_memory(group = concat!("t", "p"))]
fn g() {}

fn main() {}
