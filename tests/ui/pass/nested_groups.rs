//! Annotated functions of different groups calling each other, and an annotated `fn` item
//! nested in an annotated body.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "half")]
fn in_half() -> Result<Buffer<f32>, Error> {
    symmem::alloc::<f32>(4)
}

#[symmetric_memory(group = "world")]
fn in_world() -> Result<[Buffer<f32>; 3], Error> {
    #[symmetric_memory(group = "half")]
    fn nested_item() -> Option<String> {
        symmem::routed_group()
    }
    assert_eq!(nested_item().as_deref(), Some("half"));
    let a = symmem::alloc::<f32>(4)?;
    let b = in_half()?;
    let c = symmem::alloc::<f32>(4)?;
    Ok([a, b, c])
}

fn main() {
    symmem::host::run(4, |ctx| -> Result<(), Error> {
        let half = ctx.split_group("half", &ctx.world(), (ctx.rank() % 2) as u32, 0)?;
        assert_eq!(half.size(), 2);
        let [a, b, c] = in_world()?;
        assert_eq!(
            [a.group_name(), b.group_name(), c.group_name()],
            [Some("world"), Some("half"), Some("world")]
        );
        Ok(())
    })
    .unwrap()
    .into_iter()
    .for_each(|r| r.unwrap());
}
