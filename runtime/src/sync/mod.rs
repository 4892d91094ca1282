//! The locks on the hot paths: a pool's state, and a communicator's handle (a facade).

pub(crate) mod barrier;
pub(crate) mod owner_lock;
pub(crate) mod spin;
#[cfg(test)]
mod tests;
