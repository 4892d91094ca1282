//! Generics, lifetimes, const generics and where clauses are kept.
use symmem::{symmetric_memory, Buffer, Element, Error};

#[symmetric_memory(group = "world")]
fn alloc_like<'a, T, const N: usize>(
    _like: &'a Buffer<T>,
    extra: [usize; N],
) -> Result<(Buffer<T>, &'a str), Error>
where
    T: Element + Copy,
{
    let n: usize = extra.iter().sum();
    Ok((symmem::alloc::<T>(n)?, "ok"))
}

struct Holder<'h, T: Element> {
    buf: &'h Buffer<T>,
}

impl<'h, T: Element> Holder<'h, T> {
    #[symmetric_memory(group = "world")]
    fn twin(&self) -> Result<Buffer<T>, Error>
    where
        T: Send,
    {
        symmem::alloc::<T>(self.buf.len())
    }
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let x = symmem::alloc::<i32>(4).unwrap();
        let (b, s) = alloc_like(&x, [1, 2, 3]).unwrap();
        assert_eq!((b.len(), s, b.group_name()), (6, "ok", Some("world")));
        let t = Holder { buf: &x }.twin().unwrap();
        assert_eq!((t.len(), t.group_name()), (4, Some("world")));
    })
    .unwrap();
}
