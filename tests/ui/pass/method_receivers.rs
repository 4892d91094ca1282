//! Every receiver kind of an inherent method.
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use symmem::{symmetric_memory, Buffer, Error};

struct Layer {
    rows: usize,
}

impl Layer {
    #[symmetric_memory(group = "world")]
    fn by_ref(&self, h: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows * h.len())
    }

    #[symmetric_memory(group = "world")]
    fn by_mut(&mut self) -> Result<Buffer<f32>, Error> {
        self.rows += 1;
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_value(self) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_mut_value(mut self) -> Result<Buffer<f32>, Error> {
        self.rows *= 2;
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_explicit_ref<'a>(self: &'a Self) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_box(self: Box<Self>) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_rc(self: Rc<Self>) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_arc(self: Arc<Self>) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn by_pin(self: Pin<&mut Self>) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows)
    }

    #[symmetric_memory(group = "world")]
    fn associated(rows: usize) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(rows)
    }
}

fn main() {
    symmem::host::run(2, |_ctx| -> Result<(), Error> {
        let h = symmem::alloc::<f32>(2)?;
        let mut l = Layer { rows: 3 };
        let all = [
            l.by_ref(&h)?,
            l.by_mut()?,
            l.by_explicit_ref()?,
            Pin::new(&mut l).by_pin()?,
            Layer { rows: 1 }.by_value()?,
            Layer { rows: 1 }.by_mut_value()?,
            Box::new(Layer { rows: 1 }).by_box()?,
            Rc::new(Layer { rows: 1 }).by_rc()?,
            Arc::new(Layer { rows: 1 }).by_arc()?,
            Layer::associated(5)?,
        ];
        assert_eq!(all[0].len(), 6);
        assert_eq!(all[1].len(), 4);
        assert_eq!(all[5].len(), 2);
        assert!(all.iter().all(|b| b.group_name() == Some("world")));
        Ok(())
    })
    .unwrap()
    .into_iter()
    .for_each(|r| r.unwrap());
}
