#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

// What `#[tokio::main]` (above the attribute, so expanded first) gives `async fn main`,
// written by hand: tokio is not a dependency here.
mod tokio {
    pub mod runtime {
        pub struct Builder;
        impl Builder {
            pub fn new_multi_thread() -> Self {
                Builder
            }
            pub fn enable_all(&mut self) -> &mut Self {
                self
            }
            pub fn build(&mut self) -> Result<Runtime, ()> {
                Ok(Runtime)
            }
        }
        pub struct Runtime;
        impl Runtime {
            pub fn block_on<F: std::future::Future>(&self, _: F) -> F::Output {
                panic!("the stand-in runtime runs nothing")
            }
        }
    }
}

#[symmetric_memory(group = "tp")]
fn main() {
    let body = async {
        let _b = symmem::alloc::<f32>(4);
    };
    #[allow(clippy::expect_used, clippy::diverging_sub_expression)]
    {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("Failed building the Runtime")
            .block_on(body);
    }
}
