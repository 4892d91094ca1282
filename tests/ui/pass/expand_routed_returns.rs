//! Returned futures and iterators keep what their return type promises once routed: `Send`,
//! borrowed lifetimes (`'_`, named), `Unpin`, `Clone`, inference of the body from the output
//! type.
use std::future::Future;
use std::pin::Pin;

use symmem::{symmetric_memory, Buffer, Error};

struct Model {
    rows: usize,
}

impl Model {
    #[symmetric_memory(group = "world")]
    fn step(&self) -> impl Future<Output = Result<Buffer<f32>, Error>> + Send + '_ {
        // `alloc`'s element type is inferred from the output type.
        async move { symmem::alloc(self.rows) }
    }

    #[symmetric_memory(group = "world")]
    fn boxed(&self) -> Pin<Box<dyn Future<Output = usize> + '_>> {
        Box::pin(async move { self.rows })
    }

    #[symmetric_memory(group = "world")]
    fn ready(&self) -> impl Future<Output = usize> + Unpin {
        std::future::ready(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn rows<'a>(&'a self, v: &'a [usize]) -> impl Iterator<Item = usize> + Clone + 'a {
        v.iter().map(move |x| x * self.rows)
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    let m = Model { rows: 2 };
    let f = assert_send(m.step());
    drop(f);
    drop(m.boxed());
    let r = m.ready();
    let _ = Pin::new(&mut { r });
    let it = m.rows(&[1, 2]);
    assert_eq!(it.clone().sum::<usize>(), 6);
    assert_eq!(it.count(), 2);
}
