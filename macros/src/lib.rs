//! # symmem-macros
//!
//! The `#[symmetric_memory]` attribute of [symmem](https://docs.rs/symmem). Use it through the
//! facade (`use symmem::symmetric_memory;`): the expansion refers to `::symmem::__private`.
//!
//! The crate is laid out like `thiserror`'s `impl/` and `tokio-macros`, one concept per file,
//! each importing only from the ones listed before it:
//!
//! * `errors`: error accumulation (every problem of one attribute is reported together);
//! * `syntax`: the two attributes as syn sees them, outer attributes of expressions and items;
//! * `args`: the attribute's arguments (`parse` with error recovery, `suggest`, `validate`);
//! * `item`: the annotated item (a function with a body, or a clear rejection);
//! * `capture`: the body walk that applies the capture-unfit table of `symmem-rules` and
//!   handles the escape hatch (`scope`, `rules`, `hatch`, `walk`);
//! * `deferred`: what a synchronous function returns that runs later (futures and iterators,
//!   routed; closures and streams, rejected), judged by the return type as written;
//! * `expand`: the pipeline `expand::expand(attr, item)` (testable without a compiler) and the
//!   code generation.
//!
//! The grammar, the expansion and the error catalogue are in `docs/macro.md`; the capture
//! rules in `docs/capture-rules.md` (rendered from `symmem-rules`).

mod args;
mod capture;
mod deferred;
mod errors;
mod expand;
mod item;
mod syntax;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Runs the body of a function inside a group's pool-routing window.
///
/// ```ignore
/// use symmem::{symmetric_memory, Buffer, Error};
///
/// #[symmetric_memory(group = "tp")]
/// fn down_proj(h: &Buffer<f32>, rows: usize) -> Result<Buffer<f32>, Error> {
///     let out = symmem::alloc::<f32>(rows * h.len())?; // from tp's symmetric pool
///     Ok(out)
/// }
/// ```
///
/// Arguments:
///
/// * `group = "name"` (required): the group whose symmetric pool the body allocates from; a
///   string literal holding an identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes).
/// * `disabled = <bool expression>`: evaluated at each call, inside the function (it may use
///   the arguments); when `true` the window is inert and routes nothing.
/// * `capture = "checked"` (default) or `capture = "never"`: `"checked"` rejects at compile time
///   the calls that cannot run while a CUDA graph is captured (see `docs/capture-rules.md`);
///   `"never"` turns the checks off and makes the function panic if it is called during
///   capture.
/// * `crate = "path"`: where the symmem facade is (default `::symmem`, or the name the
///   package's `Cargo.toml` gives the `symmem` package).
///
/// The window guard is bound by a `match` arm around the body (a hygienic binding), so routing
/// returns to what it was on every exit path (return, `?`, panic), after every temporary of the
/// body has been dropped. Window entry cannot fail: a group that the calling rank lacks makes the
/// allocations inside fail with `Error::GroupNotFound`. `async fn`s are routed around each poll
/// of their body, never across an `.await`. A returned future (`impl Future`, `Pin<Box<dyn
/// Future>>`, `BoxFuture`, `#[async_trait]`'s shape) is routed around each poll, a returned
/// `impl Iterator` around each `next`; a returned closure or stream is a compile error.
///
/// Inside a checked body, a statement may opt out of the capture checks with
/// `#[symmem::allow_capture_unfit(reason = "...")]`.
#[proc_macro_attribute]
pub fn symmetric_memory(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into()).into()
}

/// Silences the capture checks of `#[symmetric_memory]` for one statement.
///
/// It is inert: `#[symmetric_memory]` reads and removes it from the statements of the body it
/// checks, and requires a reason:
///
/// ```ignore
/// #[symmetric_memory(group = "tp")]
/// fn warm_up(tp: &symmem::Group) -> Result<(), symmem::Error> {
///     #[symmem::allow_capture_unfit(reason = "only called at start-up, never captured")]
///     tp.reserve_symmetric(1 << 20)?;
///     Ok(())
/// }
/// ```
///
/// Anywhere else (on an item outside such a body) this attribute is an error.
#[proc_macro_attribute]
pub fn allow_capture_unfit(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand_stray_hatch(attr.into(), item.into()).into()
}
