//! Patterns in argument position.
use symmem::{symmetric_memory, Buffer, Error};

struct Rows(usize);

#[symmetric_memory(group = "world")]
fn patterns(
    (a, b): (usize, usize),
    Rows(r): Rows,
    mut extra: usize,
    _: u8,
    &c: &usize,
) -> Result<Buffer<f32>, Error> {
    extra += 1;
    symmem::alloc::<f32>(a + b + r + extra + c)
}

fn main() {
    symmem::host::run(1, |_ctx| {
        let b = patterns((1, 2), Rows(3), 0, 9, &4).unwrap();
        assert_eq!((b.len(), b.group_name()), (11, Some("world")));
    })
    .unwrap();
}
