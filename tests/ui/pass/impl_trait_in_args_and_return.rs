//! `impl Trait` in argument and return position.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
fn make_all(
    sizes: impl IntoIterator<Item = usize>,
) -> impl Iterator<Item = Result<Buffer<f32>, Error>> {
    // Collected inside the window: a lazy iterator would allocate after the window ends.
    sizes
        .into_iter()
        .map(symmem::alloc::<f32>)
        .collect::<Vec<_>>()
        .into_iter()
}

#[symmetric_memory(group = "world")]
fn with_callback(f: impl Fn(usize) -> usize) -> Result<Buffer<f32>, Error> {
    symmem::alloc::<f32>(f(2))
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let v: Vec<_> = make_all([1, 2, 3]).map(Result::unwrap).collect();
        assert!(v.iter().all(|b| b.group_name() == Some("world")));
        assert_eq!(with_callback(|n| n * 5).unwrap().len(), 10);
    })
    .unwrap();
}
