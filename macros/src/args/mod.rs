//! The attribute's arguments: `parse` reads them as written (with error recovery), `validate`
//! judges them (every problem of one attribute is reported together), `suggest` finds what a
//! misspelt key or value was meant to be.

mod facade;
mod parse;
mod suggest;
mod validate;

pub(crate) use parse::RawArgs;
pub(crate) use validate::{validate, Args, Capture};

#[cfg(test)]
pub(crate) use facade::facade_name;
#[cfg(test)]
pub(crate) use validate::Validated;
