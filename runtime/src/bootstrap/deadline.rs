//! The rendezvous' time budget: deadlines, the time left, and the grace periods past them.

use std::time::{Duration, Instant};

/// Longest a single blocking socket operation of the server may wait for one peer.
pub const PER_PEER_IO: Duration = Duration::from_secs(5);
/// Time allowed for the final replies after every peer arrived, and for the rest of a reply
/// once its first bytes arrived.
pub const REPLY_GRACE: Duration = Duration::from_secs(5);
/// How much longer than its timeout a connected rank waits for rank 0's answer: rank 0 gives up
/// at about the same time and then says which ranks are missing.
pub const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// `timeout` from now (a year from now when that overflows).
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Time left until `deadline`, at least 1 ms (socket timeouts of zero are refused).
pub fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
