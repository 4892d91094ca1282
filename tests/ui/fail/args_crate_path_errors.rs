#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", crate = "symmem<u8>")]
fn generic_path() {}

fn main() {
    generic_path(); // still emitted
}
