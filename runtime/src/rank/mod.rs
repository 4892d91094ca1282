//! Ranks and groups (a facade: each concept has its file).
//!
//! A thread that acts as a rank installs a [`context::RankContext`]: its device, its stream, its
//! default pool and its groups. A [`group::Group`] is a named communicator (`"tp"`, `"dp"`, ...)
//! with this rank's index, the group size and the group's own symmetric pool.

pub(crate) mod collectives;
pub(crate) mod context;
pub(crate) mod current;
#[cfg(test)]
mod direct_entry_tests;
pub(crate) mod group;
pub(crate) mod stream;
